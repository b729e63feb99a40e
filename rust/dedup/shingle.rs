//! Shingling: word n-grams or character n-grams of normalised text, hashed to u64 (fixed seed).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::normalize::Normalize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Word,
    Char,
}

/// Turns texts into sets of shingle hashes.
#[derive(Debug, Clone, Copy)]
pub struct Shingler {
    pub unit: Unit,
    /// n of the n-grams (>= 1).
    pub n: usize,
    pub normalize: Normalize,
}

const SHINGLE_SEED: u64 = 0x7472_7565_6e65_6721; // "trueneg!"

impl Shingler {
    /// Shingle hashes of `text`, sorted and deduplicated. A text shorter than `n` units gives one
    /// shingle (the whole text); an empty text gives none. `buf` is scratch space.
    pub fn shingles_into(&self, text: &str, buf: &mut String, out: &mut Vec<u64>) {
        out.clear();
        self.normalize.apply_into(text, buf);
        let t = buf.as_str();
        if t.is_empty() {
            return;
        }
        match self.unit {
            Unit::Word => {
                let words: Vec<u64> = t
                    .split_whitespace()
                    .map(|w| xxh3_64(w.as_bytes()))
                    .collect();
                if words.len() <= self.n {
                    out.push(hash_words(&words));
                } else {
                    out.extend(words.windows(self.n).map(hash_words));
                }
            }
            Unit::Char => {
                let bounds: Vec<usize> =
                    t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
                let chars = bounds.len() - 1;
                if chars <= self.n {
                    out.push(xxh3_64_with_seed(t.as_bytes(), SHINGLE_SEED));
                } else {
                    for i in 0..=chars - self.n {
                        out.push(xxh3_64_with_seed(
                            &t.as_bytes()[bounds[i]..bounds[i + self.n]],
                            SHINGLE_SEED,
                        ));
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let mut buf = String::new();
        let mut out = Vec::new();
        self.shingles_into(text, &mut buf, &mut out);
        out
    }
}

fn hash_words(words: &[u64]) -> u64 {
    let mut bytes = [0u8; 8 * 16];
    if words.len() <= 16 {
        for (i, w) in words.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        xxh3_64_with_seed(&bytes[..words.len() * 8], SHINGLE_SEED)
    } else {
        let v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        xxh3_64_with_seed(&v, SHINGLE_SEED)
    }
}

/// Exact Jaccard similarity of two sorted, deduplicated sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_shingles() {
        let s = Shingler {
            unit: Unit::Word,
            n: 2,
            normalize: Normalize::default(),
        };
        assert_eq!(s.shingles("a b c").len(), 2);
        assert_eq!(s.shingles("A  B c"), s.shingles("a b C"));
        assert_eq!(s.shingles("one").len(), 1);
        assert!(s.shingles("   ").is_empty());
        assert_eq!(s.shingles("a b a b a b").len(), 2); // {ab, ba}
    }

    #[test]
    fn char_shingles_respect_unicode() {
        let s = Shingler {
            unit: Unit::Char,
            n: 3,
            normalize: Normalize::NONE,
        };
        assert_eq!(s.shingles("héllo").len(), 3);
        assert_eq!(s.shingles("hé").len(), 1);
    }

    #[test]
    fn exact_jaccard() {
        assert!((jaccard(&[1, 2, 3], &[2, 3, 4]) - 0.5).abs() < 1e-12);
        assert!((jaccard(&[], &[]) - 1.0).abs() < 1e-12);
        assert!(jaccard(&[1], &[]).abs() < 1e-12);
    }
}
