//! Applying false-negative verdicts to examples: the three strategies of RLHN, by passage id.
//!
//! Lists are CSR (offsets + values). The outputs index the concatenation `[positives | negatives]`
//! of the input values, so any per-passage column (scores) follows with one gather.

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};
use crate::pool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Drop every example with a false negative.
    Remove,
    /// Drop the false negatives from the negatives.
    RemoveHn,
    /// Move the false negatives to the positives (after the original positives).
    Relabel,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct FixOut {
    /// Which input examples survive.
    pub keep: Vec<bool>,
    /// False negatives found in each input example.
    pub n_false_negatives: Vec<u32>,
    /// CSR of the surviving examples' new positives / negatives (pids).
    pub pos_offsets: Vec<i64>,
    pub pos_pids: Vec<u32>,
    pub neg_offsets: Vec<i64>,
    pub neg_pids: Vec<u32>,
    /// With `with_sources`: where each output pid came from, as an index into `[pos | neg]`
    /// (so per-passage columns such as scores can follow with one gather).
    pub pos_src: Vec<u64>,
    pub neg_src: Vec<u64>,
}

fn check_csr(offsets: &[i64], len: usize, what: &str, n: usize) -> CoreResult<()> {
    if offsets.len() != n + 1
        || offsets.first() != Some(&0)
        || offsets.last().map(|&o| o as usize) != Some(len)
    {
        return Err(CoreError::Shape(format!(
            "{what}: offsets must have n + 1 entries from 0 to {len}"
        )));
    }
    if offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(CoreError::Shape(format!(
            "{what}: offsets are not monotone"
        )));
    }
    Ok(())
}

/// The inputs of [`apply`], borrowed.
#[derive(Clone, Copy)]
pub struct FixInput<'a> {
    pub pos_offsets: &'a [i64],
    pub pos: &'a [u32],
    pub neg_offsets: &'a [i64],
    pub neg: &'a [u32],
    /// Each example's false-negative pids (any order, repeats allowed).
    pub fn_offsets: &'a [i64],
    pub fn_pids: &'a [u32],
    /// Examples left as they are.
    pub exempt: &'a [bool],
}

/// Examples per parallel task.
const CHUNK: usize = 16_384;

/// Apply `strategy`; with `max_fn = Some(k)`, remove-HN and relabel drop an example with more
/// than `k` false negatives (remove drops every example with one). Parallel over example chunks;
/// examples without false negatives are copied as slices.
pub fn apply(
    input: FixInput<'_>,
    strategy: Strategy,
    max_fn: Option<u32>,
    with_sources: bool,
) -> CoreResult<FixOut> {
    let n = input.exempt.len();
    check_csr(input.pos_offsets, input.pos.len(), "positives", n)?;
    check_csr(input.neg_offsets, input.neg.len(), "negatives", n)?;
    check_csr(input.fn_offsets, input.fn_pids.len(), "false negatives", n)?;
    let starts: Vec<usize> = (0..n).step_by(CHUNK).collect();
    let parts: Vec<FixOut> = pool::install(|| {
        starts
            .par_iter()
            .map(|&s| {
                apply_range(
                    &input,
                    s,
                    (s + CHUNK).min(n),
                    strategy,
                    max_fn,
                    with_sources,
                )
            })
            .collect()
    });
    let mut out = FixOut {
        pos_offsets: vec![0],
        neg_offsets: vec![0],
        ..FixOut::default()
    };
    for p in parts {
        let (pb, nb) = (out.pos_pids.len() as i64, out.neg_pids.len() as i64);
        out.keep.extend(p.keep);
        out.n_false_negatives.extend(p.n_false_negatives);
        out.pos_offsets
            .extend(p.pos_offsets[1..].iter().map(|o| o + pb));
        out.neg_offsets
            .extend(p.neg_offsets[1..].iter().map(|o| o + nb));
        out.pos_pids.extend(p.pos_pids);
        out.neg_pids.extend(p.neg_pids);
        out.pos_src.extend(p.pos_src);
        out.neg_src.extend(p.neg_src);
    }
    Ok(out)
}

