//! Exact top-k through an int8 prefilter (x86-64 with AVX-512 VNNI): rows are quantised to int8
//! with one scale per row, `vpdpbusd` computes 64 multiply-adds per instruction (4x the f32 FMA
//! rate), and every approximate score carries a rigorous error bound. A corpus row can be in the
//! true top-k only if its upper bound reaches the k-th largest lower bound seen so far; those
//! candidates are re-scored exactly in f32 at the end. The answer is the exact top-k (ties by the
//! lower index), the scores exact f32 inner products.
//!
//! Bound: with `q = t*qq + eq` and `c = s*cc + ec` (`t`, `s` the row scales, `qq`, `cc` the int8
//! rows), `q.c - (t*qq).(s*cc) = eq.(s*cc) + q.ec`, so by Cauchy-Schwarz the error is at most
//! `|eq|*|s*cc| + |q|*|ec|`, four norms computed exactly per row when quantising (plus a margin
//! for the f32 rounding of the approximate score).

#![allow(clippy::many_single_char_names)] // the notation of the bound above

use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};
use crate::pool;

use super::topk::{Rows, TopK};

/// Queries per kernel call, corpus rows per kernel call (two 16-lane registers).
const MR: usize = 8;
const NR: usize = 32;
/// Queries per task at most: their int8 rows stay in L2 while each 32-row corpus tile, loaded
/// once per task, stays in L1 across all of them (the corpus streams once per task).
const QT: usize = 128;

/// Whether this CPU runs the int8 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantises a row into `out`; returns (scale, sum of the int8 values, norms).
fn quantise_row(x: &[f32], out: &mut [i8]) -> (f32, i32, RowNorms) {
    let m = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    if m == 0.0 {
        out.fill(0);
        return (0.0, 0, RowNorms::default());
    }
    let scale = m / 127.0;
    let inv = 127.0 / m;
    let mut sum = 0i32;
    let (mut hat2, mut err2, mut x2) = (0f64, 0f64, 0f64);
    for (o, &v) in out.iter_mut().zip(x) {
        let r = (v * inv).round().clamp(-127.0, 127.0) as i32;
        *o = r as i8;
        sum += r;
        let hat = f64::from(scale) * f64::from(r);
        hat2 += hat * hat;
        err2 += (f64::from(v) - hat) * (f64::from(v) - hat);
        x2 += f64::from(v) * f64::from(v);
    }
    let up = |v: f64| (v.sqrt() * (1.0 + 1e-6)) as f32; // rounded up, never under
    (
        scale,
        sum,
        RowNorms {
            hat: up(hat2),
            err: up(err2),
            norm: up(x2),
        },
    )
}

/// Euclidean norms of a row's quantised version, its quantisation error and the row itself.
#[derive(Default, Clone, Copy)]
struct RowNorms {
    hat: f32,
    err: f32,
    norm: f32,
}

/// The corpus packed for the kernel: blocks of 16 rows, within a block `d4` groups of 16 rows x 4
/// bytes (one 64-byte register each). Rows are padded to a multiple of `NR` with zeros.
struct PackedCorpus {
    d4: usize,
    n: usize,
    data: Vec<u8>,
    /// per row (padded): scale, `-128 * sum` of the int8 values (the u8 offset of the queries),
    /// norms of the quantised row and of its error, and the largest row norm
    scale: Vec<f32>,
    neg128sum: Vec<f32>,
    hat: Vec<f32>,
    err: Vec<f32>,
    max_norm: f32,
}

fn pack_corpus(c: Rows<'_>, d: usize) -> PackedCorpus {
    let n = c.len() / d;
    let d4 = d.div_ceil(4);
    let n_pad = n.div_ceil(NR) * NR;
    let mut data = vec![0u8; n_pad * d4 * 4];
    let mut scale = vec![0f32; n_pad];
    let mut sums = vec![0i32; n_pad];
    let mut norms = vec![RowNorms::default(); n_pad];
    let block_bytes = 16 * d4 * 4;
    data.par_chunks_mut(block_bytes)
        .zip(scale.par_chunks_mut(16))
        .zip(sums.par_chunks_mut(16))
        .zip(norms.par_chunks_mut(16))
        .enumerate()
        .for_each(|(b, (((blk, sc), su), no))| {
            let mut row = vec![0i8; d4 * 4];
            let mut wide = Vec::new();
            for lane in 0..16 {
                let j = b * 16 + lane;
                if j >= n {
                    break;
                }
                let x = c.widen(j * d, (j + 1) * d, &mut wide);
                let (s, t, r) = quantise_row(x, &mut row[..d]);
                sc[lane] = s;
                su[lane] = t;
                no[lane] = r;
                for k4 in 0..d4 {
                    for r in 0..4 {
                        blk[(k4 * 16 + lane) * 4 + r] = row[k4 * 4 + r] as u8;
                    }
                }
            }
        });
    PackedCorpus {
        d4,
        n,
        data,
        scale,
        neg128sum: sums.iter().map(|&s| -128.0 * s as f32).collect(),
        hat: norms.iter().map(|r| r.hat).collect(),
        err: norms.iter().map(|r| r.err).collect(),
        max_norm: norms.iter().fold(0f32, |a, r| a.max(r.norm)),
    }
}

