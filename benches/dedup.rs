//! Criterion benchmarks of the dedup kernels on synthetic ~100-word texts.
//! Run: `cargo bench --no-default-features --bench dedup`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use _core::dedup::{
    lsh_clusters, minhash_signatures, LshParams, MinHasher, Normalize, Shingler, Unit, Verify,
};
use _core::formats::StrBuf;
use _core::text::StrColumn;

fn texts(n: usize) -> StrBuf {
    let mut b = StrBuf::default();
    let mut state = 0x1234_5678_u64;
    for _ in 0..n {
        let words: Vec<String> = (0..100)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                format!("w{}", (state >> 33) % 20_000)
            })
            .collect();
        b.push(&words.join(" "));
    }
    b
}

fn bench(c: &mut Criterion) {
    let buf = texts(10_000);
    let col = StrColumn {
        offsets: &buf.offsets,
        data: &buf.data,
        nulls: None,
    };
    let sh = Shingler {
        unit: Unit::Word,
        n: 5,
        normalize: Normalize::default(),
    };
    let h = MinHasher::new(128, 1).unwrap();
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("minhash 10k texts x 128 perms", |b| {
        b.iter(|| minhash_signatures(black_box(&col), &sh, &h).unwrap());
    });
    let sigs = minhash_signatures(&col, &sh, &h).unwrap();
    g.bench_function("lsh 16x8 10k", |b| {
        b.iter(|| {
            lsh_clusters(
                black_box(&sigs),
                128,
                LshParams { bands: 16, rows: 8 },
                Verify::None,
                None,
            )
            .unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
