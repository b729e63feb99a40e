//! Text normalisation before hashing: Unicode NFKC, lower case, punctuation as spaces,
//! collapsed whitespace.

use unicode_normalization::UnicodeNormalization;

/// Which normalisations to apply (all on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // four independent switches, each a user knob
pub struct Normalize {
    pub nfkc: bool,
    pub lowercase: bool,
    pub whitespace: bool,
    /// Every character that is neither a letter, a digit nor whitespace separates words like a
    /// space ("...than" and "... than" are the same text).
    pub punctuation: bool,
}

impl Default for Normalize {
    fn default() -> Self {
        Self {
            nfkc: true,
            lowercase: true,
            whitespace: true,
            punctuation: true,
        }
    }
}

impl Normalize {
    pub const NONE: Normalize = Normalize {
        nfkc: false,
        lowercase: false,
        whitespace: false,
        punctuation: false,
    };

    /// The normalised form of `s`, written into `out` (cleared first).
    pub fn apply_into(&self, s: &str, out: &mut String) {
        out.clear();
        let ascii = s.is_ascii();
        let mut tmp;
        let mut cur: &str = s;
        if self.nfkc && !ascii {
            tmp = cur.nfkc().collect::<String>();
            cur = &tmp;
        }
        if self.lowercase {
            if ascii {
                tmp = cur.to_ascii_lowercase();
            } else {
                tmp = cur.to_lowercase();
            }
            cur = &tmp;
        }
        if self.punctuation {
            tmp = cur
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c.is_whitespace() {
                        c
                    } else {
                        ' '
                    }
                })
                .collect();
            cur = &tmp;
        }
        if self.whitespace {
            for (i, w) in cur.split_whitespace().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(w);
            }
        } else {
            out.push_str(cur);
        }
    }

    pub fn apply(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        self.apply_into(s, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_case_and_whitespace() {
        let n = Normalize::default();
        assert_eq!(
            n.apply("  Ｆｕｌｌ\u{00A0}Width\tTEXT \n"),
            "full width text"
        );
        assert_eq!(n.apply("ﬁle"), "file"); // ligature
        assert_eq!(Normalize::NONE.apply(" A  b "), " A  b ");
        let only_ws = Normalize {
            nfkc: false,
            lowercase: false,
            whitespace: true,
            punctuation: false,
        };
        assert_eq!(only_ws.apply(" A  b "), "A b");
        assert_eq!(only_ws.apply("a, b"), "a, b");
    }

    #[test]
    fn punctuation_separates_like_a_space() {
        let n = Normalize::default();
        assert_eq!(n.apply("rather...than"), n.apply("rather ... than"));
        assert_eq!(n.apply("rather...than"), "rather than");
        assert_eq!(n.apply("«Ça», dit-il!"), "ça dit il");
        assert_eq!(n.apply("x2 = 3.5%"), "x2 3 5");
    }
}