/// f32 with a total order, for the heap of lower bounds.
#[derive(Clone, Copy)]
struct Ord32(f32);
impl PartialEq for Ord32 {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl Eq for Ord32 {}
impl PartialOrd for Ord32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ord32 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// One query's running state: the k largest lower bounds (min-heap) and the candidates whose
/// upper bound reached the k-th lower bound when they were seen.
struct QueryState {
    k: usize,
    lower: BinaryHeap<std::cmp::Reverse<Ord32>>,
    threshold: f32,
    cands: Vec<(u32, f32)>,
    prune_at: usize,
}

impl QueryState {
    fn new(k: usize) -> Self {
        Self {
            k,
            lower: BinaryHeap::with_capacity(k + 1),
            threshold: f32::NEG_INFINITY,
            cands: Vec::new(),
            prune_at: 8 * k.max(128),
        }
    }

    #[inline]
    fn offer(&mut self, j: u32, lb: f32, ub: f32) {
        if self.lower.len() < self.k {
            self.lower.push(std::cmp::Reverse(Ord32(lb)));
        } else if lb > self.threshold {
            self.lower.pop();
            self.lower.push(std::cmp::Reverse(Ord32(lb)));
        }
        if self.lower.len() == self.k {
            self.threshold = self.lower.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
        }
        if ub >= self.threshold {
            self.cands.push((j, ub));
            if self.cands.len() >= self.prune_at {
                let t = self.threshold;
                self.cands.retain(|c| c.1 >= t);
                self.prune_at = (2 * self.cands.len()).max(8 * self.k.max(128));
            }
        }
    }
}

/// Top-`k` by inner product through the int8 prefilter; the same contract as
/// [`super::topk_inner_product`], inputs already validated by it. Errors when the CPU lacks
/// AVX-512 VNNI (check [`available`]).
#[allow(clippy::too_many_lines)] // one task body: quantise, scan, re-score
pub(crate) fn topk_int8(
    queries: Rows<'_>,
    corpus: Rows<'_>,
    d: usize,
    k: usize,
) -> CoreResult<TopK> {
    if !available() {
        return Err(CoreError::InvalidParam(
            "the int8 search needs a CPU with AVX-512 VNNI".into(),
        ));
    }
    let (nq, nc) = (queries.len() / d, corpus.len() / d);
    let pc = pool::install(|| pack_corpus(corpus, d));
    let d4 = pc.d4;
    let mut indices = vec![-1i64; nq * k];
    let mut scores = vec![f32::NEG_INFINITY; nq * k];
    let threads = pool::num_threads().max(1);
    let qt = QT.min(nq.div_ceil(threads).div_ceil(MR) * MR).max(MR);
    pool::install(|| {
        indices
            .par_chunks_mut(qt * k)
            .zip(scores.par_chunks_mut(qt * k))
            .enumerate()
            .for_each(|(t, (idx, sc))| {
                let q0 = t * qt;
                let m = idx.len() / k;
                let mp = m.div_ceil(MR) * MR;
                // queries as u8 (int8 + 128), padded rows of zeros
                let mut qd = vec![128u8; mp * d4 * 4];
                let mut qs = vec![0f32; mp];
                let mut qn = vec![RowNorms::default(); mp];
                let mut slack = vec![0f32; mp];
                let mut row = vec![0i8; d4 * 4];
                let (mut qwide, mut cwide) = (Vec::new(), Vec::new());
                for i in 0..m {
                    let x = queries.widen((q0 + i) * d, (q0 + i + 1) * d, &mut qwide);
                    let (s, _, norms) = quantise_row(x, &mut row[..d]);
                    for (o, &v) in qd[i * d4 * 4..(i + 1) * d4 * 4].iter_mut().zip(&row) {
                        *o = (i32::from(v) + 128) as u8;
                    }
                    qs[i] = s;
                    qn[i] = norms;
                    // f32 rounding of the approximate score: a few ulps of |q| * max|c|
                    slack[i] = 1e-6 * norms.norm * pc.max_norm;
                }
                let mut states: Vec<QueryState> = (0..m).map(|_| QueryState::new(k)).collect();
                let n_pad = pc.data.len() / (d4 * 4);
                for j0 in (0..n_pad).step_by(NR) {
                    for i0 in (0..mp).step_by(MR) {
                        // SAFETY: the CPU has the features (checked above); the pointers
                        // cover MR query rows of d4*4 bytes and 2 blocks of 16*d4*4 bytes.
                        unsafe {
                            tile(
                                qd.as_ptr().add(i0 * d4 * 4),
                                pc.data.as_ptr().add(j0 * d4 * 4),
                                d4,
                                &mut states,
                                i0,
                                m,
                                j0,
                                &pc,
                                &qs,
                                &qn,
                                &slack,
                            );
                        }
                    }
                }
                for (r, st) in states.into_iter().enumerate() {
                    if qs[r] == 0.0 {
                        // every score is exactly 0: the first k rows by index
                        for o in 0..k {
                            idx[r * k + o] = o as i64;
                            sc[r * k + o] = 0.0;
                        }
                        continue;
                    }
                    let q = queries.widen((q0 + r) * d, (q0 + r + 1) * d, &mut qwide);
                    let t = st.threshold;
                    let mut exact: Vec<(f32, u32)> = st
                        .cands
                        .into_iter()
                        .filter(|c| c.1 >= t && (c.0 as usize) < nc)
                        .map(|(j, _)| {
                            let (a, b) = (j as usize * d, (j as usize + 1) * d);
                            (dot(q, corpus.widen(a, b, &mut cwide)), j)
                        })
                        .collect();
                    exact.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    exact.dedup_by_key(|x| x.1);
                    for (o, (s, j)) in exact.into_iter().take(k).enumerate() {
                        idx[r * k + o] = i64::from(j);
                        sc[r * k + o] = s;
                    }
                }
            });
    });
    Ok(TopK { indices, scores })
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    // plain multiply-add (mul_add would be a libm call without a target FMA feature)
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// MR queries x 32 corpus rows: int8 dot products, then the bound check; the rare rows whose
/// upper bound reaches a query's threshold are offered to its state.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    q: *const u8,
    c: *const u8,
    d4: usize,
    states: &mut [QueryState],
    i0: usize,
    m: usize,
    j0: usize,
    pc: &PackedCorpus,
    qs: &[f32],
    qn: &[RowNorms],
    slack: &[f32],
) {
    use std::arch::x86_64::_mm512_fmadd_ps;
    use std::arch::x86_64::{
        __m512i, _mm512_add_ps, _mm512_cmp_ps_mask, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32,
        _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_si512, _mm512_storeu_si512, _CMP_GE_OQ,
    };
    let mut acc: [__m512i; 2 * MR] = [_mm512_setzero_si512(); 2 * MR];
    let c1 = c.add(16 * d4 * 4);
    for k4 in 0..d4 {
        let b0 = _mm512_loadu_si512(c.add(k4 * 64).cast());
        let b1 = _mm512_loadu_si512(c1.add(k4 * 64).cast());
        for i in 0..MR {
            let a = _mm512_set1_epi32(q.add(i * d4 * 4 + k4 * 4).cast::<i32>().read_unaligned());
            acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], a, b0);
            acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], a, b1);
        }
    }
    // approximate score t*s*(acc - 128*sum(cc)); its error is at most
    // |eq|*|s*cc| + |q|*|ec| (+ slack): upper bound = approx + that, tested 16 rows at a time
    let mut lanes = [0i32; 16];
    for half in 0..2 {
        let j = j0 + 16 * half;
        let sv = _mm512_loadu_ps(pc.scale.as_ptr().add(j));
        let ov = _mm512_loadu_ps(pc.neg128sum.as_ptr().add(j));
        let hv = _mm512_loadu_ps(pc.hat.as_ptr().add(j));
        let ev = _mm512_loadu_ps(pc.err.as_ptr().add(j));
        for i in 0..MR {
            let r = i0 + i;
            if r >= m {
                break;
            }
            let t = qs[r];
            if t == 0.0 {
                continue; // an all-zero query: answered without the prefilter
            }
            let st = &mut states[r];
            let n = qn[r];
            let approx = _mm512_mul_ps(
                _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(acc[2 * i + half]), ov), sv),
                _mm512_set1_ps(t),
            );
            let width = _mm512_fmadd_ps(
                hv,
                _mm512_set1_ps(n.err),
                _mm512_fmadd_ps(ev, _mm512_set1_ps(n.norm), _mm512_set1_ps(slack[r])),
            );
            let ub = _mm512_add_ps(approx, width);
            let mask = _mm512_cmp_ps_mask(ub, _mm512_set1_ps(st.threshold), _CMP_GE_OQ);
            if mask == 0 {
                continue;
            }
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), acc[2 * i + half]);
            for (l, &raw_dot) in lanes.iter().enumerate() {
                if mask & (1 << l) == 0 || j + l >= pc.n {
                    continue;
                }
                let jj = j + l;
                let a = t * pc.scale[jj] * (raw_dot as f32 + pc.neg128sum[jj]);
                let w = pc.hat[jj] * n.err + pc.err[jj] * n.norm + slack[r];
                st.offer(jj as u32, a - w, a + w);
            }
        }
    }
}
