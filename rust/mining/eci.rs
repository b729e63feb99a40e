//! Effective Contrastive Information (ECI) of a hard-negative set: a training-free score of how
//! much contrastive signal an example's negatives carry and how safe they are, from the
//! embeddings of a frozen encoder (after Sinha, Seetharaman and Bansal, arXiv 2603.20990 v1;
//! their formulas are only summarised publicly, so these are trueneg's, term by term):
//!
//! For example `e` with query `q`, positives `P`, negatives `N` (embeddings L2-normalised by the
//! caller, so a dot product is a cosine):
//!
//! - `s_p = q.p` for each positive `p` (NV-Retriever's positive-aware reference);
//! - `b`, the in-batch baseline: the mean of `q.p'` over the first positive of the next
//!   `in_batch` examples (cyclically) that have another query: what an easy, in-batch negative
//!   scores;
//! - per negative `n` with `s = q.n`, averaged over the positives (training contrasts a negative
//!   with each of them): hardness `h = clip((s - b) / (s_p - b), 0, 1)` (0 when `s_p <= b`): 0 is
//!   no harder than an in-batch negative, 1 as close as the positive; safety
//!   `σ = clip((s_p - s) / (δ |s_p|), 0, 1)`: 1 below `(1 - δ) s_p` (NV-Retriever's TopK-PercPos
//!   bound, δ = 0.05), falling to 0 at the positive's score and above (a likely false negative);
//! - signal magnitude `S = mean h`, safety `Σ = mean σ`, discriminative efficiency
//!   `DE = 2 S Σ / (S + Σ)` (their harmonic mean; 0 when both are 0);
//! - information capacity `IC = ln(1 + |N|)` (the `InfoNCE` bound on mutual information with
//!   `|N|` negatives, van den Oord et al. 2018);
//! - `ECI = IC x DE`.
//!
//! An example without positives or negatives scores 0 on every term.

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};

/// Per-example terms (`positive_score`: the mean over the positives) and per-negative values
/// (negatives in the order of `neg_offsets`).
#[derive(Debug, Clone, Default)]
pub struct EciTerms {
    pub information_capacity: Vec<f32>,
    pub signal: Vec<f32>,
    pub safety: Vec<f32>,
    pub efficiency: Vec<f32>,
    pub eci: Vec<f32>,
    pub positive_score: Vec<f32>,
    pub baseline: Vec<f32>,
    pub negative_score: Vec<f32>,
    pub hardness: Vec<f32>,
    pub negative_safety: Vec<f32>,
}

/// The embeddings and lists ECI reads.
pub struct EciInput<'a> {
    /// `n_queries x dim`, row-major, L2-normalised
    pub queries: &'a [f32],
    /// `n_passages x dim`, row-major, L2-normalised
    pub passages: &'a [f32],
    pub dim: usize,
    /// query row of each example
    pub qids: &'a [u32],
    pub pos_offsets: &'a [i64],
    pub pos: &'a [u32],
    pub neg_offsets: &'a [i64],
    pub neg: &'a [u32],
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn check_offsets(off: &[i64], n: usize, len: usize, what: &str) -> CoreResult<()> {
    if off.len() != n + 1 || off[0] != 0 || usize::try_from(off[n]).ok() != Some(len) {
        return Err(CoreError::Shape(format!(
            "{what} offsets must have {} entries from 0 to {len}",
            n + 1
        )));
    }
    if off.windows(2).any(|w| w[1] < w[0]) {
        return Err(CoreError::Shape(format!(
            "{what} offsets must not decrease"
        )));
    }
    Ok(())
}

struct Example {
    ic: f32,
    signal: f32,
    safety: f32,
    de: f32,
    sp: f32,
    baseline: f32,
    scores: Vec<f32>,
    hard: Vec<f32>,
    safe: Vec<f32>,
}

