//! Exact top-k through an int8 prefilter (x86-64 with AVX-512 VNNI): rows are quantised to int8
//! with one scale per row, `vpdpbusd` computes 64 multiply-adds per instruction (4x the f32 FMA
//! rate), and every approximate score carries a rigorous error bound. A corpus row can be in the
//! true top-k only if its upper bound reaches the k-th largest lower bound seen so far; those
//! candidates are re-scored exactly in f32 at the end, largest upper bound first, until the next
//! upper bound is below the k-th exact score. The answer is the exact top-k (ties by the lower
//! index), the scores exact f32 inner products.
//!
//! Bound: with `q = t*qq + eq` and `c = s*cc + ec` (`t`, `s` the row scales, `qq`, `cc` the int8
//! rows), `q.c - (t*qq).(s*cc) = eq.(s*cc) + q.ec`, so by Cauchy-Schwarz the error is at most
//! `|eq|*|s*cc| + |q|*|ec|`, four norms computed exactly per row when quantising (plus a margin
//! for the f32 rounding of the approximate score).
//!
//! The threshold is first raised with optimistic lower bounds (the approximate score less a
//! share of its bound) and, on corpora of 8,192 rows or more, scanned in a fixed pseudo-random
//! order, with a schedule: over the first 1/64, 1/16 and 1/4 of the rows the threshold is a
//! higher-ranked lower bound (the 9th, 18th, 43rd largest at k = 100): a random sample of that
//! share of the rows holds that many of the k - 1 rows scoring above the k-th only by rare
//! chance (1e-4), so the threshold stays below the k-th score. A query whose k-th exact
//! score reaches its final threshold is proven exact (every row scoring that much had an upper
//! bound above the threshold all along), the rare other one is searched again with the rigorous
//! bounds and no schedule.
//!
//! The kernel's cost is the 8 x 32 tile of `vpdpbusd` (at the instruction's throughput on Zen 4);
//! after each tile a multiply, two multiply-adds and a compare per 16 rows and query test each
//! row's own upper bound against the query's threshold, and only the rows that pass are offered
//! (their bounds vectorised and compressed into the candidate list).

#![allow(clippy::many_single_char_names)] // the notation of the bound above

use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};
use crate::pool;

use super::topk::{Rows, TopK};

/// Queries per kernel call, corpus rows per kernel call (`NB` 16-lane registers: 2 x 8 of the 32
/// registers hold accumulators; 48 rows, 24 accumulators, measured no faster on the Xeon).
const MR: usize = 8;
const NR: usize = 32;
const NB: usize = NR / 16;
/// Queries per task at most: their int8 rows stay in L2 while each 32-row corpus tile, loaded
/// once per task, stays in L1 across all of them (the corpus streams once per task). Each group
/// of `MR` queries prefetches its share of the next tile into L2 (with 16 groups, all of it): on a
/// Xeon the first group otherwise waited on memory for every tile (the loop ran at ~60% of the
/// `vpdpbusd` throughput instead of ~80%; 256 queries per task are no faster).
const QT: usize = 128;
/// The scan's schedule ([`schedule`]): its parts end at a quarter, a sixteenth, ... of the
/// corpus, the first after at least `FIRST_PART` rows; each part's count of lower bounds is
/// exceeded by chance with probability `SCHEDULE_EPS`. Corpora of fewer than `SCHEDULE_FROM`
/// rows have no schedule (and are scanned in their own order).
const FIRST_PART: usize = 2048;
const SCHEDULE_FROM: usize = 4 * FIRST_PART;
const SCHEDULE_EPS: f64 = 1e-4;

/// Whether this CPU runs the int8 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantises a row into `out`; returns (scale, sum of the int8 values, norms). Only called on
/// the int8 path, where the CPU has AVX-512: the intrinsics copy runs; the portable one is the
/// reference for other targets.
fn quantise_row(x: &[f32], out: &mut [i8]) -> (f32, i32, RowNorms) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512 F and BW (checked by `available`)
        return unsafe { quantise_row_avx512(x, out) };
    }
    quantise_row_lanes(x, out)
}

/// [`quantise_row_lanes`] in AVX-512 registers: the same scale, values rounded to nearest (ties
/// to even, where the portable copy rounds them away from zero: either is a valid quantisation,
/// the bounds are of the values written), the norms summed in f32 in units of the scale (the
/// int8 squares in i32) with a margin for their rounding instead of in f64: upper bounds all
/// the same, looser by (n / 16 + 16) * 2^-23 relative (6e-6 at n = 384). The compiler's version
/// of the portable copy left 17 cycles per value on a Xeon, 8% of a search.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantise_row_avx512(x: &[f32], out: &mut [i8]) -> (f32, i32, RowNorms) {
    use std::arch::x86_64::{
        _mm512_abs_ps, _mm512_add_epi32, _mm512_add_epi64, _mm512_castsi512_si256,
        _mm512_cvt_roundps_epi32, _mm512_cvtepi32_epi64, _mm512_cvtepi32_ps,
        _mm512_extracti64x4_epi64, _mm512_fmadd_ps, _mm512_fnmadd_ps,
        _mm512_mask_cvtepi32_storeu_epi8, _mm512_maskz_loadu_ps, _mm512_max_epi32, _mm512_max_ps,
        _mm512_min_epi32, _mm512_mul_ps, _mm512_mullo_epi32, _mm512_reduce_add_epi32,
        _mm512_reduce_add_epi64, _mm512_reduce_add_ps, _mm512_reduce_max_ps, _mm512_set1_epi32,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512, _MM_FROUND_NO_EXC,
        _MM_FROUND_TO_NEAREST_INT,
    };
    let n = x.len();
    let lanes = |i: usize| -> u16 {
        if i + 16 <= n {
            u16::MAX
        } else {
            ((1u32 << (n - i)) - 1) as u16
        }
    };
    let mut mx = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let v = _mm512_maskz_loadu_ps(lanes(i), x.as_ptr().add(i));
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
    }
    let m = _mm512_reduce_max_ps(mx);
    if m == 0.0 {
        out.fill(0);
        return (0.0, 0, RowNorms::default());
    }
    let scale = m / 127.0;
    let (vinv, vscale) = (_mm512_set1_ps(127.0 / m), _mm512_set1_ps(scale));
    let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
    let (mut sum, mut r2) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let (mut err2, mut x2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..n).step_by(16) {
        let mask = lanes(i);
        // lanes past the row load as 0 and quantise to 0: they add nothing
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
        // the value in units of the scale (|t| <= 127): its square never overflows, and only
        // values 1e-19 below the row's largest underflow, far inside the kernel's slack
        let t = _mm512_mul_ps(v, vinv);
        let r = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let r = _mm512_max_epi32(_mm512_min_epi32(r, hi), lo);
        _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i).cast(), mask, r);
        sum = _mm512_add_epi32(sum, r);
        r2 = _mm512_add_epi32(r2, _mm512_mullo_epi32(r, r));
        // the error v - scale * r rounded once (its inputs are exact f32 values), then in units
        // of the scale
        let e = _mm512_mul_ps(_mm512_fnmadd_ps(vscale, _mm512_cvtepi32_ps(r), v), vinv);
        err2 = _mm512_fmadd_ps(e, e, err2);
        x2 = _mm512_fmadd_ps(t, t, x2);
    }
    // sums of squares in f32: each lane adds n / 16 terms, then 4 levels of the reduction, each
    // operation rounded (relative error 2^-24), each value rounded twice before (the product
    // by 127 / m, itself rounded, and scale * (127 / m) within 2^-23 of 1): the relative error
    // of a norm is below (n / 16 + 12) * 2^-24, covered with room by the margin; the squares of
    // the int8 values sum exactly in i32 (each lane below 2^31 for n < 2 million)
    let margin = 1.0 + 1e-6 + (n / 16 + 16) as f64 * f64::from(f32::EPSILON);
    let up = |v: f32| (f64::from(scale) * f64::from(v).sqrt() * margin) as f32; // never under
    let r2 = _mm512_reduce_add_epi64(_mm512_add_epi64(
        _mm512_cvtepi32_epi64(_mm512_castsi512_si256(r2)),
        _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(r2)),
    ));
    (
        scale,
        _mm512_reduce_add_epi32(sum),
        RowNorms {
            hat: (f64::from(scale) * (r2 as f64).sqrt() * (1.0 + 1e-6)) as f32,
            err: up(_mm512_reduce_add_ps(err2)),
            norm: up(_mm512_reduce_add_ps(x2)),
        },
    )
}

