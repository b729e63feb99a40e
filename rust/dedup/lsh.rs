//! LSH banding over `MinHash` signatures, candidate verification, union-find clusters.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::minhash::estimate_jaccard;
use super::shingle::jaccard;
use super::unionfind::UnionFind;
use crate::error::{CoreError, CoreResult};
use crate::pool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LshParams {
    pub bands: usize,
    pub rows: usize,
}

/// How candidate pairs (same bucket in some band) are confirmed before they are joined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verify {
    /// Every candidate pair is a duplicate (the plain LSH S-curve).
    None,
    /// The `MinHash` estimate over the whole signature must reach the threshold.
    MinHash(f64),
    /// The exact Jaccard of the shingle sets must reach the threshold.
    Jaccard(f64),
}

#[derive(Debug, Clone, Default)]
pub struct LshResult {
    /// Cluster root (smallest member id) of every document.
    pub roots: Vec<u32>,
    /// Candidate pairs looked at (a pair colliding in several bands counts once per band).
    pub candidate_pairs: u64,
    /// The joins made: (smaller id, larger id, similarity: estimate or exact per `Verify`).
    pub edges: Vec<(u32, u32, f32)>,
}

/// Members of one bucket compared with each other at most this many at a time when verifying.
const MAX_VERIFY_GROUP: usize = 512;

/// Cluster `n` documents from row-major signatures `sigs` (`n x num_perm`).
/// `sets` (shingle sets) is needed for [`Verify::Jaccard`].
pub fn lsh_clusters(
    sigs: &[u32],
    num_perm: usize,
    params: LshParams,
    verify: Verify,
    sets: Option<&[Vec<u64>]>,
) -> CoreResult<LshResult> {
    if num_perm == 0 || !sigs.len().is_multiple_of(num_perm) {
        return Err(CoreError::Shape(format!(
            "signatures of length {} are not a multiple of num_perm {num_perm}",
            sigs.len()
        )));
    }
    if params.bands == 0 || params.rows == 0 || params.bands * params.rows > num_perm {
        return Err(CoreError::InvalidParam(format!(
            "bands x rows = {} x {} must be positive and at most num_perm = {num_perm}",
            params.bands, params.rows
        )));
    }
    let n = sigs.len() / num_perm;
    if n > u32::MAX as usize {
        return Err(CoreError::InvalidParam("more than 2^32 documents".into()));
    }
    if let Verify::Jaccard(_) = verify {
        if sets.is_none_or(|s| s.len() != n) {
            return Err(CoreError::InvalidParam(
                "exact-Jaccard verification needs one shingle set per document".into(),
            ));
        }
    }
    let sig = |i: u32| &sigs[i as usize * num_perm..(i as usize + 1) * num_perm];
    let similar = |i: u32, j: u32| -> Option<f32> {
        match verify {
            Verify::None => Some(1.0),
            Verify::MinHash(t) => {
                let s = estimate_jaccard(sig(i), sig(j));
                (s >= t).then_some(s as f32)
            }
            Verify::Jaccard(t) => {
                let s = sets.map_or(0.0, |s| jaccard(&s[i as usize], &s[j as usize]));
                (s >= t).then_some(s as f32)
            }
        }
    };
    let mut uf = UnionFind::new(n);
    let mut out = LshResult::default();
    let mut keyed: Vec<(u64, u32)> = vec![(0, 0); n];
    for band in 0..params.bands {
        let lo = band * params.rows;
        pool::install(|| {
            keyed.par_iter_mut().enumerate().for_each(|(i, slot)| {
                let s = &sigs[i * num_perm + lo..i * num_perm + lo + params.rows];
                let bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
                *slot = (xxh3_64_with_seed(&bytes, band as u64), i as u32);
            });
            keyed.par_sort_unstable();
        });
        let mut start = 0;
        while start < n {
            let key = keyed[start].0;
            let mut end = start + 1;
            while end < n && keyed[end].0 == key {
                end += 1;
            }
            let group = &keyed[start..end];
            let m = group.len() as u64;
            out.candidate_pairs += m * (m - 1) / 2;
            if group.len() > 1 {
                join_group(group, &mut uf, &mut out.edges, verify, &similar);
            }
            start = end;
        }
    }
    out.roots = uf.roots();
    Ok(out)
}

fn join_group(
    group: &[(u64, u32)],
    uf: &mut UnionFind,
    edges: &mut Vec<(u32, u32, f32)>,
    verify: Verify,
    similar: &impl Fn(u32, u32) -> Option<f32>,
) {
    if verify == Verify::None {
        let first = group[0].1;
        for &(_, id) in &group[1..] {
            if uf.union(first, id) {
                edges.push((first.min(id), first.max(id), 1.0));
            }
        }
        return;
    }
    for (k, &(_, i)) in group.iter().enumerate().skip(1) {
        let from = k.saturating_sub(MAX_VERIFY_GROUP);
        for &(_, j) in &group[from..k] {
            if uf.find(i) == uf.find(j) {
                continue;
            }
            if let Some(s) = similar(i, j) {
                uf.union(i, j);
                edges.push((i.min(j), i.max(j), s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{minhash_signatures, MinHasher, Normalize, Shingler, Unit};
    use crate::formats::StrBuf;
    use crate::text::StrColumn;

    fn column(texts: &[&str]) -> StrBuf {
        let mut b = StrBuf::default();
        for t in texts {
            b.push(t);
        }
        b
    }

    #[test]
    fn near_copies_cluster_with_lowest_id_root() {
        let base = "the quick brown fox jumps over the lazy dog near the quiet river bank today";
        let copy = "the quick brown fox jumps over the lazy dog near the quiet river bank tonight";
        let other = "an entirely different sentence about retrieval models and hard negatives";
        let buf = column(&[other, base, copy, base]);
        let col = StrColumn {
            offsets: &buf.offsets,
            data: &buf.data,
            nulls: None,
        };
        let sh = Shingler {
            unit: Unit::Word,
            n: 3,
            normalize: Normalize::default(),
        };
        let h = MinHasher::new(128, 1).unwrap();
        let sigs = minhash_signatures(&col, &sh, &h).unwrap();
        let r = lsh_clusters(
            &sigs,
            128,
            LshParams { bands: 32, rows: 4 },
            Verify::MinHash(0.5),
            None,
        )
        .unwrap();
        assert_eq!(r.roots, vec![0, 1, 1, 1]);
        assert!(r.edges.iter().all(|e| e.0 < e.1));
        let strict = lsh_clusters(
            &sigs,
            128,
            LshParams { bands: 32, rows: 4 },
            Verify::MinHash(0.99),
            None,
        )
        .unwrap();
        assert_eq!(strict.roots, vec![0, 1, 2, 1]);
    }

    #[test]
    fn bad_params() {
        let sigs = vec![0u32; 256];
        assert!(lsh_clusters(
            &sigs,
            128,
            LshParams { bands: 20, rows: 8 },
            Verify::None,
            None
        )
        .is_err());
        assert!(lsh_clusters(
            &sigs,
            100,
            LshParams { bands: 2, rows: 2 },
            Verify::None,
            None
        )
        .is_err());
        assert!(lsh_clusters(
            &sigs,
            128,
            LshParams { bands: 2, rows: 2 },
            Verify::Jaccard(0.5),
            None
        )
        .is_err());
    }
}
