//! Packing training examples into batches in which no query and no passage appears twice: with
//! in-batch negatives, a passage that is one example's positive and shows up again in the batch
//! is scored as a negative of that very example (a false in-batch negative), and a repeated
//! query makes its positive a negative of its twin.

use rustc_hash::FxHashSet;

use crate::error::{CoreError, CoreResult};

/// Batches as CSR over example indices: `offsets` (batches + 1) and `examples`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batches {
    pub offsets: Vec<i64>,
    pub examples: Vec<u32>,
    /// Batches emitted with fewer than `batch_size` examples (the tail, or when conflicts left
    /// nothing that fits).
    pub partial: usize,
}

struct Open {
    members: Vec<u32>,
    queries: FxHashSet<u32>,
    passages: FxHashSet<u32>,
}

impl Open {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            queries: FxHashSet::default(),
            passages: FxHashSet::default(),
        }
    }

    fn fits(&self, q: u32, ps: &[u32]) -> bool {
        !self.queries.contains(&q) && ps.iter().all(|p| !self.passages.contains(p))
    }

    fn add(&mut self, e: u32, q: u32, ps: &[u32]) {
        self.members.push(e);
        self.queries.insert(q);
        self.passages.extend(ps.iter().copied());
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Examples in a seeded random order, each put into the first of up to `max_open` open batches
/// it does not conflict with (same query, or any shared passage); a batch is emitted when it
/// holds `batch_size` examples. The rest are emitted at the end, fullest first. Every example is
/// in exactly one batch. `passage_offsets`/`passage_ids` are each example's passages (CSR).
#[allow(clippy::many_single_char_names)]
pub fn pack_batches(
    queries: &[u32],
    passage_offsets: &[i64],
    passage_ids: &[u32],
    batch_size: usize,
    seed: u64,
    max_open: usize,
) -> CoreResult<Batches> {
    let n = queries.len();
    if passage_offsets.len() != n + 1
        || passage_offsets.last().copied() != Some(passage_ids.len() as i64)
    {
        return Err(CoreError::Shape(format!(
            "passage offsets must have {} entries ending at {}",
            n + 1,
            passage_ids.len()
        )));
    }
    if batch_size == 0 || max_open == 0 {
        return Err(CoreError::InvalidParam(
            "batch_size and max_open must be at least 1".into(),
        ));
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state = seed;
    for i in (1..n).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut out = Batches {
        offsets: vec![0],
        ..Batches::default()
    };
    let emit = |members: &[u32], out: &mut Batches| {
        out.examples.extend_from_slice(members);
        out.offsets.push(out.examples.len() as i64);
        if members.len() < batch_size {
            out.partial += 1;
        }
    };
    let mut open: Vec<Open> = Vec::new();
    for &e in &order {
        let ei = e as usize;
        let (a, b) = (
            passage_offsets[ei] as usize,
            passage_offsets[ei + 1] as usize,
        );
        let ps = &passage_ids[a..b];
        let q = queries[ei];
        let slot = if let Some(i) = open.iter().position(|o| o.fits(q, ps)) {
            i
        } else {
            if open.len() == max_open {
                // nothing fits and no room: give up on the fullest batch, start a new one
                let full = (0..open.len())
                    .max_by_key(|&i| (open[i].members.len(), std::cmp::Reverse(i)))
                    .unwrap_or(0);
                let o = open.remove(full);
                emit(&o.members, &mut out);
            }
            open.push(Open::new());
            open.len() - 1
        };
        open[slot].add(e, q, ps);
        if open[slot].members.len() == batch_size {
            let o = open.remove(slot);
            emit(&o.members, &mut out);
        }
    }
    open.sort_by_key(|o| std::cmp::Reverse(o.members.len()));
    for o in &open {
        emit(&o.members, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_repeats_and_every_example_once() {
        // 200 examples over 30 queries, passages drawn from a small pool: many conflicts
        let n = 200usize;
        let queries: Vec<u32> = (0..n as u32).map(|i| i % 30).collect();
        let mut offsets = vec![0i64];
        let mut ids = Vec::new();
        let mut s = 7u64;
        for _ in 0..n {
            let start = ids.len();
            while ids.len() < start + 4 {
                let p = (splitmix(&mut s) % 300) as u32;
                if !ids[start..].contains(&p) {
                    ids.push(p);
                }
            }
            offsets.push(ids.len() as i64);
        }
        let b = pack_batches(&queries, &offsets, &ids, 8, 1, 16).unwrap();
        let mut seen = b.examples.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
        for w in b.offsets.windows(2) {
            let members = &b.examples[w[0] as usize..w[1] as usize];
            assert!(members.len() <= 8);
            let mut qs = FxHashSet::default();
            let mut ps = FxHashSet::default();
            for &e in members {
                assert!(qs.insert(queries[e as usize]));
                for &p in &ids[offsets[e as usize] as usize..offsets[e as usize + 1] as usize] {
                    assert!(ps.insert(p), "passage {p} twice in a batch");
                }
            }
        }
        assert!(
            b.offsets.len() - 1 - b.partial >= 20,
            "most batches are full"
        );
        assert_eq!(b, pack_batches(&queries, &offsets, &ids, 8, 1, 16).unwrap());
        assert_ne!(b, pack_batches(&queries, &offsets, &ids, 8, 2, 16).unwrap());
    }

    #[test]
    fn bad_input() {
        assert!(pack_batches(&[0, 1], &[0, 1], &[5], 2, 0, 4).is_err());
        assert!(pack_batches(&[0], &[0, 1], &[5], 0, 0, 4).is_err());
    }
}