fn apply_range(
    inp: &FixInput<'_>,
    from: usize,
    to: usize,
    strategy: Strategy,
    max_fn: Option<u32>,
    with_sources: bool,
) -> FixOut {
    let p_len = inp.pos.len() as u64;
    let mut out = FixOut {
        pos_offsets: vec![0],
        neg_offsets: vec![0],
        ..FixOut::default()
    };
    let mut flagged: Vec<u32> = Vec::new();
    for i in from..to {
        let (ps, pe) = (inp.pos_offsets[i] as usize, inp.pos_offsets[i + 1] as usize);
        let (ns, ne) = (inp.neg_offsets[i] as usize, inp.neg_offsets[i + 1] as usize);
        let (fs, fe) = (inp.fn_offsets[i] as usize, inp.fn_offsets[i + 1] as usize);
        let count = if fs == fe {
            0
        } else {
            flagged.clear();
            flagged.extend_from_slice(&inp.fn_pids[fs..fe]);
            flagged.sort_unstable();
            flagged.dedup();
            inp.neg[ns..ne]
                .iter()
                .filter(|p| flagged.binary_search(p).is_ok())
                .count() as u32
        };
        out.n_false_negatives.push(count);
        let unchanged = inp.exempt[i] || count == 0;
        let keep = unchanged
            || match strategy {
                Strategy::Remove => false,
                Strategy::RemoveHn | Strategy::Relabel => max_fn.is_none_or(|k| count <= k),
            };
        out.keep.push(keep);
        if !keep {
            continue;
        }
        out.pos_pids.extend_from_slice(&inp.pos[ps..pe]);
        if with_sources {
            out.pos_src.extend((ps as u64)..(pe as u64));
        }
        if unchanged {
            out.neg_pids.extend_from_slice(&inp.neg[ns..ne]);
            if with_sources {
                out.neg_src.extend((p_len + ns as u64)..(p_len + ne as u64));
            }
        } else {
            let is_fn = |p: &u32| flagged.binary_search(p).is_ok();
            if strategy == Strategy::Relabel {
                for (j, p) in inp.neg[ns..ne].iter().enumerate() {
                    if is_fn(p) && !out.pos_pids[out.pos_pids.len() - (pe - ps)..].contains(p) {
                        out.pos_pids.push(*p);
                        if with_sources {
                            out.pos_src.push(p_len + (ns + j) as u64);
                        }
                    }
                }
            }
            for (j, p) in inp.neg[ns..ne].iter().enumerate() {
                if !is_fn(p) {
                    out.neg_pids.push(*p);
                    if with_sources {
                        out.neg_src.push(p_len + (ns + j) as u64);
                    }
                }
            }
        }
        out.pos_offsets.push(out.pos_pids.len() as i64);
        out.neg_offsets.push(out.neg_pids.len() as i64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POS_OFF: [i64; 4] = [0, 1, 2, 3];
    const POS: [u32; 3] = [10, 20, 30];
    const NEG_OFF: [i64; 4] = [0, 3, 5, 6];
    const NEG: [u32; 6] = [1, 2, 3, 4, 5, 6];
    const FN_OFF: [i64; 4] = [0, 1, 4, 4];
    const FN: [u32; 4] = [2, 4, 5, 99];

    // example 0: pos [10], neg [1, 2, 3], FN {2}; example 1: pos [20], neg [4, 5], FN {4, 5, 99};
    // example 2: pos [30], neg [6], no FN
    fn run(s: Strategy, k: Option<u32>, exempt: &[bool]) -> FixOut {
        let input = FixInput {
            pos_offsets: &POS_OFF,
            pos: &POS,
            neg_offsets: &NEG_OFF,
            neg: &NEG,
            fn_offsets: &FN_OFF,
            fn_pids: &FN,
            exempt,
        };
        let o = apply(input, s, k, true).unwrap();
        assert_eq!(ids(&o.pos_src), o.pos_pids); // the pids and their sources agree
        assert_eq!(ids(&o.neg_src), o.neg_pids);
        o
    }

    fn ids(src: &[u64]) -> Vec<u32> {
        let all = [10, 20, 30, 1, 2, 3, 4, 5, 6];
        src.iter()
            .map(|&i| all[usize::try_from(i).unwrap()])
            .collect()
    }

    #[test]
    fn remove() {
        let o = run(Strategy::Remove, None, &[false; 3]);
        assert_eq!(o.keep, vec![false, false, true]);
        assert_eq!(o.n_false_negatives, vec![1, 2, 0]);
        assert_eq!(o.pos_pids, vec![30]);
        assert_eq!(o.neg_pids, vec![6]);
    }

    #[test]
    fn remove_hn_with_threshold() {
        let o = run(Strategy::RemoveHn, Some(1), &[false; 3]);
        assert_eq!(o.keep, vec![true, false, true]);
        assert_eq!(o.neg_pids, vec![1, 3, 6]);
        assert_eq!(o.neg_offsets, vec![0, 2, 3]);
    }

    #[test]
    fn relabel_and_exemption() {
        let o = run(Strategy::Relabel, None, &[false, true, false]);
        assert_eq!(o.keep, vec![true, true, true]);
        assert_eq!(o.pos_pids, vec![10, 2, 20, 30]);
        assert_eq!(o.pos_offsets, vec![0, 2, 3, 4]);
        assert_eq!(o.neg_pids, vec![1, 3, 4, 5, 6]); // the exempt example is untouched
    }

    #[test]
    fn bad_offsets() {
        let input = FixInput {
            pos_offsets: &[0, 1],
            pos: &[1],
            neg_offsets: &[0, 2],
            neg: &[1],
            fn_offsets: &[0, 0],
            fn_pids: &[],
            exempt: &[false],
        };
        assert!(apply(input, Strategy::Remove, None, false).is_err());
    }

    #[test]
    fn chunks_do_not_change_the_result() {
        let n = 3 * CHUNK + 5;
        let pos_offsets: Vec<i64> = (0..=n as i64).collect();
        let pos: Vec<u32> = (0..n as u32).collect();
        let neg_offsets: Vec<i64> = (0..=n as i64).map(|i| i * 3).collect();
        let neg: Vec<u32> = (0..3 * n as u32).map(|x| x + 1_000_000).collect();
        // every odd example has its middle negative flagged
        let fn_offsets: Vec<i64> = (0..=n as i64).map(|i| i / 2).collect();
        let fn_pids: Vec<u32> = (0..n as u32 / 2)
            .map(|e| 1_000_000 + 3 * (2 * e + 1) + 1)
            .collect();
        let exempt = vec![false; n];
        let input = FixInput {
            pos_offsets: &pos_offsets,
            pos: &pos,
            neg_offsets: &neg_offsets,
            neg: &neg,
            fn_offsets: &fn_offsets,
            fn_pids: &fn_pids,
            exempt: &exempt,
        };
        let o = apply(input, Strategy::Relabel, None, false).unwrap();
        assert_eq!(o.pos_pids.len(), n + n / 2);
        assert_eq!(o.neg_pids.len(), 3 * n - n / 2);
        assert_eq!(
            usize::try_from(*o.pos_offsets.last().unwrap()).unwrap(),
            o.pos_pids.len()
        );
        assert_eq!(o.pos_pids[1..3], [1, 1_000_000 + 4]);
    }
}
