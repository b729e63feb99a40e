//! Choosing hard negatives from each query's top-k candidates (sorted by score, best first), with
//! sentence-transformers' `mine_hard_negatives` conventions: every positive is masked (and, given
//! dedup's clusters, every near duplicate of a positive); candidates outside the score bounds or too
//! close to the positives (margins) are dropped; of the survivors, by score, the first `range_max`
//! are kept and the first `range_min` of those skipped; then the top ones, or a seeded random sample
//! (returned best first), are taken. With several
//! positives the reference score is the lowest positive score, so a negative is below every
//! positive. Margins are sign-safe: relative margin m keeps `s <= p - |p| * m`. Candidates between
//! that bound and `p` form the "ambiguous band" the judge should look at.

use crate::error::{CoreError, CoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    Top,
    /// A seeded sample per query; `first_query` is the global number of the call's first query,
    /// so a run split into blocks of queries draws what one call over all of them draws.
    Random {
        seed: u64,
        first_query: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectParams {
    pub num_negatives: usize,
    /// Rank window over the candidates that pass the filters: `range_min..range_max`.
    pub range_min: usize,
    pub range_max: usize,
    pub max_score: Option<f32>,
    pub min_score: Option<f32>,
    pub absolute_margin: Option<f32>,
    pub relative_margin: Option<f32>,
    pub sampling: Sampling,
}

#[derive(Debug, Default, PartialEq)]
pub struct Selected {
    /// CSR of the chosen negatives per query (corpus ids and scores), best first for `Top`.
    pub offsets: Vec<i64>,
    pub ids: Vec<u32>,
    pub scores: Vec<f32>,
    /// Candidates that passed every filter, per query (before sampling): fewer than
    /// `num_negatives` means the query is short of negatives; nothing is filled in.
    pub eligible: Vec<u32>,
    /// CSR of the ambiguous band: above the margin bound but not above the reference score.
    pub band_offsets: Vec<i64>,
    pub band_ids: Vec<u32>,
    pub band_scores: Vec<f32>,
    /// Candidates per query that the score bounds or the margins dropped (masked ones not
    /// counted), over all `k` candidates, past `range_max` too: what a refresh reports as
    /// removed by the margin.
    pub out_of_bounds: Vec<u32>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `cand_ids`/`cand_scores` are row-major `n x k` (ids -1 for empty slots); `pos_offsets`/`pos_ids`
/// /`pos_scores` the positives of each query and their scores; `cluster` (one per corpus row) maps
/// each passage to its dedup cluster root, so near duplicates of a positive are masked too.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)] // one pass per query, kept in one place
pub fn select_negatives(
    cand_ids: &[i64],
    cand_scores: &[f32],
    k: usize,
    pos_offsets: &[i64],
    pos_ids: &[u32],
    pos_scores: &[f32],
    cluster: Option<&[u32]>,
    params: &SelectParams,
) -> CoreResult<Selected> {
    if k == 0 || !cand_ids.len().is_multiple_of(k) || cand_scores.len() != cand_ids.len() {
        return Err(CoreError::Shape(
            "candidates must be two n x k arrays".into(),
        ));
    }
    let n = cand_ids.len() / k;
    if pos_offsets.len() != n + 1 || pos_scores.len() != pos_ids.len() {
        return Err(CoreError::Shape(format!(
            "positives: {} offsets for {n} queries",
            pos_offsets.len()
        )));
    }
    if params.range_min > params.range_max {
        return Err(CoreError::InvalidParam(
            "range_min must not exceed range_max".into(),
        ));
    }
    for m in [params.absolute_margin, params.relative_margin]
        .into_iter()
        .flatten()
    {
        if !m.is_finite() || m < 0.0 {
            return Err(CoreError::InvalidParam(format!(
                "margins must be finite and >= 0, got {m}"
            )));
        }
    }
    let root = |id: u32| {
        cluster
            .and_then(|c| c.get(id as usize).copied())
            .unwrap_or(id)
    };
    let mut out = Selected {
        offsets: vec![0],
        band_offsets: vec![0],
        ..Selected::default()
    };
    let mut pool: Vec<(u32, f32)> = Vec::new();
    let mut masked: Vec<u32> = Vec::new();
    for q in 0..n {
        let (ps, pe) = (pos_offsets[q] as usize, pos_offsets[q + 1] as usize);
        masked.clear();
        masked.extend(pos_ids[ps..pe].iter().map(|&id| root(id)));
        masked.sort_unstable();
        let reference = pos_scores[ps..pe]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let bound = {
            let mut b = f32::INFINITY;
            if reference.is_finite() {
                if let Some(m) = params.absolute_margin {
                    b = b.min(reference - m);
                }
                if let Some(m) = params.relative_margin {
                    b = b.min(reference - reference.abs() * m);
                }
            }
            b
        };
        pool.clear();
        let (mut rank, mut dropped) = (0usize, 0u32);
        for j in 0..k {
            let id = cand_ids[q * k + j];
            if id < 0 {
                break;
            }
            let id = id as u32;
            if masked.binary_search(&root(id)).is_ok() {
                continue;
            }
            let s = cand_scores[q * k + j];
            if params.max_score.is_some_and(|m| s > m) || params.min_score.is_some_and(|m| s < m) {
                dropped += 1;
                continue;
            }
            if s > bound {
                dropped += 1;
                if s <= reference && rank < params.range_max {
                    out.band_ids.push(id);
                    out.band_scores.push(s);
                }
                continue;
            }
            // past the window only the count goes on
            if rank < params.range_max {
                if rank >= params.range_min {
                    pool.push((id, s));
                }
                rank += 1;
            }
        }
        out.out_of_bounds.push(dropped);
        out.eligible.push(pool.len() as u32);
        if let Sampling::Random { seed, first_query } = params.sampling {
            // seeded partial Fisher-Yates per query: the same seed gives the same choice
            let global = first_query.wrapping_add(q as u64);
            let mut st = seed ^ global.wrapping_mul(0xA076_1D64_78BD_642F);
            let take = params.num_negatives.min(pool.len());
            for i in 0..take {
                let j = i + (splitmix(&mut st) % (pool.len() - i) as u64) as usize;
                pool.swap(i, j);
            }
            pool.truncate(take);
            pool.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        } else {
            pool.truncate(params.num_negatives);
        }
        for (id, s) in &pool {
            out.ids.push(*id);
            out.scores.push(*s);
        }
        out.offsets.push(out.ids.len() as i64);
        out.band_offsets.push(out.band_ids.len() as i64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SelectParams {
        SelectParams {
            num_negatives: 2,
            range_min: 0,
            range_max: 100,
            max_score: None,
            min_score: None,
            absolute_margin: None,
            relative_margin: None,
            sampling: Sampling::Top,
        }
    }

    // one query, candidates 5 (pos), 7, 8, 9, 3 with scores .9 .8 .7 .6 .5; positive 5 at .9
    const IDS: [i64; 5] = [5, 7, 8, 9, 3];
    const SC: [f32; 5] = [0.9, 0.8, 0.7, 0.6, 0.5];

    #[test]
    fn masks_positives_and_takes_top() {
        let r = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &params()).unwrap();
        assert_eq!(r.ids, vec![7, 8]);
        assert_eq!(r.eligible, vec![4]);
    }

    #[test]
    fn counts_what_bounds_and_margins_drop_over_all_candidates() {
        // positive 5 masked (not counted); relative margin 0.15 of 0.9 drops 7 (0.8), min_score
        // 0.55 drops 3 (0.5), which lies past range_max = 1: the count goes on to the end
        let mut p = params();
        p.relative_margin = Some(0.15);
        p.min_score = Some(0.55);
        p.range_max = 1;
        let r = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!((r.ids.clone(), r.band_ids.clone()), (vec![8], vec![7]));
        assert_eq!(r.out_of_bounds, vec![2]);
        assert_eq!(
            select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &params())
                .unwrap()
                .out_of_bounds,
            vec![0]
        );
    }

    #[test]
    fn rank_window_margin_band_and_duplicates() {
        let mut p = params();
        p.range_min = 1;
        let r = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!(r.ids, vec![8, 9]);
        // the window counts the candidates that pass the filters: 7 is over max_score, then skip 8
        p.max_score = Some(0.75);
        let r = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!(r.ids, vec![9, 3]);
        // relative margin 0.15 of 0.9: keep s <= 0.765; 0.8 goes to the band
        let mut p = params();
        p.relative_margin = Some(0.15);
        let r = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!((r.ids.clone(), r.band_ids.clone()), (vec![8, 9], vec![7]));
        // sign-safe: a negative reference score still moves the bound down
        let r =
            select_negatives(&[1, 2], &[-0.5, -0.7], 2, &[0, 1], &[9], &[-0.6], None, &p).unwrap();
        assert_eq!(r.ids, vec![2]);
        // passage 8 is a near duplicate of the positive (same cluster): masked too
        let mut cluster: Vec<u32> = (0..10).collect();
        cluster[8] = 5;
        let r = select_negatives(
            &IDS,
            &SC,
            5,
            &[0, 1],
            &[5],
            &[0.9],
            Some(&cluster),
            &params(),
        )
        .unwrap();
        assert_eq!(r.ids, vec![7, 9]);
    }

    #[test]
    fn random_is_seeded_and_short_queries_are_reported() {
        let mut p = params();
        p.sampling = Sampling::Random {
            seed: 3,
            first_query: 0,
        };
        let a = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        let b = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!(a, b);
        p.num_negatives = 10;
        let c = select_negatives(&IDS, &SC, 5, &[0, 1], &[5], &[0.9], None, &p).unwrap();
        assert_eq!((c.eligible[0], c.ids.len()), (4, 4)); // never filled up
    }

    #[test]
    fn blocks_of_queries_draw_what_one_call_draws() {
        // three queries over the same candidates (positive 5 each): one call vs one call each
        let ids: Vec<i64> = IDS.repeat(3);
        let sc: Vec<f32> = SC.repeat(3);
        let mut p = params();
        p.num_negatives = 2;
        let all = |first_query, n: usize, ids: &[i64], sc: &[f32]| {
            let mut p = p;
            p.sampling = Sampling::Random {
                seed: 11,
                first_query,
            };
            let po: Vec<i64> = (0..=n as i64).collect();
            select_negatives(ids, sc, 5, &po, &vec![5; n], &vec![0.9; n], None, &p).unwrap()
        };
        let whole = all(0, 3, &ids, &sc);
        let mut parts = Vec::new();
        for q in 0..3 {
            parts.extend(all(q as u64, 1, &ids[q * 5..q * 5 + 5], &sc[q * 5..q * 5 + 5]).ids);
        }
        assert_eq!(whole.ids, parts);
        // without the offset every block would draw as query 0 does
        let same_offset: Vec<u32> = (0..3)
            .flat_map(|q| all(0, 1, &ids[q * 5..q * 5 + 5], &sc[q * 5..q * 5 + 5]).ids)
            .collect();
        assert!(same_offset.chunks(2).all(|c| c == &same_offset[..2]));
        assert_ne!(whole.ids, same_offset);
    }
}
