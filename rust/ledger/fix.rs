//! Applying false-negative verdicts to examples: the three strategies of RLHN, by passage id.
//!
//! Lists are CSR (offsets + values). The outputs index the concatenation `[positives | negatives]`
//! of the input values, so any per-passage column (scores) follows with one gather.

use crate::error::{CoreError, CoreResult};

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
    /// CSR of the surviving examples' new positives / negatives, as indices into `[pos | neg]`.
    pub pos_offsets: Vec<i64>,
    pub pos_src: Vec<u64>,
    pub neg_offsets: Vec<i64>,
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

/// Apply `strategy`. `fn_offsets`/`fn_pids` list each example's false-negative pids (any order);
/// `exempt` examples are left as they are; with `max_fn = Some(k)`, remove-HN and relabel drop an
/// example with more than `k` false negatives (remove drops every example with one).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    pos_offsets: &[i64],
    pos: &[u32],
    neg_offsets: &[i64],
    neg: &[u32],
    fn_offsets: &[i64],
    fn_pids: &[u32],
    exempt: &[bool],
    strategy: Strategy,
    max_fn: Option<u32>,
) -> CoreResult<FixOut> {
    let n = exempt.len();
    check_csr(pos_offsets, pos.len(), "positives", n)?;
    check_csr(neg_offsets, neg.len(), "negatives", n)?;
    check_csr(fn_offsets, fn_pids.len(), "false negatives", n)?;
    let p_len = pos.len() as u64;
    let mut out = FixOut {
        keep: Vec::with_capacity(n),
        n_false_negatives: Vec::with_capacity(n),
        pos_offsets: vec![0],
        neg_offsets: vec![0],
        ..FixOut::default()
    };
    let mut flagged: Vec<u32> = Vec::new();
    for i in 0..n {
        let (ps, pe) = (pos_offsets[i] as usize, pos_offsets[i + 1] as usize);
        let (ns, ne) = (neg_offsets[i] as usize, neg_offsets[i + 1] as usize);
        flagged.clear();
        flagged.extend_from_slice(&fn_pids[fn_offsets[i] as usize..fn_offsets[i + 1] as usize]);
        flagged.sort_unstable();
        flagged.dedup();
        let is_fn = |p: u32| flagged.binary_search(&p).is_ok();
        let count = neg[ns..ne].iter().filter(|&&p| is_fn(p)).count() as u32;
        out.n_false_negatives.push(count);
        let unchanged = exempt[i] || count == 0;
        let keep = if unchanged {
            true
        } else {
            match strategy {
                Strategy::Remove => false,
                Strategy::RemoveHn | Strategy::Relabel => max_fn.is_none_or(|k| count <= k),
            }
        };
        out.keep.push(keep);
        if !keep {
            continue;
        }
        out.pos_src.extend((ps as u64)..(pe as u64));
        if !unchanged && strategy == Strategy::Relabel {
            let mut seen: Vec<u32> = pos[ps..pe].to_vec();
            for (j, &p) in neg[ns..ne].iter().enumerate() {
                if is_fn(p) && !seen.contains(&p) {
                    seen.push(p);
                    out.pos_src.push(p_len + (ns + j) as u64);
                }
            }
        }
        for (j, &p) in neg[ns..ne].iter().enumerate() {
            if unchanged || !is_fn(p) {
                out.neg_src.push(p_len + (ns + j) as u64);
            }
        }
        out.pos_offsets.push(out.pos_src.len() as i64);
        out.neg_offsets.push(out.neg_src.len() as i64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // example 0: pos [10], neg [1, 2, 3], FN {2}; example 1: pos [20], neg [4, 5], FN {4, 5, 99};
    // example 2: pos [30], neg [6], no FN
    fn run(s: Strategy, k: Option<u32>, exempt: &[bool]) -> FixOut {
        apply(
            &[0, 1, 2, 3],
            &[10, 20, 30],
            &[0, 3, 5, 6],
            &[1, 2, 3, 4, 5, 6],
            &[0, 1, 4, 4],
            &[2, 4, 5, 99],
            exempt,
            s,
            k,
        )
        .unwrap()
    }

    fn ids(src: &[u64]) -> Vec<u32> {
        let all = [10, 20, 30, 1, 2, 3, 4, 5, 6];
        src.iter().map(|&i| all[i as usize]).collect()
    }

    #[test]
    fn remove() {
        let o = run(Strategy::Remove, None, &[false; 3]);
        assert_eq!(o.keep, vec![false, false, true]);
        assert_eq!(o.n_false_negatives, vec![1, 2, 0]);
        assert_eq!(ids(&o.pos_src), vec![30]);
        assert_eq!(ids(&o.neg_src), vec![6]);
    }

    #[test]
    fn remove_hn_with_threshold() {
        let o = run(Strategy::RemoveHn, Some(1), &[false; 3]);
        assert_eq!(o.keep, vec![true, false, true]);
        assert_eq!(ids(&o.neg_src), vec![1, 3, 6]);
        assert_eq!(o.neg_offsets, vec![0, 2, 3]);
    }

    #[test]
    fn relabel_and_exemption() {
        let o = run(Strategy::Relabel, None, &[false, true, false]);
        assert_eq!(o.keep, vec![true, true, true]);
        assert_eq!(ids(&o.pos_src), vec![10, 2, 20, 30]);
        assert_eq!(o.pos_offsets, vec![0, 2, 3, 4]);
        assert_eq!(ids(&o.neg_src), vec![1, 3, 4, 5, 6]); // the exempt example is untouched
    }

    #[test]
    fn bad_offsets() {
        assert!(apply(
            &[0, 1],
            &[1],
            &[0, 2],
            &[1],
            &[0, 0],
            &[],
            &[false],
            Strategy::Remove,
            None
        )
        .is_err());
    }
}
