//! Exact inner-product top-k of queries against a corpus, without ever holding the full
//! query x corpus score matrix: each task multiplies a block of queries by a block of the corpus
//! (`gemm`, SIMD microkernels picked at run time) into a small buffer that stays in cache, then
//! folds the buffer into per-query top-k candidate lists filtered by a running threshold.
//! Memory: inputs + outputs + one `QB x CB` buffer per thread.

use half::{f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};
use crate::pool;

/// Queries per task and corpus rows per block (`QB x CB` f32 = 2 MiB of scores).
const QB: usize = 128;
const CB: usize = 4096;

/// Result: row-major `n x k` indices (into the corpus) and scores, best first; ties by index.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub indices: Vec<i64>,
    pub scores: Vec<f32>,
}

/// Per-query candidate list: scores above the current k-th best are kept; when the list reaches
/// 2k it is cut back to the k best and the threshold raised.
struct Candidates {
    k: usize,
    items: Vec<(f32, u32)>,
    threshold: f32,
}

impl Candidates {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(2 * k),
            threshold: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn push_row(&mut self, scores: &[f32], base: u32) {
        for (j, &s) in scores.iter().enumerate() {
            if s > self.threshold || (self.items.len() < self.k) {
                self.items.push((s, base + j as u32));
                if self.items.len() >= 2 * self.k {
                    self.shrink();
                }
            }
        }
    }

    fn shrink(&mut self) {
        let k = self.k;
        self.items.select_nth_unstable_by(k - 1, better);
        self.items.truncate(k);
        self.threshold = self.items.iter().map(|x| x.0).fold(f32::INFINITY, f32::min);
    }

    fn finish(mut self, idx: &mut [i64], sc: &mut [f32]) {
        self.items.sort_unstable_by(better);
        for (j, (s, i)) in self.items.into_iter().take(self.k).enumerate() {
            idx[j] = i64::from(i);
            sc[j] = s;
        }
    }
}

/// Higher score first, then lower index.
#[inline]
#[allow(clippy::trivially_copy_pass_by_ref)] // the signature sort_by wants
fn better(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// A row-major matrix of embeddings, f32 or f16 (f16 rows are widened to f32 a block at a time,
/// so an f16 corpus costs half the memory of an f32 one).
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl Rows<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Rows::F32(x) => x.len(),
            Rows::F16(x) => x.len(),
        }
    }

    /// Elements `a..b` as f32: borrowed for f32, widened into `scratch` for f16.
    pub(crate) fn widen<'s>(&'s self, a: usize, b: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        match self {
            Rows::F32(x) => &x[a..b],
            Rows::F16(x) => {
                scratch.resize(b - a, 0.0);
                x[a..b].convert_to_f32_slice(scratch);
                scratch
            }
        }
    }

    /// The first (row, column) holding a NaN or infinity, if any.
    fn first_non_finite(&self, d: usize) -> Option<(usize, usize)> {
        fn scan<T: Sync>(x: &[T], fin: impl Fn(&T) -> bool + Sync) -> Option<usize> {
            let chunk = pool::install(|| {
                x.par_chunks(1 << 16)
                    .position_first(|c| c.iter().any(|v| !fin(v)))
            })?;
            let start = chunk << 16;
            Some(x[start..].iter().position(|v| !fin(v)).unwrap_or(0) + start)
        }
        let off = match self {
            Rows::F32(x) => scan(x, |v| v.is_finite()),
            Rows::F16(x) => scan(x, |v| v.is_finite()),
        }?;
        Some((off / d, off % d))
    }
}

/// Corpus rows widened per round when the corpus is f16 (`ROUND x d` f32, 48 MiB at d = 384).
const ROUND: usize = 32 * 1024;

/// How exact search computes its scores; every method returns the exact top-k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// int8 when the CPU has AVX-512 VNNI and the search is large enough to gain (a corpus of at
    /// least 2048 rows and 32 k, 64 queries, 64 dims); else gemm
    Auto,
    /// f32 (or widened f16) gemm blocks with the fused top-k
    Gemm,
    /// the int8 prefilter with error bounds, then exact f32 re-scoring of the candidates
    Int8,
}

/// Top-`k` corpus rows by inner product for every query (f32 slices; see [`topk_rows`]).
pub fn topk_inner_product(queries: &[f32], corpus: &[f32], d: usize, k: usize) -> CoreResult<TopK> {
    topk_rows(Rows::F32(queries), Rows::F32(corpus), d, k, Method::Auto)
}