impl EciInput<'_> {
    fn query(&self, row: u32) -> &[f32] {
        &self.queries[row as usize * self.dim..(row as usize + 1) * self.dim]
    }

    fn passage(&self, row: u32) -> &[f32] {
        &self.passages[row as usize * self.dim..(row as usize + 1) * self.dim]
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn positives(&self, example: usize) -> &[u32] {
        &self.pos[self.pos_offsets[example] as usize..self.pos_offsets[example + 1] as usize]
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn negatives(&self, example: usize) -> &[u32] {
        &self.neg[self.neg_offsets[example] as usize..self.neg_offsets[example + 1] as usize]
    }

    /// Mean score of the query against the first positive of the next `in_batch` examples of
    /// other queries (cyclically).
    #[allow(clippy::cast_precision_loss)]
    fn in_batch_baseline(&self, example: usize, in_batch: usize) -> f32 {
        let count = self.qids.len();
        let query = self.query(self.qids[example]);
        let (mut sum, mut used) = (0f32, 0usize);
        for step in 1..count {
            if used == in_batch {
                break;
            }
            let other = (example + step) % count;
            let pos = self.positives(other);
            if self.qids[other] == self.qids[example] || pos.is_empty() {
                continue;
            }
            sum += dot(query, self.passage(pos[0]));
            used += 1;
        }
        if used == 0 {
            0.0
        } else {
            sum / used as f32
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn score_example(&self, example: usize, delta: f32, in_batch: usize) -> Example {
        let query = self.query(self.qids[example]);
        let pos = self.positives(example);
        let neg = self.negatives(example);
        let scores: Vec<f32> = neg.iter().map(|&p| dot(query, self.passage(p))).collect();
        if pos.is_empty() || neg.is_empty() {
            let zeros = vec![0.0; neg.len()];
            return Example {
                ic: 0.0,
                signal: 0.0,
                safety: 0.0,
                de: 0.0,
                sp: f32::NAN,
                baseline: f32::NAN,
                scores,
                hard: zeros.clone(),
                safe: zeros,
            };
        }
        let pos_scores: Vec<f32> = pos.iter().map(|&p| dot(query, self.passage(p))).collect();
        let baseline = self.in_batch_baseline(example, in_batch);
        // each negative is contrasted with each positive in training: its hardness and safety
        // are averaged over the positives
        let mut hard = vec![0f32; neg.len()];
        let mut safe = vec![0f32; neg.len()];
        for &sp in &pos_scores {
            let band = delta * sp.abs();
            for (j, &s) in scores.iter().enumerate() {
                hard[j] += if sp > baseline {
                    ((s - baseline) / (sp - baseline)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                safe[j] += if band > 0.0 {
                    ((sp - s) / band).clamp(0.0, 1.0)
                } else if s < sp {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let n_pos = pos_scores.len() as f32;
        for v in hard.iter_mut().chain(safe.iter_mut()) {
            *v /= n_pos;
        }
        let sp = pos_scores.iter().sum::<f32>() / n_pos;
        let count = neg.len() as f32;
        let signal = hard.iter().sum::<f32>() / count;
        let safety = safe.iter().sum::<f32>() / count;
        let de = if signal + safety > 0.0 {
            2.0 * signal * safety / (signal + safety)
        } else {
            0.0
        };
        Example {
            ic: count.ln_1p(),
            signal,
            safety,
            de,
            sp,
            baseline,
            scores,
            hard,
            safe,
        }
    }
}

/// ECI of every example; `delta` is the safety margin (share of the positive's score),
/// `in_batch` the number of other examples whose positives make the baseline.
pub fn effective_contrastive_information(
    input: &EciInput<'_>,
    delta: f32,
    in_batch: usize,
) -> CoreResult<EciTerms> {
    let dim = input.dim;
    if dim == 0
        || !input.queries.len().is_multiple_of(dim)
        || !input.passages.len().is_multiple_of(dim)
    {
        return Err(CoreError::Shape(
            "embeddings must be row-major n x dim".into(),
        ));
    }
    if !(delta.is_finite() && delta > 0.0) {
        return Err(CoreError::InvalidParam(format!(
            "delta must be > 0, got {delta}"
        )));
    }
    let (n_queries, n_passages) = (input.queries.len() / dim, input.passages.len() / dim);
    let n_examples = input.qids.len();
    check_offsets(input.pos_offsets, n_examples, input.pos.len(), "positive")?;
    check_offsets(input.neg_offsets, n_examples, input.neg.len(), "negative")?;
    if input.qids.iter().any(|&q| q as usize >= n_queries) {
        return Err(CoreError::Shape(format!(
            "a query row is not below {n_queries}"
        )));
    }
    if input
        .pos
        .iter()
        .chain(input.neg)
        .any(|&p| p as usize >= n_passages)
    {
        return Err(CoreError::Shape(format!(
            "a passage row is not below {n_passages}"
        )));
    }
    let per: Vec<Example> = crate::pool::install(|| {
        (0..n_examples)
            .into_par_iter()
            .map(|e| input.score_example(e, delta, in_batch))
            .collect()
    });
    let mut terms = EciTerms::default();
    for ex in per {
        terms.information_capacity.push(ex.ic);
        terms.signal.push(ex.signal);
        terms.safety.push(ex.safety);
        terms.efficiency.push(ex.de);
        terms.eci.push(ex.ic * ex.de);
        terms.positive_score.push(ex.sp);
        terms.baseline.push(ex.baseline);
        terms.negative_score.extend(ex.scores);
        terms.hardness.extend(ex.hard);
        terms.negative_safety.extend(ex.safe);
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn terms_follow_the_definitions() {
        // 2-d: query along x; positive at cos 0.9; negatives at cos 0.9 (unsafe), 0.5, -0.2
        let query = unit(&[1.0, 0.0]);
        let at = |c: f32| vec![c, (1.0 - c * c).sqrt()];
        let mut passages = Vec::new();
        for c in [0.9, 0.9, 0.5, -0.2, 0.1] {
            passages.extend(at(c));
        }
        // example 0: positive 0, negatives 1..4; example 1 (another query) has positive 4
        let queries = [query.clone(), unit(&[0.0, 1.0])].concat();
        let input = EciInput {
            queries: &queries,
            passages: &passages,
            dim: 2,
            qids: &[0, 1],
            pos_offsets: &[0, 1, 2],
            pos: &[0, 4],
            neg_offsets: &[0, 3, 3],
            neg: &[1, 2, 3],
        };
        let terms = effective_contrastive_information(&input, 0.05, 16).unwrap();
        let base = 0.1f32; // query . passage 4
        assert!((terms.baseline[0] - base).abs() < 1e-6);
        let hard = [1.0, (0.5 - base) / (0.9 - base), 0.0];
        let safe = [0.0, 1.0, 1.0];
        for i in 0..3 {
            assert!((terms.hardness[i] - hard[i]).abs() < 1e-5, "{i}");
            assert!((terms.negative_safety[i] - safe[i]).abs() < 1e-5, "{i}");
        }
        let (sig, saf) = (hard.iter().sum::<f32>() / 3.0, 2.0 / 3.0);
        assert!((terms.signal[0] - sig).abs() < 1e-5 && (terms.safety[0] - saf).abs() < 1e-5);
        let de = 2.0 * sig * saf / (sig + saf);
        assert!((terms.eci[0] - 4f32.ln() * de).abs() < 1e-5);
        // no negatives: every term 0
        assert_eq!((terms.eci[1], terms.information_capacity[1]), (0.0, 0.0));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let input = EciInput {
            queries: &[1.0, 0.0],
            passages: &[1.0, 0.0],
            dim: 2,
            qids: &[0],
            pos_offsets: &[0, 1],
            pos: &[0],
            neg_offsets: &[0, 1],
            neg: &[3],
        };
        assert!(effective_contrastive_information(&input, 0.05, 16).is_err());
        assert!(
            effective_contrastive_information(&EciInput { neg: &[0], ..input }, 0.0, 16).is_err()
        );
    }
}
