//! Exact inner-product top-k of queries against a corpus, without ever holding the full
//! query x corpus score matrix: each task multiplies a block of queries by a block of the corpus
//! (`gemm`, SIMD microkernels picked at run time) into a small buffer that stays in cache, then
//! folds the buffer into per-query top-k candidate lists filtered by a running threshold.
//! Memory: inputs + outputs + one `QB x CB` buffer per thread.

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

fn check_finite(x: &[f32], what: &str, d: usize) -> CoreResult<()> {
    let bad = pool::install(|| {
        x.par_chunks(1 << 16)
            .position_first(|c| c.iter().any(|v| !v.is_finite()))
    });
    if let Some(chunk) = bad {
        let start = chunk << 16;
        let off = x[start..].iter().position(|v| !v.is_finite()).unwrap_or(0) + start;
        return Err(CoreError::InvalidParam(format!(
            "{what} has a non-finite value (NaN or inf) in row {}, column {}",
            off / d,
            off % d
        )));
    }
    Ok(())
}

/// Top-`k` corpus rows by inner product for every query. `queries` is row-major `nq x d`,
/// `corpus` row-major `nc x d`.
pub fn topk_inner_product(queries: &[f32], corpus: &[f32], d: usize, k: usize) -> CoreResult<TopK> {
    if d == 0 {
        return Err(CoreError::Shape("dimension must be at least 1".into()));
    }
    if queries.len() % d != 0 || corpus.len() % d != 0 {
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
    check_finite(queries, "queries", d)?;
    check_finite(corpus, "corpus", d)?;
    let mut indices = vec![-1i64; nq * k];
    let mut scores = vec![f32::NEG_INFINITY; nq * k];
    let threads = pool::num_threads().max(1);
    // enough tasks for every thread even with few queries
    let qb = QB.min(nq.div_ceil(threads)).max(1);
    pool::install(|| {
        indices
            .par_chunks_mut(qb * k)
            .zip(scores.par_chunks_mut(qb * k))
            .enumerate()
            .for_each(|(t, (idx, sc))| {
                let q0 = t * qb;
                let m = idx.len() / k;
                let mut buf = vec![0f32; m * CB];
                let mut cands: Vec<Candidates> = (0..m).map(|_| Candidates::new(k)).collect();
                let mut c0 = 0;
                while c0 < nc {
                    let n = CB.min(nc - c0);
                    // SAFETY: every pointer/stride pair describes memory inside the slices:
                    // dst m x n row-major in buf, lhs m x d rows of queries, rhs d x n = the
                    // transposed corpus rows c0..c0+n (element (r, j) at corpus[(c0+j)*d + r]).
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            d,
                            buf.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            queries.as_ptr().add(q0 * d),
                            1,
                            d as isize,
                            corpus.as_ptr().add(c0 * d),
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
                    for (r, c) in cands.iter_mut().enumerate() {
                        c.push_row(&buf[r * n..(r + 1) * n], c0 as u32);
                    }
                    c0 += n;
                }
                for (r, c) in cands.into_iter().enumerate() {
                    c.finish(&mut idx[r * k..(r + 1) * k], &mut sc[r * k..(r + 1) * k]);
                }
            });
    });
    Ok(TopK { indices, scores })
}

#[cfg(test)]
#[allow(clippy::many_single_char_names)]
mod tests {
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

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
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
        let r = topk_inner_product(&q, &c, d, 10).unwrap();
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
    }
}
