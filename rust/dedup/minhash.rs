//! `MinHash` signatures: `num_perm` multiply-shift hashes `(a * x + b) >> 32` (a odd) of each
//! shingle hash, minimum per permutation, u32 values. Parameters come from a fixed seed, so
//! signatures are the same on every run and machine.

use rayon::prelude::*;

use super::shingle::Shingler;
use crate::error::{CoreError, CoreResult};
use crate::pool;
use crate::text::StrColumn;

#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// Inlined into each `target_feature` copy below so each gets its own vector code.
#[allow(clippy::inline_always)]
#[inline(always)]
fn fold(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    out.fill(u32::MAX);
    for &h in shingles {
        for ((o, &aj), &bj) in out.iter_mut().zip(a).zip(b) {
            let v = (aj.wrapping_mul(h).wrapping_add(bj) >> 32) as u32;
            *o = (*o).min(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn fold_avx512(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    fold(a, b, shingles, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fold_avx2(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    fold(a, b, shingles, out);
}

impl MinHasher {
    pub fn new(num_perm: usize, seed: u64) -> CoreResult<Self> {
        if num_perm == 0 || num_perm > 4096 {
            return Err(CoreError::InvalidParam(format!(
                "num_perm must be in 1..=4096, got {num_perm}"
            )));
        }
        let mut s = seed ^ 0x0005_EED0_F7E0_E4E6;
        let a = (0..num_perm).map(|_| splitmix64(&mut s) | 1).collect();
        let b = (0..num_perm).map(|_| splitmix64(&mut s)).collect();
        Ok(Self { a, b })
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// Signature of one shingle set into `out` (length `num_perm`); all `u32::MAX` when empty.
    pub fn signature_into(&self, shingles: &[u64], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the features were detected at run time.
                unsafe { fold_avx512(&self.a, &self.b, shingles, out) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the feature was detected at run time.
                unsafe { fold_avx2(&self.a, &self.b, shingles, out) };
                return;
            }
        }
        fold(&self.a, &self.b, shingles, out);
    }
}

/// Row-major `n x num_perm` signatures of a string column.
pub fn minhash_signatures(
    texts: &StrColumn<'_>,
    shingler: &Shingler,
    hasher: &MinHasher,
) -> CoreResult<Vec<u32>> {
    texts.validate("texts")?;
    if shingler.n == 0 {
        return Err(CoreError::InvalidParam(
            "shingle size must be at least 1".into(),
        ));
    }
    let p = hasher.num_perm();
    let n = texts.len();
    let mut out = vec![0u32; n * p];
    let rows_per_task = 256;
    let work = |(chunk, block): (usize, &mut [u32])| {
        let mut buf = String::new();
        let mut sh = Vec::new();
        for (j, sig) in block.chunks_mut(p).enumerate() {
            let i = chunk * rows_per_task + j;
            let text = texts
                .get(i)
                .map_or("", |b| std::str::from_utf8(b).unwrap_or(""));
            shingler.shingles_into(text, &mut buf, &mut sh);
            hasher.signature_into(&sh, sig);
        }
    };
    if n <= rows_per_task {
        out.chunks_mut(rows_per_task * p).enumerate().for_each(work);
    } else {
        pool::install(|| {
            out.par_chunks_mut(rows_per_task * p)
                .enumerate()
                .for_each(work);
        });
    }
    Ok(out)
}

/// Sorted shingle sets of a string column (for exact-Jaccard verification).
pub fn shingle_sets(texts: &StrColumn<'_>, shingler: &Shingler) -> CoreResult<Vec<Vec<u64>>> {
    texts.validate("texts")?;
    Ok(pool::install(|| {
        (0..texts.len())
            .into_par_iter()
            .map_init(String::new, |buf, i| {
                let text = texts
                    .get(i)
                    .map_or("", |b| std::str::from_utf8(b).unwrap_or(""));
                let mut sh = Vec::new();
                shingler.shingles_into(text, buf, &mut sh);
                sh
            })
            .collect()
    }))
}

/// Fraction of equal positions: the `MinHash` estimate of Jaccard similarity.
pub fn estimate_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{shingle::jaccard, Normalize, Unit};

    #[test]
    fn estimate_tracks_jaccard() {
        let sh = Shingler {
            unit: Unit::Word,
            n: 1,
            normalize: Normalize::default(),
        };
        let h = MinHasher::new(256, 1).unwrap();
        let a = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let b = (30..130)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (sa, sb) = (sh.shingles(&a), sh.shingles(&b));
        let (mut ga, mut gb) = (vec![0; 256], vec![0; 256]);
        h.signature_into(&sa, &mut ga);
        h.signature_into(&sb, &mut gb);
        let j = jaccard(&sa, &sb); // 70 / 130
        let est = estimate_jaccard(&ga, &gb);
        let sd = (j * (1.0 - j) / 256.0).sqrt();
        assert!((est - j).abs() < 4.0 * sd, "estimate {est} vs {j}");
    }

    #[test]
    fn simd_and_scalar_agree_and_seed_is_stable() {
        let h = MinHasher::new(128, 42).unwrap();
        let sh: Vec<u64> = (0..500u64)
            .map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut fast = vec![0; 128];
        h.signature_into(&sh, &mut fast);
        let mut slow = vec![0; 128];
        fold(&h.a, &h.b, &sh, &mut slow);
        assert_eq!(fast, slow);
        let h2 = MinHasher::new(128, 42).unwrap();
        assert_eq!(h.a, h2.a);
        assert!(MinHasher::new(0, 1).is_err());
    }
}
