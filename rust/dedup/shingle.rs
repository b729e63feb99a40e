//! Shingling: word n-grams or character n-grams of normalised text, hashed to u64 (fixed seed).
//!
//! Word n-grams hash each (normalised) word with XXH3 and combine the `n` word hashes of a window
//! with a multiply-rotate mix, so a shingle costs `n` multiplies, not a pass over its bytes. ASCII
//! text takes a fused path (lower case and whitespace splitting in one pass, no copy of the text).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::normalize::Normalize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Word,
    Char,
}

/// Turns texts into shingle hashes.
#[derive(Debug, Clone, Copy)]
pub struct Shingler {
    pub unit: Unit,
    /// n of the n-grams (>= 1).
    pub n: usize,
    pub normalize: Normalize,
}

const SHINGLE_SEED: u64 = 0x7472_7565_6e65_6721; // "trueneg!"
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn combine(words: impl Iterator<Item = u64>) -> u64 {
    let mut h = SHINGLE_SEED;
    for w in words {
        h = (h ^ w).wrapping_mul(MIX).rotate_left(31);
    }
    // splitmix64 finaliser
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Emits word n-gram hashes from a stream of word hashes.
struct WordWindows<'a> {
    n: usize,
    ring: &'a mut Vec<u64>,
}

impl WordWindows<'_> {
    #[inline]
    fn push(&mut self, w: u64, out: &mut Vec<u64>) {
        self.ring.push(w);
        if self.ring.len() >= self.n {
            let s = self.ring.len() - self.n;
            out.push(combine(self.ring[s..].iter().copied()));
        }
    }

    /// A text with fewer than `n` words yields one shingle of all its words.
    fn finish(&mut self, out: &mut Vec<u64>) {
        if !self.ring.is_empty() && self.ring.len() < self.n {
            out.push(combine(self.ring.iter().copied()));
        }
    }
}

impl Shingler {
    /// Shingle hashes of `text` in text order, repeats included (enough for `MinHash`).
    /// `buf` and `scratch` are reusable scratch space.
    pub fn shingle_stream_into(
        &self,
        text: &str,
        buf: &mut String,
        scratch: &mut Vec<u64>,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        scratch.clear();
        match self.unit {
            Unit::Word => {
                let mut win = WordWindows {
                    n: self.n,
                    ring: scratch,
                };
                if text.is_ascii() && self.normalize.whitespace {
                    // fused ASCII path: NFKC is the identity, lower-casing is per byte
                    let lower = self.normalize.lowercase;
                    let punct = self.normalize.punctuation;
                    let mut word = [0u8; 64];
                    for tok in text
                        .as_bytes()
                        .split(|b| b.is_ascii_whitespace() || (punct && !b.is_ascii_alphanumeric()))
                        .filter(|t| !t.is_empty())
                    {
                        let h = if lower && tok.len() <= word.len() {
                            for (d, s) in word.iter_mut().zip(tok) {
                                *d = s.to_ascii_lowercase();
                            }
                            xxh3_64(&word[..tok.len()])
                        } else if lower {
                            xxh3_64(&tok.to_ascii_lowercase())
                        } else {
                            xxh3_64(tok)
                        };
                        win.push(h, out);
                    }
                } else {
                    self.normalize.apply_into(text, buf);
                    for w in buf.split_whitespace() {
                        win.push(xxh3_64(w.as_bytes()), out);
                    }
                }
                win.finish(out);
            }
            Unit::Char => {
                self.normalize.apply_into(text, buf);
                let t = buf.as_str();
                if t.is_empty() {
                    return;
                }
                if t.is_ascii() {
                    let b = t.as_bytes();
                    if b.len() <= self.n {
                        out.push(xxh3_64_with_seed(b, SHINGLE_SEED));
                    } else {
                        out.extend(
                            b.windows(self.n)
                                .map(|w| xxh3_64_with_seed(w, SHINGLE_SEED)),
                        );
                    }
                    return;
                }
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
    }

    /// The shingle set of `text`: sorted and deduplicated hashes.
    pub fn shingles_into(&self, text: &str, buf: &mut String, out: &mut Vec<u64>) {
        let mut scratch = Vec::new();
        self.shingle_stream_into(text, buf, &mut scratch, out);
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
    fn ascii_fast_path_equals_general_path() {
        let s = Shingler {
            unit: Unit::Word,
            n: 3,
            normalize: Normalize::default(),
        };
        let ascii = "The Quick  brown\tFOX jumps over the lazy dog";
        // the same words with a non-ASCII character appended: only the last shingle differs
        let general = "The Quick  brown\tFOX jumps over the lazy dog é";
        let a = s.shingles(ascii);
        let g = s.shingles(general);
        assert_eq!(a.len() + 1, g.len());
        assert!(a.iter().all(|x| g.contains(x)));
        let long = "x".repeat(100);
        assert_eq!(s.shingles(&long.to_uppercase()), s.shingles(&long));
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
        assert_eq!(s.shingles("hello").len(), 3);
    }

    #[test]
    fn exact_jaccard() {
        assert!((jaccard(&[1, 2, 3], &[2, 3, 4]) - 0.5).abs() < 1e-12);
        assert!((jaccard(&[], &[]) - 1.0).abs() < 1e-12);
        assert!(jaccard(&[1], &[]).abs() < 1e-12);
    }
}
