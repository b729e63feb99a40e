//! Criterion benchmarks of the ingest kernels: BGE JSON Lines parsing, row hashing, interning.
//! Run: `cargo bench --no-default-features --bench ingest`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use _core::formats::bge::parse_bge_lines;
use _core::intern::Interner;
use _core::text::{hash_rows, StrColumn};

fn synthetic_bge(rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rows {
        let p = |j: usize| {
            format!(
                "passage {} about topic {} with some words in it",
                (i * 7 + j) % 5000,
                j
            )
        };
        let negs: Vec<String> = (1..8).map(|j| format!("\"{}\"", p(j))).collect();
        out.extend_from_slice(
            format!(
                "{{\"query\": \"query {i}\", \"pos\": [\"{}\"], \"neg\": [{}]}}\n",
                p(0),
                negs.join(", ")
            )
            .as_bytes(),
        );
    }
    out
}

fn bench(c: &mut Criterion) {
    let data = synthetic_bge(20_000);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parse_bge_lines 20k rows", |b| {
        b.iter(|| parse_bge_lines(black_box(&data), 1));
    });

    let cols = parse_bge_lines(&data, 1);
    let n = cols.passages.len();
    g.throughput(Throughput::Elements(n as u64));
    let col = StrColumn {
        offsets: &cols.passages.offsets,
        data: &cols.passages.data,
        nulls: None,
    };
    g.bench_function("hash_rows 160k passages", |b| {
        b.iter(|| hash_rows(black_box(&[col]), 0).unwrap());
    });
    let keys = hash_rows(&[col], 0).unwrap();
    g.bench_function("intern 160k keys", |b| {
        b.iter(|| {
            let mut it = Interner::new();
            it.intern(black_box(&keys), &[]).unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