/// Top-`k` corpus rows by inner product for every query. `queries` is row-major `nq x d`,
/// `corpus` row-major `nc x d`; either may be f16 (widened to f32 a block or a row at a time).
#[allow(clippy::too_many_lines)] // checks, dispatch, and the one blocked loop
pub fn topk_rows(
    queries: Rows<'_>,
    corpus: Rows<'_>,
    d: usize,
    k: usize,
    method: Method,
) -> CoreResult<TopK> {
    if d == 0 {
        return Err(CoreError::Shape("dimension must be at least 1".into()));
    }
    if !queries.len().is_multiple_of(d) || !corpus.len().is_multiple_of(d) {
        return Err(CoreError::Shape(format!(
            "queries ({}) and corpus ({}) lengths must be multiples of d = {d}",
            queries.len(),
            corpus.len()
        )));
    }
    let (nq, nc) = (queries.len() / d, corpus.len() / d);
    if nc == 0 {
        return Err(CoreError::InvalidParam("the corpus is empty".into()));
    }
    if k == 0 || k > nc {
        return Err(CoreError::InvalidParam(format!(
            "k must be in 1..={nc} (the corpus size), got {k}"
        )));
    }
    if nc > u32::MAX as usize {
        return Err(CoreError::InvalidParam(
            "corpus larger than 2^32 rows".into(),
        ));
    }
    for (rows, what) in [(queries, "queries"), (corpus, "corpus")] {
        if let Some((r, c)) = rows.first_non_finite(d) {
            return Err(CoreError::InvalidParam(format!(
                "{what} has a non-finite value (NaN or inf) in row {r}, column {c}"
            )));
        }
    }
    let int8 = match method {
        Method::Gemm => false,
        Method::Int8 => true,
        Method::Auto => {
            super::quant::available() && nc >= 2048 && nc >= 32 * k && d >= 64 && nq >= 64
        }
    };
    if int8 {
        return super::quant::topk_int8(queries, corpus, d, k);
    }
    let mut indices = vec![-1i64; nq * k];
    let mut scores = vec![f32::NEG_INFINITY; nq * k];
    let threads = pool::num_threads().max(1);
    // enough tasks for every thread even with few queries
    let qb = QB.min(nq.div_ceil(threads)).max(1);
    let mut cands: Vec<Candidates> = (0..nq).map(|_| Candidates::new(k)).collect();
    // an f32 corpus is searched in one round straight from its memory; an f16 one in rounds of
    // ROUND rows, each widened once (in parallel) and shared by every query task
    let round = match corpus {
        Rows::F32(_) => nc,
        Rows::F16(_) => ROUND,
    };
    let mut wide: Vec<f32> = Vec::new();
    pool::install(|| {
        let mut r0 = 0;
        while r0 < nc {
            let rn = round.min(nc - r0);
            let block: &[f32] = match corpus {
                Rows::F32(x) => &x[r0 * d..(r0 + rn) * d],
                Rows::F16(x) => {
                    wide.resize(rn * d, 0.0);
                    wide.par_chunks_mut(CB * d)
                        .zip(x[r0 * d..(r0 + rn) * d].par_chunks(CB * d))
                        .for_each(|(w, h)| h.convert_to_f32_slice(w));
                    &wide
                }
            };
            cands.par_chunks_mut(qb).enumerate().for_each(|(t, cs)| {
                let q0 = t * qb;
                let m = cs.len();
                let mut qscratch = Vec::new();
                let qs = queries.widen(q0 * d, (q0 + m) * d, &mut qscratch);
                SCORES.with_borrow_mut(|buf| {
                    buf.resize(QB * CB, 0.0);
                    let mut c0 = 0;
                    while c0 < rn {
                        let n = CB.min(rn - c0);
                        // SAFETY: every pointer/stride pair describes memory inside the slices:
                        // dst m x n row-major in buf (m <= QB, n <= CB), lhs m x d rows of qs,
                        // rhs d x n = the transposed block rows c0..c0+n (element (r, j) at
                        // block[(c0+j)*d + r]).
                        unsafe {
                            gemm::gemm(
                                m,
                                n,
                                d,
                                buf.as_mut_ptr(),
                                1,
                                n as isize,
                                false,
                                qs.as_ptr(),
                                1,
                                d as isize,
                                block.as_ptr().add(c0 * d),
                                d as isize,
                                1,
                                0.0,
                                1.0,
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                        for (r, c) in cs.iter_mut().enumerate() {
                            c.push_row(&buf[r * n..(r + 1) * n], (r0 + c0) as u32);
                        }
                        c0 += n;
                    }
                });
            });
            r0 += rn;
        }
        indices
            .par_chunks_mut(k)
            .zip(scores.par_chunks_mut(k))
            .zip(cands.into_par_iter())
            .for_each(|((idx, sc), c)| c.finish(idx, sc));
    });
    Ok(TopK { indices, scores })
}

thread_local! {
    /// One `QB x CB` score buffer per worker thread, reused across tasks and rounds.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
#[allow(clippy::many_single_char_names)]
pub(super) mod tests {
    use super::*;

    fn brute(q: &[f32], c: &[f32], d: usize, k: usize) -> Vec<i64> {
        let nc = c.len() / d;
        let mut out = Vec::new();
        for qi in q.chunks(d) {
            let mut s: Vec<(f32, u32)> = (0..nc)
                .map(|j| {
                    (
                        qi.iter()
                            .zip(&c[j * d..(j + 1) * d])
                            .map(|(a, b)| a * b)
                            .sum(),
                        j as u32,
                    )
                })
                .collect();
            s.sort_by(better);
            out.extend(s.iter().take(k).map(|x| i64::from(x.1)));
        }
        out
    }

    /// `n` rows of `d` values in [-0.5, 0.5), a fixed sequence per seed.
    pub(crate) fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn equals_brute_force_across_blocks() {
        let d = 17;
        let q = data(300, d, 1);
        let c = data(2 * CB + 123, d, 2);
        let r = topk_rows(Rows::F32(&q), Rows::F32(&c), d, 10, Method::Gemm).unwrap();
        assert_eq!(r.indices, brute(&q, &c, d, 10));
        assert!(r
            .scores
            .chunks(10)
            .all(|s| s.windows(2).all(|w| w[0] >= w[1])));
    }

    #[test]
    fn bad_input() {
        let c = data(10, 4, 1);
        assert!(topk_inner_product(&data(2, 4, 3), &c, 4, 11).is_err());
        assert!(topk_inner_product(&data(2, 4, 3), &[], 4, 1).is_err());
        assert!(topk_inner_product(&data(2, 4, 3)[..7], &c, 4, 1).is_err());
        let mut bad = c.clone();
        bad[9] = f32::NAN;
        let e = topk_inner_product(&data(2, 4, 3), &bad, 4, 1).unwrap_err();
        assert!(e.to_string().contains("row 2, column 1"), "{e}");
        let mut bad16: Vec<f16> = c.iter().map(|&v| f16::from_f32(v)).collect();
        bad16[5] = f16::INFINITY;
        let e = topk_rows(
            Rows::F32(&data(2, 4, 3)),
            Rows::F16(&bad16),
            4,
            1,
            Method::Auto,
        )
        .unwrap_err();
        assert!(e.to_string().contains("row 1, column 1"), "{e}");
    }

    #[test]
    fn f16_equals_widened_f32_across_rounds() {
        let d = 8;
        let to16 = |x: &[f32]| x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<f16>>();
        let (q, c) = (to16(&data(70, d, 5)), to16(&data(ROUND + 3 * CB + 7, d, 6)));
        let (qw, cw): (Vec<f32>, Vec<f32>) = (
            q.iter().map(|v| v.to_f32()).collect(),
            c.iter().map(|v| v.to_f32()).collect(),
        );
        let want = topk_rows(Rows::F32(&qw), Rows::F32(&cw), d, 5, Method::Gemm).unwrap();
        assert_eq!(
            topk_rows(Rows::F16(&q), Rows::F16(&c), d, 5, Method::Gemm).unwrap(),
            want
        );
        assert_eq!(
            topk_rows(Rows::F32(&qw), Rows::F16(&c), d, 5, Method::Gemm).unwrap(),
            want
        );
    }

    #[test]
    fn int8_equals_gemm() {
        if !crate::search::quant::available() {
            return;
        }
        for (nq, nc, d, k) in [(70, 9000, 96, 10), (33, 5000, 37, 50), (8, 100, 3, 100)] {
            let mut q = data(nq, d, 1);
            let mut c = data(nc, d, 2);
            // near duplicates and a zero query: ties and the degenerate scale
            c.copy_within(0..d, d);
            q[..d].fill(0.0);
            let a = topk_rows(Rows::F32(&q), Rows::F32(&c), d, k, Method::Gemm).unwrap();
            let b = topk_rows(Rows::F32(&q), Rows::F32(&c), d, k, Method::Int8).unwrap();
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
            }
            let same = a
                .indices
                .iter()
                .zip(&b.indices)
                .filter(|(x, y)| x == y)
                .count();
            assert!(same as f64 >= 0.999 * a.indices.len() as f64, "{same}");
        }
    }

    #[test]
    fn int8_ties_go_to_the_lower_rows() {
        // 100 copies of the first query among random rows: the same exact score, above every
        // other row; the int8 path (bounds, early-stopped re-scoring) keeps the first k copies
        if !crate::search::quant::available() {
            return;
        }
        let (nq, nc, d, k) = (16, 20_000, 64, 40);
        let q = data(nq, d, 3);
        let mut c = data(nc, d, 4);
        let rows: Vec<usize> = (0..100).map(|i| 7 + 199 * i).collect();
        for &r in &rows {
            c[r * d..(r + 1) * d].copy_from_slice(&q[..d]);
        }
        let b = topk_rows(Rows::F32(&q), Rows::F32(&c), d, k, Method::Int8).unwrap();
        let want: Vec<i64> = rows[..k].iter().map(|&r| r as i64).collect();
        assert_eq!(&b.indices[..k], &want[..]);
        assert!(b.scores[..k]
            .windows(2)
            .all(|w| w[0].to_bits() == w[1].to_bits()));
        let g = topk_rows(Rows::F32(&q), Rows::F32(&c), d, k, Method::Gemm).unwrap();
        assert_eq!(&g.indices[..k], &want[..]);
    }

    #[test]
    fn int8_on_f16_rows_equals_int8_on_their_widened_rows() {
        if !crate::search::quant::available() {
            return;
        }
        let d = 64;
        let to16 = |x: &[f32]| x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<f16>>();
        let (q, c) = (to16(&data(90, d, 7)), to16(&data(9000, d, 8)));
        let (qw, cw): (Vec<f32>, Vec<f32>) = (
            q.iter().map(|v| v.to_f32()).collect(),
            c.iter().map(|v| v.to_f32()).collect(),
        );
        let want = topk_rows(Rows::F32(&qw), Rows::F32(&cw), d, 20, Method::Int8).unwrap();
        assert_eq!(
            topk_rows(Rows::F16(&q), Rows::F16(&c), d, 20, Method::Int8).unwrap(),
            want
        );
        assert_eq!(
            topk_rows(Rows::F16(&q), Rows::F32(&cw), d, 20, Method::Auto).unwrap(),
            want
        );
    }

    #[test]
    fn int8_scores_do_not_depend_on_how_the_corpus_is_split() {
        // streamed mining searches corpus shards and query blocks separately and merges: the
        // int8 path re-scores each candidate with one fixed-order dot product, so every score
        // is bit-identical to the one-call score and the merged top-k equals the one-call top-k
        if !crate::search::quant::available() {
            return;
        }
        // every part at least SCHEDULE_FROM rows: each packed in its own permuted order
        let (d, k) = (48, 15);
        let (q, c) = (data(64, d, 9), data(20_000, d, 10));
        let one = topk_rows(Rows::F32(&q), Rows::F32(&c), d, k, Method::Int8).unwrap();
        let split = 11_234;
        let a = topk_rows(
            Rows::F32(&q),
            Rows::F32(&c[..split * d]),
            d,
            k,
            Method::Int8,
        )
        .unwrap();
        let b = topk_rows(
            Rows::F32(&q),
            Rows::F32(&c[split * d..]),
            d,
            k,
            Method::Int8,
        )
        .unwrap();
        for r in 0..64 {
            let mut m: Vec<(f32, u32)> = (0..k)
                .map(|j| (a.scores[r * k + j], a.indices[r * k + j] as u32))
                .chain((0..k).map(|j| {
                    (
                        b.scores[r * k + j],
                        (b.indices[r * k + j] as usize + split) as u32,
                    )
                }))
                .collect();
            m.sort_by(better);
            for (j, (s, i)) in m.iter().take(k).enumerate() {
                assert_eq!(s.to_bits(), one.scores[r * k + j].to_bits());
                assert_eq!(i64::from(*i), one.indices[r * k + j]);
            }
        }
        let half = topk_rows(Rows::F32(&q[..7 * d]), Rows::F32(&c), d, k, Method::Int8).unwrap();
        assert_eq!(half.scores, one.scores[..7 * k]);
    }
}