/// [`quantise_row`] in 16 independent lanes (each an exact f64 sum of squares; the lanes are
/// added at the end).
fn quantise_row_lanes(x: &[f32], out: &mut [i8]) -> (f32, i32, RowNorms) {
    const L: usize = 16;
    let mut mx = [0f32; L];
    let (xc, xr) = (x.chunks_exact(L), x.chunks_exact(L).remainder());
    for ch in xc {
        for l in 0..L {
            let a = ch[l].abs();
            mx[l] = if a > mx[l] { a } else { mx[l] };
        }
    }
    let m = xr.iter().chain(&mx).fold(0f32, |a, v| a.max(v.abs()));
    if m == 0.0 {
        out.fill(0);
        return (0.0, 0, RowNorms::default());
    }
    let scale = m / 127.0;
    let inv = 127.0 / m;
    let mut sum = [0i32; L];
    let (mut hat2, mut err2, mut x2) = ([0f64; L], [0f64; L], [0f64; L]);
    let one = |l: usize,
               v: f32,
               o: &mut i8,
               sum: &mut [i32; L],
               h: &mut [f64; L],
               e: &mut [f64; L],
               s: &mut [f64; L]| {
        let r = (v * inv).round().clamp(-127.0, 127.0);
        *o = r as i32 as i8;
        sum[l] += r as i32;
        let hat = f64::from(scale) * f64::from(r);
        h[l] += hat * hat;
        e[l] += (f64::from(v) - hat) * (f64::from(v) - hat);
        s[l] += f64::from(v) * f64::from(v);
    };
    let n = x.len() / L * L;
    for (ch, oc) in x[..n].chunks_exact(L).zip(out[..n].chunks_exact_mut(L)) {
        for l in 0..L {
            one(
                l, ch[l], &mut oc[l], &mut sum, &mut hat2, &mut err2, &mut x2,
            );
        }
    }
    for (i, (&v, o)) in x[n..].iter().zip(&mut out[n..x.len()]).enumerate() {
        one(i, v, o, &mut sum, &mut hat2, &mut err2, &mut x2);
    }
    let up = |v: &[f64; L]| (v.iter().sum::<f64>().sqrt() * (1.0 + 1e-6)) as f32; // never under
    (
        scale,
        sum.iter().sum(),
        RowNorms {
            hat: up(&hat2),
            err: up(&err2),
            norm: up(&x2),
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

/// Zeroed memory for the packed corpus: an anonymous map that asks for transparent huge pages
/// (fewer page faults when it is written, fewer TLB misses each time a task streams it), or a
/// `Vec` where no map can be made.
enum Bytes {
    Map(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Bytes {
    fn zeroed(len: usize) -> Self {
        if len >= 1 << 21 {
            if let Ok(map) = memmap2::MmapMut::map_anon(len) {
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage); // a hint: refused is fine
                return Self::Map(map);
            }
        }
        Self::Heap(vec![0u8; len])
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Map(m) => m,
            Self::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Map(m) => m,
            Self::Heap(v) => v,
        }
    }
}

/// The corpus packed for the kernel: blocks of 16 rows, within a block `d4` groups of 16 rows x 4
/// bytes (one 64-byte register each). Rows are padded to a multiple of `NR` with zeros.
struct PackedCorpus {
    d: usize,
    d4: usize,
    n: usize,
    /// the corpus row in each slot (the scan's order): a fixed pseudo-random permutation from
    /// [`SCHEDULE_FROM`] rows on, so that any prefix of the scan is a random sample of the corpus
    /// whatever the corpus's order (empty: slot = row)
    order: Vec<u32>,
    data: Bytes,
    /// per row (padded): scale, `-128 * sum` of the int8 values (the u8 offset of the queries),
    /// norms of the quantised row and of its error; the largest norms of the rows, of their
    /// quantised versions and of their errors
    scale: Vec<f32>,
    neg128sum: Vec<i32>,
    hat: Vec<f32>,
    err: Vec<f32>,
    max_norm: f32,
    max_hat: f32,
    max_err: f32,
}

fn pack_corpus(c: Rows<'_>, d: usize) -> PackedCorpus {
    let n = c.len() / d;
    let d4 = d.div_ceil(4);
    let n_pad = n.div_ceil(NR) * NR;
    let mut data = Bytes::zeroed(n_pad * d4 * 4);
    let mut scale = vec![0f32; n_pad];
    let mut sums = vec![0i32; n_pad];
    let mut norms = vec![RowNorms::default(); n_pad];
    let order = if n >= SCHEDULE_FROM {
        scan_order(n)
    } else {
        Vec::new()
    };
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
                let src = order.get(j).map_or(j, |&r| r as usize);
                if let Some(&ahead) = order.get(j + 2) {
                    // the permuted rows are scattered: ask for the next but one in time
                    prefetch_row(c, ahead as usize * d, d);
                }
                let x = c.widen(src * d, (src + 1) * d, &mut wide);
                let (s, t, r) = quantise_row(x, &mut row[..d]);
                sc[lane] = s;
                su[lane] = t;
                no[lane] = r;
                for (k4, four) in row.chunks_exact(4).enumerate() {
                    // 4 consecutive values of the row: one 32-bit lane of a register
                    let at = (k4 * 16 + lane) * 4;
                    let four: [i8; 4] = four.try_into().expect("chunks of 4");
                    blk[at..at + 4].copy_from_slice(&four.map(|v| v as u8));
                }
            }
        });
    PackedCorpus {
        d,
        d4,
        n,
        order,
        data,
        scale,
        neg128sum: sums.iter().map(|&s| -128 * s).collect(),
        hat: norms.iter().map(|r| r.hat).collect(),
        err: norms.iter().map(|r| r.err).collect(),
        max_norm: norms.iter().fold(0f32, |a, r| a.max(r.norm)),
        max_hat: norms.iter().fold(0f32, |a, r| a.max(r.hat)),
        max_err: norms.iter().fold(0f32, |a, r| a.max(r.err)),
    }
}

