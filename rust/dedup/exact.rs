//! Exact duplicates after normalisation: 128-bit fixed-seed keys of normalised texts.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_128;

use super::normalize::Normalize;
use crate::error::CoreResult;
use crate::pool;
use crate::text::StrColumn;

/// Key of each normalised text (null rows hash like the empty string).
pub fn normalized_hashes(texts: &StrColumn<'_>, normalize: Normalize) -> CoreResult<Vec<u128>> {
    texts.validate("texts")?;
    Ok(pool::install(|| {
        (0..texts.len())
            .into_par_iter()
            .with_min_len(1024)
            .map_init(String::new, |buf, i| {
                let text = texts
                    .get(i)
                    .map_or("", |b| std::str::from_utf8(b).unwrap_or(""));
                normalize.apply_into(text, buf);
                xxh3_128(buf.as_bytes())
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::StrBuf;

    #[test]
    fn case_and_space_variants_are_equal() {
        let mut b = StrBuf::default();
        for t in ["Hello  World", "hello world", "hello worlds"] {
            b.push(t);
        }
        let col = StrColumn {
            offsets: &b.offsets,
            data: &b.data,
            nulls: None,
        };
        let h = normalized_hashes(&col, Normalize::default()).unwrap();
        assert_eq!(h[0], h[1]);
        assert_ne!(h[1], h[2]);
        let raw = normalized_hashes(&col, Normalize::NONE).unwrap();
        assert_ne!(raw[0], raw[1]);
    }
}
