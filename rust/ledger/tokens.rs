//! Token counts with the `OpenAI` BPE encodings (bundled by tiktoken-rs, so offline), in parallel.

use std::sync::LazyLock;

use rayon::prelude::*;
use tiktoken_rs::CoreBPE;

use crate::error::{CoreError, CoreResult};
use crate::pool;
use crate::text::StrColumn;

static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());
static CL100K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::cl100k_base().ok());

fn encoding(name: &str) -> CoreResult<&'static CoreBPE> {
    let bpe = match name {
        "o200k_base" => O200K.as_ref(),
        "cl100k_base" => CL100K.as_ref(),
        other => {
            return Err(CoreError::InvalidParam(format!(
                "unknown encoding {other:?} (known: o200k_base, cl100k_base)"
            )))
        }
    };
    bpe.ok_or_else(|| CoreError::InvalidParam(format!("encoding {name} failed to load")))
}

/// Number of tokens of each text (special tokens count as text).
pub fn count_tokens(texts: &StrColumn<'_>, encoding_name: &str) -> CoreResult<Vec<u32>> {
    texts.validate("texts")?;
    let bpe = encoding(encoding_name)?;
    Ok(pool::install(|| {
        (0..texts.len())
            .into_par_iter()
            .map(|i| {
                let t = texts
                    .get(i)
                    .map_or("", |b| std::str::from_utf8(b).unwrap_or(""));
                bpe.encode_ordinary(t).len() as u32
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::StrBuf;

    #[test]
    fn counts_known_strings() {
        let mut b = StrBuf::default();
        b.push("Hello world, this is a test of the o200k tokenizer.");
        b.push("");
        let col = StrColumn {
            offsets: &b.offsets,
            data: &b.data,
            nulls: None,
        };
        let n = count_tokens(&col, "o200k_base").unwrap();
        assert_eq!(n[1], 0);
        assert!(n[0] > 8 && n[0] < 20, "{}", n[0]);
        assert!(count_tokens(&col, "nope").is_err());
    }
}