/// A fixed pseudo-random permutation of `0..n` (Fisher-Yates driven by the `SplitMix64`
/// generator from a constant seed: the same order on every run and machine).
fn scan_order(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..n).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // (z * (i + 1)) >> 64: uniform in 0..=i up to a bias of (i + 1) / 2^64
        let j = ((u128::from(z) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// f32 with a total order, for the heap of exact scores in [`rescore`].
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

/// A min-heap of at most `k` lower bounds (the k largest seen so far; its root is the k-th
/// largest) with 16 children a node, so that replacing the root walks two levels for k = 100
/// instead of seven, each level one 64-byte load and a vector minimum (the binary heap spent
/// ~10% of the kernel's scan on a Xeon: seven dependent loads from L2 and a mispredicted branch
/// a level). Every value is finite (a bound on a finite score); the slots past the heap hold
/// +inf, so a node's 16 children are always one full load.
struct LowerBounds {
    v: Vec<f32>,
    len: usize,
}

/// Children a node: the node `i` has `ARITY * i + 1 ..= ARITY * i + ARITY`.
const ARITY: usize = 16;

impl LowerBounds {
    fn new(k: usize) -> Self {
        // the children of the last parent, (k - 2) / ARITY, end before k + ARITY
        Self {
            v: vec![f32::INFINITY; k + ARITY],
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Adds `x` (the heap holds fewer than `k`).
    fn push(&mut self, x: f32) {
        let v = &mut self.v;
        let mut i = self.len;
        self.len += 1;
        while i > 0 {
            let p = (i - 1) / ARITY;
            if v[p] <= x {
                break;
            }
            v[i] = v[p];
            i = p;
        }
        v[i] = x;
    }

    /// Replaces the root (the smallest) by `x` and restores the heap.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn replace_min(&mut self, x: f32) {
        use std::arch::x86_64::{
            _mm512_cmp_ps_mask, _mm512_loadu_ps, _mm512_reduce_min_ps, _mm512_set1_ps, _CMP_EQ_OQ,
        };
        let (v, n) = (&mut self.v, self.len);
        let mut i = 0;
        loop {
            let c0 = ARITY * i + 1;
            if c0 >= n {
                break;
            }
            // SAFETY: c0 < n <= k and the vector holds k + ARITY values
            let kids = _mm512_loadu_ps(v.as_ptr().add(c0));
            let m = _mm512_reduce_min_ps(kids);
            if m >= x {
                break;
            }
            let at = _mm512_cmp_ps_mask(kids, _mm512_set1_ps(m), _CMP_EQ_OQ).trailing_zeros();
            v[i] = m;
            i = c0 + at as usize;
        }
        v[i] = x;
    }

    fn min(&self) -> f32 {
        if self.len == 0 {
            f32::NEG_INFINITY
        } else {
            self.v[0]
        }
    }
}

/// A candidate and its upper bound (laid out as two 32-bit lanes, written by the kernel): its
/// slot in the packed corpus during the scan, its corpus row when re-scored.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cand {
    row: u32,
    ub: f32,
}

/// One query's running state: a lower bound on its k-th largest score (`threshold`: the k-th
/// largest of the lower bounds seen so far, the root of the min-heap `lbs`, updated with each
/// lower bound that enters; with optimistic lower bounds an estimate, checked after re-scoring)
/// and the candidates whose upper bound reached the threshold when they were seen.
struct QueryState {
    k: usize,
    /// how many lower bounds `lbs` keeps now (the schedule's count for the part of the scan
    /// reached; `k` at the end)
    cap: usize,
    lbs: LowerBounds,
    threshold: f32,
    /// `threshold` in the kernel's units: a row whose `v = scale * (int8 dot - 128 * sum)` is
    /// below `lim - hat * lim_hat - err * lim_err` (its own quantised and error norms) has an
    /// upper bound below `threshold` (`lim` +inf for a query of zeros or a padding row)
    lim: f32,
    lim_hat: f32,
    lim_err: f32,
    cands: Vec<Cand>,
    prune_at: usize,
    /// the query's scale, norms, f32 rounding slack and widest error bound over the corpus
    scale: f32,
    /// `1 / scale` (0 for a query of zeros), so that each threshold update multiplies
    inv_scale: f32,
    norms: RowNorms,
    slack: f32,
    wmax: f32,
    /// the share of a row's error bound subtracted from its approximate score for the lower
    /// bounds (1: rigorous; less: optimistic, the answer proven afterwards)
    share: f32,
}

impl QueryState {
    fn new(k: usize, scale: f32, norms: RowNorms, pc: &PackedCorpus, share: f32) -> Self {
        // f32 rounding of the approximate score: a few ulps of |q| * max|c|
        let slack = 1e-6 * norms.norm * pc.max_norm;
        let mut st = Self {
            k,
            cap: k,
            lbs: LowerBounds::new(k),
            threshold: f32::NEG_INFINITY,
            lim: f32::INFINITY,
            lim_hat: 0.0,
            lim_err: 0.0,
            cands: Vec::new(),
            prune_at: 8 * k.max(128),
            scale,
            inv_scale: if scale == 0.0 { 0.0 } else { 1.0 / scale },
            norms,
            slack,
            // the widest bound any row can have, with room for the rounding of the kernel's
            // own test (two more slacks)
            wmax: pc.max_hat * norms.err + pc.max_err * norms.norm + 3.0 * slack,
            share,
        };
        st.set_lim();
        st
    }

    fn set_lim(&mut self) {
        let t = self.scale;
        if t == 0.0 {
            self.lim = f32::INFINITY;
            return;
        }
        let inv = self.inv_scale;
        self.lim_hat = self.norms.err * inv;
        self.lim_err = self.norms.norm * inv;
        self.lim = if self.threshold == f32::NEG_INFINITY {
            f32::NEG_INFINITY
        } else {
            // ub = t * v + hat * |eq| + err * |q| + slack >= threshold needs
            // v >= (threshold - slack) / t - hat * |eq| / t - err * |q| / t; two more slacks
            // for the rounding of the kernel's own test, and the reciprocal, the products and
            // the two multiply-adds of the test err by a few 1e-8 relative, inside the margin
            let x = (self.threshold - 3.0 * self.slack) * inv;
            x - (self.threshold.abs() + self.wmax) * inv * 1e-6
        };
    }

    /// Offers 16 rows `j..j + 16` (the lanes of `valid`) by their approximate scores and error
    /// widths: lower bounds above the threshold join `lbs`, rows whose upper bound reaches it
    /// join the candidates (compressed in registers, stored 16 lanes at a time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,popcnt")]
    #[inline]
    unsafe fn offer16(
        &mut self,
        j: usize,
        approx: std::arch::x86_64::__m512,
        width: std::arch::x86_64::__m512,
        valid: u16,
    ) {
        use std::arch::x86_64::{
            _mm512_add_epi32, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps,
            _mm512_fnmadd_ps, _mm512_mask_cmp_ps_mask, _mm512_maskz_compress_epi32,
            _mm512_maskz_compress_ps, _mm512_permutex2var_epi32, _mm512_set1_epi32, _mm512_set1_ps,
            _mm512_setr_epi32, _mm512_storeu_ps, _mm512_storeu_si512, _CMP_GE_OQ, _CMP_GT_OQ,
        };
        let thr = _mm512_set1_ps(self.threshold);
        let ub = _mm512_add_ps(approx, width);
        let take = _mm512_mask_cmp_ps_mask(valid, ub, thr, _CMP_GE_OQ);
        if take == 0 {
            return;
        }
        let lb = _mm512_fnmadd_ps(width, _mm512_set1_ps(self.share), approx);
        let up = _mm512_mask_cmp_ps_mask(take, lb, thr, _CMP_GT_OQ);
        if up != 0 {
            let mut lanes = [0f32; 16];
            _mm512_storeu_ps(lanes.as_mut_ptr(), lb);
            let mut bits = up;
            while bits != 0 {
                let x = lanes[bits.trailing_zeros() as usize];
                bits &= bits - 1;
                if x > self.threshold {
                    self.push_lb(x);
                }
            }
        }
        let rows = _mm512_add_epi32(
            _mm512_set1_epi32(j as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        let rows = _mm512_maskz_compress_epi32(take, rows);
        let ubs = _mm512_castps_si512(_mm512_maskz_compress_ps(take, ub));
        // (row, ub) pairs: lanes 0..8 then 8..16 of the two compressed registers, interleaved
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let len = self.cands.len();
        self.cands.reserve(16);
        let out = self.cands.as_mut_ptr().add(len).cast::<f32>();
        _mm512_storeu_si512(out.cast(), _mm512_permutex2var_epi32(rows, lo, ubs));
        _mm512_storeu_ps(
            out.add(16),
            _mm512_castsi512_ps(_mm512_permutex2var_epi32(rows, hi, ubs)),
        );
        self.cands.set_len(len + take.count_ones() as usize);
        if self.cands.len() >= self.prune_at {
            let t = self.threshold;
            self.cands.retain(|c| c.ub >= t);
            self.prune_at = (2 * self.cands.len()).max(8 * self.k.max(128));
        }
    }

    /// Adds a lower bound above the threshold to `lbs`, a min-heap of the k largest so far;
    /// once it holds k, the threshold is its root (the k-th largest).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn push_lb(&mut self, x: f32) {
        if self.lbs.len() < self.cap {
            self.lbs.push(x);
            if self.lbs.len() < self.cap {
                return;
            }
        } else {
            self.lbs.replace_min(x);
        }
        self.threshold = self.lbs.min();
        self.set_lim();
    }
}

/// Top-`k` by inner product through the int8 prefilter; the same contract as
/// [`super::topk_inner_product`], inputs already validated by it. Errors when the CPU lacks
/// AVX-512 VNNI (check [`available`]).
///
/// Two passes: the first raises each query's threshold with optimistic lower bounds (the
/// approximate score less a fraction of its error bound, [`optimistic_share`]), which prunes
/// about half of the rows the rigorous bound lets through, and early in the scan with the
/// higher-ranked lower bounds of [`schedule`]; the upper bounds stay rigorous, so a
/// query's answer is exact whenever its k-th exact score reaches the threshold it was searched
/// with (every row scoring that much had an upper bound above the threshold all along). The
/// rare query whose answer cannot be proven so is searched again with rigorous lower bounds.
pub(crate) fn topk_int8(
    queries: Rows<'_>,
    corpus: Rows<'_>,
    d: usize,
    k: usize,
) -> CoreResult<TopK> {
    topk_int8_share(queries, corpus, d, k, optimistic_share(d)).map(|(top, _)| top)
}

/// [`topk_int8`] with the first pass's share of the error bound given; also returns how many
/// queries were searched again.
fn topk_int8_share(
    queries: Rows<'_>,
    corpus: Rows<'_>,
    d: usize,
    k: usize,
    share: f32,
) -> CoreResult<(TopK, usize)> {
    if !available() {
        return Err(CoreError::InvalidParam(
            "the int8 search needs a CPU with AVX-512 VNNI".into(),
        ));
    }
    let nq = queries.len() / d;
    let pc = pool::install(|| pack_corpus(corpus, d));
    // the schedule needs the scan's order to be random: only a permuted corpus has one
    let first = Pass {
        share,
        schedule: if share < 1.0 && !pc.order.is_empty() {
            schedule(k, pc.n)
        } else {
            Vec::new()
        },
    };
    let mut indices = vec![-1i64; nq * k];
    let mut scores = vec![f32::NEG_INFINITY; nq * k];
    let threads = pool::num_threads().max(1);
    let qt = QT.min(nq.div_ceil(threads).div_ceil(MR) * MR).max(MR);
    let write = |idx: &mut [i64], sc: &mut [f32], exact: &[(f32, u32)]| {
        for (o, &(s, j)) in exact.iter().take(k).enumerate() {
            idx[o] = i64::from(j);
            sc[o] = s;
        }
    };
    let again: Vec<usize> = pool::install(|| {
        indices
            .par_chunks_mut(qt * k)
            .zip(scores.par_chunks_mut(qt * k))
            .enumerate()
            .flat_map_iter(|(t, (idx, sc))| {
                let ids: Vec<usize> = (t * qt..t * qt + idx.len() / k).collect();
                let found = search_block(queries, corpus, &pc, &ids, k, &first);
                let mut again = Vec::new();
                for (r, (exact, proven)) in found.into_iter().enumerate() {
                    if proven {
                        write(&mut idx[r * k..], &mut sc[r * k..], &exact);
                    } else {
                        again.push(ids[r]);
                    }
                }
                again
            })
            .collect()
    });
    if !again.is_empty() {
        let found: Vec<(usize, Vec<(f32, u32)>)> = pool::install(|| {
            again
                .par_chunks(qt)
                .flat_map_iter(|ids| {
                    let found = search_block(queries, corpus, &pc, ids, k, &Pass::RIGOROUS);
                    ids.iter()
                        .copied()
                        .zip(found.into_iter().map(|(exact, proven)| {
                            debug_assert!(proven, "rigorous bounds always prove the answer");
                            exact
                        }))
                })
                .collect()
        });
        for (i, exact) in found {
            write(&mut indices[i * k..], &mut scores[i * k..], &exact);
        }
    }
    Ok((TopK { indices, scores }, again.len()))
}

/// The share of a row's error bound subtracted from its approximate score for the first pass's
/// lower bounds. The bound adds the norms of the two quantisation errors (Cauchy-Schwarz); the
/// error itself is their inner products with rows they do not point along, ~`1/sqrt(2 d)` of
/// the bound for errors in no particular direction. 4 of those (at d = 384, 0.14 of the bound):
/// on 2,000 queries against all-MiniLM-L6-v2 embeddings of DL19 passages at k = 10, 100 and 500
/// no query needed its second pass (with 3: one at k = 10; with 2: 1-2% of them), nor any of
/// 10,000 random unit queries at k = 100 (with 1: 2%).
fn optimistic_share(d: usize) -> f32 {
    (4.0 / (2.0 * d as f32).sqrt()).min(1.0)
}

/// The first pass's schedule over the scan of `n` slots: `(at, cap)`, from slot `at` on (a
/// multiple of `NR`) a query's threshold is the `cap`-th largest of its lower bounds (once it has
/// that many); the last part's `cap` is `k`.
///
/// Why: with the k-th largest lower bound from the start, a query raises its threshold ~k (1 +
/// ln(n / k)) times (860 heap updates a query at k = 100 on 200,000 rows) and takes the rows
/// within its error bound of each. Where the scan's order is random (the packed corpus is
/// permuted), the rows of a prefix of share f hold fewer than `cap` of the k - 1 rows scoring
/// above the k-th except with probability [`SCHEDULE_EPS`] ([`kept_in_prefix`]), so the
/// `cap`-th largest lower bound over the prefix is still at most the k-th score: ~9 lower
/// bounds raise the threshold over the first 1/64 of the rows, 18 over the first 1/16, 43 over
/// the first quarter (k = 100): 239 heap updates and 623 rows taken a query instead of 860
/// and 1,675 (counted on random rows). A threshold that is nonetheless too high cannot go
/// unnoticed: the query's k-th exact score is then below it and the query is searched again
/// with rigorous bounds and no schedule.
fn schedule(k: usize, n: usize) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut ends = Vec::new();
    let mut at = n;
    loop {
        at /= 4;
        let at_tile = at / NR * NR;
        if at_tile < FIRST_PART {
            break;
        }
        ends.push(at_tile);
    }
    ends.reverse();
    let mut start = 0;
    for end in ends {
        let cap = kept_in_prefix(k, end as f64 / n as f64, SCHEDULE_EPS);
        if cap >= k {
            break;
        }
        plan.push((start, cap));
        start = end;
    }
    plan.push((start, k));
    plan
}

/// The smallest `j` with P(Binomial(k - 1, f) >= j) <= eps: of the k - 1 rows scoring above the
/// k-th, placed at random, fewer than j are in a prefix of share f except with probability eps.
fn kept_in_prefix(k: usize, f: f64, eps: f64) -> usize {
    if f >= 1.0 || k <= 1 {
        return k;
    }
    let n = (k - 1) as f64;
    let (lf, lq) = (f.ln(), (1.0 - f).ln());
    let mut lp = n * lq; // log P(X = 0)
    let mut below = 0.0; // P(X < j)
    for j in 0..k {
        below += lp.exp();
        if 1.0 - below <= eps {
            return j + 1;
        }
        let i = j as f64;
        lp += ((n - i) / (i + 1.0)).ln() + lf - lq;
    }
    k
}

/// How a pass raises its queries' thresholds: the share of a row's error bound subtracted for
/// its lower bound ([`optimistic_share`]; 1: rigorous) and the [`schedule`] of lower-bound counts
/// (empty: the k-th largest throughout).
struct Pass {
    share: f32,
    schedule: Vec<(usize, usize)>,
}

impl Pass {
    /// Rigorous lower bounds, no schedule: every answer is proven.
    const RIGOROUS: Self = Self {
        share: 1.0,
        schedule: Vec::new(),
    };
}

/// Searches the queries `ids` through the packed corpus: for each, its top-k (exact scores,
/// best first) and whether it is proven (always in the rigorous pass).
#[allow(clippy::too_many_lines)] // one block: quantise, scan, re-score
fn search_block(
    queries: Rows<'_>,
    corpus: Rows<'_>,
    pc: &PackedCorpus,
    ids: &[usize],
    k: usize,
    pass: &Pass,
) -> Vec<(Vec<(f32, u32)>, bool)> {
    let (d4, d) = (pc.d4, pc.d);
    let nc = corpus.len() / d;
    let m = ids.len();
    let mp = m.div_ceil(MR) * MR;
    // queries as u8 (int8 + 128), padded rows of zeros
    let mut qd = vec![128u8; mp * d4 * 4];
    let mut row = vec![0i8; d4 * 4];
    let (mut qwide, mut cwide) = (Vec::new(), Vec::new());
    let mut states = Vec::with_capacity(mp);
    for i in 0..mp {
        let Some(&q) = ids.get(i) else {
            states.push(QueryState::new(k, 0.0, RowNorms::default(), pc, pass.share));
            continue;
        };
        let x = queries.widen(q * d, (q + 1) * d, &mut qwide);
        let (s, _, norms) = quantise_row(x, &mut row[..d]);
        // interleaved by groups of MR queries: [group][k4][query][4 bytes], so the kernel's
        // broadcasts are one pointer plus constant offsets
        let group = (i / MR) * MR * d4 * 4 + (i % MR) * 4;
        for (k4, four) in row.chunks_exact(4).enumerate() {
            let at = group + k4 * MR * 4;
            for (o, &v) in qd[at..at + 4].iter_mut().zip(four) {
                *o = (i32::from(v) + 128) as u8;
            }
        }
        states.push(QueryState::new(k, s, norms, pc, pass.share));
    }
    let n_pad = pc.data.len() / (d4 * 4);
    let mut next_phase = 0;
    for j0 in (0..n_pad).step_by(NR) {
        while let Some(&(at, cap)) = pass.schedule.get(next_phase) {
            if at > j0 {
                break;
            }
            for st in &mut states {
                st.cap = cap;
            }
            next_phase += 1;
        }
        for i0 in (0..mp).step_by(MR) {
            // each query group asks for its share of the next corpus tile (for 32 rows one
            // line per 8 steps: with 16 groups the whole tile), so the tile is in L2 when the
            // first group reaches it instead of in memory
            let next = pc
                .data
                .as_ptr()
                .wrapping_add((j0 + NR) * d4 * 4 + (i0 / MR) * (d4 * NR).div_ceil(256) * 64);
            // SAFETY: the CPU has the features (checked by the caller); the pointers cover a
            // group of MR interleaved query rows (MR*d4*4 bytes) and NB blocks of 16*d4*4 bytes,
            // `states` has a state for each of the MR rows (padding included); `next` is only
            // prefetched, never read.
            unsafe {
                tile(
                    qd.as_ptr().add(i0 * d4 * 4),
                    pc.data.as_ptr().add(j0 * d4 * 4),
                    d4,
                    &mut states[i0..i0 + MR],
                    j0,
                    pc,
                    next,
                );
            }
        }
    }
    states
        .into_iter()
        .zip(ids)
        .map(|(st, &q)| {
            if st.scale == 0.0 {
                // every score is exactly 0: the first k rows by index
                return ((0..k).map(|o| (0.0, o as u32)).collect(), true);
            }
            let x = queries.widen(q * d, (q + 1) * d, &mut qwide);
            let threshold = st.threshold;
            let mut cands = st.cands;
            cands.retain(|c| c.ub >= threshold && (c.row as usize) < nc);
            if !pc.order.is_empty() {
                for c in &mut cands {
                    c.row = pc.order[c.row as usize];
                }
            }
            let exact = rescore(x, corpus, d, k, cands, &mut cwide);
            // every row scoring at least the k-th exact score had an upper bound at least the
            // threshold at any time of the scan: it is a candidate, so the answer is exact
            let proven = threshold == f32::NEG_INFINITY
                || exact.get(k - 1).is_some_and(|&(s, _)| s >= threshold);
            (exact, proven)
        })
        .collect()
}

/// The exact top-k of a query among its candidates `(row, upper bound)` (those whose upper bound
/// reaches the query's final threshold): they are scored exactly in the
/// order of their upper bounds, largest first, until the next upper bound is below the k-th best
/// exact score found (no later candidate can enter, not even by a tie). Sorted by score, ties
/// by the lower row.
fn rescore(
    q: &[f32],
    corpus: Rows<'_>,
    d: usize,
    k: usize,
    mut cands: Vec<Cand>,
    scratch: &mut Vec<f32>,
) -> Vec<(f32, u32)> {
    let order = |a: &Cand, b: &Cand| b.ub.total_cmp(&a.ub).then(a.row.cmp(&b.row));
    // usually about 2.7 k candidates are scored: the largest 3 k upper bounds are sorted
    // first, the rest only if the scoring gets that far
    let mut sorted = cands.len().min(3 * k.max(16));
    if sorted < cands.len() {
        cands.select_nth_unstable_by(sorted - 1, order);
    }
    cands[..sorted].sort_unstable_by(order);
    // min-heap of the k best so far: the root is the worst (lowest score, then highest row)
    let mut best: BinaryHeap<std::cmp::Reverse<(Ord32, std::cmp::Reverse<u32>)>> =
        BinaryHeap::with_capacity(k + 1);
    for n in 0..cands.len() {
        if n == sorted {
            cands[sorted..].sort_unstable_by(order);
            sorted = cands.len();
        }
        let Cand { row: j, ub } = cands[n];
        if best.len() == k {
            let worst = best.peek().map_or(f32::NEG_INFINITY, |w| w.0 .0 .0);
            if ub < worst {
                break;
            }
        }
        if let Some(next) = cands.get(n + 2).filter(|_| n + 2 < sorted) {
            prefetch_row(corpus, next.row as usize * d, d);
        }
        let (a, b) = (j as usize * d, (j as usize + 1) * d);
        let s = dot(q, corpus.widen(a, b, scratch));
        let item = std::cmp::Reverse((Ord32(s), std::cmp::Reverse(j)));
        if best.len() < k {
            best.push(item);
        } else if best.peek().is_some_and(|w| item < *w) {
            best.pop();
            best.push(item);
        }
    }
    let mut exact: Vec<(f32, u32)> = best.into_iter().map(|r| (r.0 .0 .0, r.0 .1 .0)).collect();
    exact.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    exact
}

/// Asks the CPU to start loading a corpus row (the next candidates are scattered in memory).
#[inline]
fn prefetch_row(corpus: Rows<'_>, start: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (ptr, bytes) = match corpus {
            Rows::F32(x) => (x[start..start + d].as_ptr().cast::<i8>(), d * 4),
            Rows::F16(x) => (x[start..start + d].as_ptr().cast::<i8>(), d * 2),
        };
        for off in (0..bytes).step_by(64) {
            // SAFETY: prefetching is a hint that never faults; the address is inside the row
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (corpus, start, d);
}

/// The exact f32 score: the same operations in the same order on every CPU (16 lanes, then
/// their sum), compiled for AVX-512 where the CPU has it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512 F (checked by `available`)
        return unsafe { dot_avx512(a, b) };
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[allow(clippy::inline_always)] // so the AVX-512 copy above is compiled with its features
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
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

/// MR queries x NR corpus rows: int8 dot products (the accumulators start at the rows'
/// `-128 * sum`, so they end at the int8 dot of the signed rows), then each row's own upper
/// bound tested against each query's threshold (in the kernel's units: `lim`, `lim_hat`,
/// `lim_err`); the rare rows that pass are offered to the query's state. `q` holds the MR
/// queries interleaved (`[k4][query][4 bytes]`); from `next` on, `NR * d4 / 256` lines are
/// prefetched, spread over the steps (one every 8 steps for 32 rows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,popcnt")]
unsafe fn tile(
    q: *const u8,
    c: *const u8,
    d4: usize,
    states: &mut [QueryState],
    j0: usize,
    pc: &PackedCorpus,
    next: *const u8,
) {
    use std::arch::x86_64::{
        __m512i, _mm512_cmp_ps_mask, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps,
        _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps, _mm512_set1_epi32,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512, _mm_prefetch, _CMP_GE_OQ,
        _MM_HINT_T1,
    };
    let mut acc: [__m512i; NB * MR] = [_mm512_setzero_si512(); NB * MR];
    for bb in 0..NB {
        let o = _mm512_loadu_si512(pc.neg128sum.as_ptr().add(j0 + 16 * bb).cast());
        for i in 0..MR {
            acc[NB * i + bb] = o;
        }
    }
    for k4 in 0..d4 {
        // the group's share of the next tile: NR * d4 / 256 lines spread over its d4 steps
        if (k4 * NR) % 256 < NR {
            // a hint: never faults, past the corpus included
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(k4 * NR / 256 * 64).cast());
        }
        let mut bv = [_mm512_setzero_si512(); NB];
        for (bb, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_si512(c.add(bb * 16 * d4 * 4 + k4 * 64).cast());
        }
        for i in 0..MR {
            let a = _mm512_set1_epi32(q.add(k4 * MR * 4 + i * 4).cast::<i32>().read_unaligned());
            for bb in 0..NB {
                acc[NB * i + bb] = _mm512_dpbusd_epi32(acc[NB * i + bb], a, bv[bb]);
            }
        }
    }
    // |acc| <= 127 * 127 * d < 2^24: converted to f32 exactly. approx = t * s * acc, error at
    // most |eq|*|s*cc| + |q|*|ec| (+ slack); s * acc >= lim - |s*cc| * lim_hat - |ec| * lim_err
    // is necessary for an upper bound that reaches the threshold, tested 16 rows at a time; the
    // rare rows that pass are offered
    let valid = |j: usize| -> u16 {
        if j + 16 <= pc.n {
            u16::MAX
        } else if j < pc.n {
            (1u16 << (pc.n - j)) - 1
        } else {
            0
        }
    };
    let mut vmask = [0u16; NB];
    let (mut sv, mut hat, mut err) = (
        [_mm512_setzero_ps(); NB],
        [_mm512_setzero_ps(); NB],
        [_mm512_setzero_ps(); NB],
    );
    for bb in 0..NB {
        vmask[bb] = valid(j0 + 16 * bb);
        sv[bb] = _mm512_loadu_ps(pc.scale.as_ptr().add(j0 + 16 * bb));
        hat[bb] = _mm512_loadu_ps(pc.hat.as_ptr().add(j0 + 16 * bb));
        err[bb] = _mm512_loadu_ps(pc.err.as_ptr().add(j0 + 16 * bb));
    }
    // every (query, block) tested without a branch; bit NB * i + block of `pass` set where any
    // lane passed
    let mut pass = 0u32;
    let mut v = [_mm512_setzero_ps(); NB * MR];
    for (i, st) in states.iter().enumerate().take(MR) {
        let (lim, lh, le) = (
            _mm512_set1_ps(st.lim),
            _mm512_set1_ps(st.lim_hat),
            _mm512_set1_ps(st.lim_err),
        );
        for bb in 0..NB {
            let l = _mm512_fnmadd_ps(hat[bb], lh, _mm512_fnmadd_ps(err[bb], le, lim));
            v[NB * i + bb] = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[NB * i + bb]), sv[bb]);
            let m = _mm512_cmp_ps_mask(v[NB * i + bb], l, _CMP_GE_OQ) & vmask[bb];
            pass |= u32::from(m != 0) << (NB * i + bb);
        }
    }
    while pass != 0 {
        let b = pass.trailing_zeros() as usize;
        pass &= pass - 1;
        let (i, bb) = (b / NB, b % NB);
        let j = j0 + 16 * bb;
        let st = &mut states[i];
        let n = st.norms;
        let approx = _mm512_mul_ps(v[b], _mm512_set1_ps(st.scale));
        let width = _mm512_fmadd_ps(
            hat[bb],
            _mm512_set1_ps(n.err),
            _mm512_fmadd_ps(err[bb], _mm512_set1_ps(n.norm), _mm512_set1_ps(st.slack)),
        );
        st.offer16(j, approx, width, vmask[bb]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::topk::tests::data;
    use super::*;

    /// The reference answer: each query's top k of every row scored with the same exact dot
    /// product, best first, ties by the lower row.
    fn every_row_scored(q: &[f32], c: &[f32], d: usize, k: usize) -> Vec<Vec<(f32, u32)>> {
        q.chunks_exact(d)
            .map(|qi| {
                let mut all: Vec<(f32, u32)> = c
                    .chunks_exact(d)
                    .enumerate()
                    .map(|(j, cj)| (dot(qi, cj), j as u32))
                    .collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                all.truncate(k);
                all
            })
            .collect()
    }

    /// Asserts that `top` is [`every_row_scored`]'s answer: the same ids, the same score bits.
    fn assert_every_row_scored(top: &TopK, q: &[f32], c: &[f32], d: usize, k: usize) {
        for (i, best) in every_row_scored(q, c, d, k).into_iter().enumerate() {
            for (o, (s, j)) in best.into_iter().enumerate() {
                assert_eq!(top.indices[i * k + o], i64::from(j), "k = {k}, query {i}");
                assert_eq!(
                    top.scores[i * k + o].to_bits(),
                    s.to_bits(),
                    "k = {k}, query {i}"
                );
            }
        }
    }

    #[test]
    fn quantised_norms_bound_the_exact_ones() {
        // the kernel's bounds rest on these norms being upper bounds: checked against f64 sums
        // of the values actually written, on rows of many lengths and magnitudes
        if !available() {
            return;
        }
        for (t, d) in [3, 16, 37, 384, 1000, 4096].into_iter().enumerate() {
            for (u, mag) in [1e-25f32, 1e-3, 1.0, 3e4, 1e25].into_iter().enumerate() {
                let mut x = data(1, d, (10 * t + u) as u64);
                for (i, v) in x.iter_mut().enumerate() {
                    // values over many binades, a few large ones
                    *v *= mag * if i % 97 == 0 { 50.0 } else { 1.0 };
                }
                let mut out = vec![0i8; d];
                let (scale, sum, n) = quantise_row(&x, &mut out);
                assert_eq!(sum, out.iter().map(|&v| i32::from(v)).sum::<i32>());
                let (mut hat2, mut err2, mut x2) = (0f64, 0f64, 0f64);
                for (&v, &r) in x.iter().zip(&out) {
                    let hat = f64::from(scale) * f64::from(r);
                    hat2 += hat * hat;
                    err2 += (f64::from(v) - hat).powi(2);
                    x2 += f64::from(v).powi(2);
                }
                for (got, exact) in [(n.hat, hat2), (n.err, err2), (n.norm, x2)] {
                    let exact = exact.sqrt();
                    assert!(f64::from(got) >= exact, "d {d}: {got} < {exact}");
                    assert!(
                        f64::from(got) <= exact * (1.0 + 1e-4),
                        "d {d}: {got} >> {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn kept_in_prefix_is_the_binomial_quantile() {
        // P(Binomial(n, f) >= j) summed term by term from the binomial coefficients
        fn tail(n: usize, f: f64, j: usize) -> f64 {
            (j..=n)
                .map(|i| {
                    let c: f64 = (0..i).map(|t| (n - t) as f64 / (t + 1) as f64).product();
                    c * f.powi(i as i32) * (1.0 - f).powi((n - i) as i32)
                })
                .sum()
        }
        for (k, f) in [
            (100, 1.0 / 64.0),
            (100, 0.25),
            (10, 0.25),
            (1000, 1.0 / 16.0),
            (40, 0.5),
        ] {
            let j = kept_in_prefix(k, f, 1e-4);
            assert!(tail(k - 1, f, j) <= 1e-4, "k {k} f {f} j {j}");
            assert!(tail(k - 1, f, j - 1) > 1e-4, "k {k} f {f} j {j}");
        }
        assert_eq!(kept_in_prefix(1, 0.25, 1e-4), 1);
        assert_eq!(kept_in_prefix(100, 1.0, 1e-4), 100);
    }

    #[test]
    fn schedule_counts_rise_to_k() {
        let plan = schedule(100, 200_000);
        // parts end at 200,000 / 64, / 16, / 4 (in whole tiles); their counts rise to k
        let at: Vec<usize> = plan.iter().map(|p| p.0).collect();
        assert_eq!(at, vec![0, 3104, 12_480, 49_984]);
        let caps: Vec<usize> = plan.iter().map(|p| p.1).collect();
        assert!(caps.windows(2).all(|w| w[0] < w[1]), "{caps:?}");
        assert_eq!(caps.last(), Some(&100));
        assert!(caps[0] < 12, "{caps:?}");
        // no part where the count would reach k; none on a corpus too small
        assert_eq!(schedule(100, SCHEDULE_FROM - 1), vec![(0, 100)]);
        assert_eq!(schedule(100, SCHEDULE_FROM).len(), 2);
        assert_eq!(schedule(3, 200_000), vec![(0, 3)]);
    }

    #[test]
    fn scan_order_is_a_fixed_random_permutation() {
        let n = 50_000;
        let order = scan_order(n);
        assert_eq!(order, scan_order(n));
        let mut seen = vec![false; n];
        for &r in &order {
            assert!(!std::mem::replace(&mut seen[r as usize], true));
        }
        // the first quarter of the slots holds about a quarter of any run of rows
        for run in [0..2000u32, 20_000..22_000, 48_000..50_000] {
            let inside = order[..n / 4].iter().filter(|r| run.contains(r)).count();
            assert!((400..600).contains(&inside), "{inside}");
        }
    }

    #[test]
    fn a_corpus_sorted_by_topic_is_still_proven_in_one_pass() {
        // 100 topics of 200 consecutive rows each, queries near the first 32 topics: each
        // query's top 50 are rows of its own topic, all in the first quarter of the corpus.
        // Scanned in the corpus's order, the schedule's first part (a quarter of the rows,
        // ~26 lower bounds) would hold all 50 and set the threshold above the 50th score, so
        // every query would be searched again; in the permuted order none is
        if !available() {
            return;
        }
        let (d, topics, per, k) = (32, 100, 200, 50);
        let nc = topics * per;
        let centres = data(topics, d, 21);
        let noise = data(nc, d, 22);
        let c: Vec<f32> = (0..nc * d)
            .map(|i| 4.0 * centres[(i / d / per) * d + i % d] + noise[i])
            .collect();
        let nq = 32;
        let qn = data(nq, d, 23);
        let q: Vec<f32> = (0..nq * d)
            .map(|i| 4.0 * centres[i] + 0.5 * qn[i])
            .collect();
        let (qr, cr) = (Rows::F32(&q), Rows::F32(&c));
        let (fast, again) = topk_int8_share(qr, cr, d, k, optimistic_share(d)).unwrap();
        assert_eq!(again, 0, "every query proven by the first pass");
        let (slow, _) = topk_int8_share(qr, cr, d, k, 1.0).unwrap();
        assert_eq!(fast, slow);
        assert_every_row_scored(&fast, &q, &c, d, k);
        for (i, ids) in fast.indices.chunks_exact(k).enumerate() {
            for &j in ids {
                assert_eq!(j as usize / per, i, "query {i}: its own topic");
            }
        }
    }

    #[test]
    fn large_k_on_a_permuted_corpus_equals_every_row_scored() {
        // 9,000 rows: permuted, with a schedule; k up to all of them (the schedule's counts,
        // the candidate lists and the re-scoring at k near n), ids and score bits
        if !available() {
            return;
        }
        let (nq, nc, d) = (8, 9_000, 48);
        let q = data(nq, d, 31);
        let c = data(nc, d, 32);
        for k in [1, 700, 2_500, nc] {
            assert_eq!(
                schedule(k, nc).len() > 1,
                k > 1,
                "k = {k}: a schedule from k = 2"
            );
            let (top, again) =
                topk_int8_share(Rows::F32(&q), Rows::F32(&c), d, k, optimistic_share(d)).unwrap();
            assert_eq!(again, 0, "k = {k}: every query proven by the first pass");
            assert_every_row_scored(&top, &q, &c, d, k);
        }
    }

    #[test]
    fn lower_bounds_keep_the_kth_largest() {
        if !available() {
            return;
        }
        for k in [1, 2, 15, 16, 17, 100, 257] {
            let mut heap = LowerBounds::new(k);
            let mut seen = Vec::new();
            for v in data(5000, 1, k as u64) {
                // few distinct values: ties among children
                let x = ((v + 0.5) * 300.0).floor();
                seen.push(x);
                if heap.len() < k {
                    heap.push(x);
                } else if x > heap.min() {
                    // SAFETY: the CPU has AVX-512 F (checked above)
                    unsafe { heap.replace_min(x) };
                }
                if seen.len() >= k {
                    let mut s = seen.clone();
                    s.sort_by(|a, b| b.total_cmp(a));
                    assert_eq!(
                        heap.min().to_bits(),
                        s[k - 1].to_bits(),
                        "k {k} after {}",
                        seen.len()
                    );
                }
            }
        }
    }

    #[test]
    fn queries_the_optimistic_pass_cannot_prove_are_searched_again() {
        // every row's rounding error points along the constant query, so its approximate
        // score is off by the whole error bound: the first half of the rows sit just below a
        // step of the grid (rounded up: over-estimated, their optimistic lower bounds above
        // their scores), the second half are the same rows one step lower in 50 of their 63
        // values and just above a step (rounded down: under-estimated), each scoring 0.012
        // more than its twin; the rows' scores spread less than that, so the true top 10 are
        // all in the second half. The first pass's threshold, raised by the over-estimated
        // rows, drops them: those queries cannot be proven, and the second pass finds the
        // exact answer; the random queries are proven by the first pass
        if !available() {
            return;
        }
        let (d, nc, k) = (64, 3000, 10);
        let steps: Vec<Vec<f32>> = data(nc / 2, d - 1, 11)
            .chunks_exact(d - 1)
            .map(|r| r.iter().map(|v| 80.0 + ((v + 0.5) * 2.0).floor()).collect())
            .collect();
        let mut c = Vec::with_capacity(nc * d);
        for m in &steps {
            c.push(1.0);
            c.extend(m.iter().map(|v| (v - 0.49) / 127.0));
        }
        for m in &steps {
            c.push(1.0);
            c.extend(
                m.iter()
                    .enumerate()
                    .map(|(i, v)| (v - f32::from(u8::from(i < 50)) + 0.49) / 127.0),
            );
        }
        let nq = 24;
        let mut q = vec![0.125; 8 * d];
        q.extend(data(nq - 8, d, 12));
        let (q_rows, c_rows) = (&q[..], &c[..]);
        let (q, c) = (Rows::F32(&q), Rows::F32(&c));
        let (fast, again) = topk_int8_share(q, c, d, k, optimistic_share(d)).unwrap();
        let (slow, none) = topk_int8_share(q, c, d, k, 1.0).unwrap();
        assert_eq!(none, 0);
        assert_eq!(
            again, 8,
            "the constant queries, and only they, are searched again"
        );
        assert_eq!(fast, slow);
        assert_every_row_scored(&fast, q_rows, c_rows, d, k);
    }
}
