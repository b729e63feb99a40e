//! Bindings: exact keys, `MinHash` signatures and LSH clusters.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use super::{keys_to_array, run_detached, str_column, value_error, StrColumnArgs};
use crate::dedup;

fn shingler(unit: &str, ngram: usize, normalize: dedup::Normalize) -> PyResult<dedup::Shingler> {
    let unit = match unit {
        "word" => dedup::Unit::Word,
        "char" => dedup::Unit::Char,
        other => {
            return Err(value_error(format!(
                "unit must be 'word' or 'char', got {other:?}"
            )))
        }
    };
    if ngram == 0 {
        return Err(value_error("ngram must be at least 1"));
    }
    Ok(dedup::Shingler {
        unit,
        n: ngram,
        normalize,
    })
}

/// 128-bit keys (uint64 (n, 2)) of the normalised texts: equal keys = exact duplicates.
#[pyfunction]
#[pyo3(signature = (texts, nfkc = true, lowercase = true, whitespace = true, punctuation = true))]
#[allow(clippy::fn_params_excessive_bools)] // the normalisation switches, as Python keywords
pub(super) fn normalized_hashes<'py>(
    py: Python<'py>,
    texts: StrColumnArgs<'py>,
    nfkc: bool,
    lowercase: bool,
    whitespace: bool,
    punctuation: bool,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    let col = str_column(&texts, "texts")?;
    let norm = dedup::Normalize {
        nfkc,
        lowercase,
        whitespace,
        punctuation,
    };
    let keys = run_detached(py, || dedup::normalized_hashes(&col, norm))?;
    Ok(keys_to_array(&keys).into_pyarray(py))
}

/// `MinHash` signatures, uint32 (n, `num_perm`), of a string column.
#[pyfunction]
#[pyo3(signature = (texts, num_perm = 128, seed = 1, unit = "word", ngram = 5, nfkc = true, lowercase = true, whitespace = true, punctuation = true))]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::fn_params_excessive_bools)] // the normalisation switches, as Python keywords
pub(super) fn minhash_signatures<'py>(
    py: Python<'py>,
    texts: StrColumnArgs<'py>,
    num_perm: usize,
    seed: u64,
    unit: &str,
    ngram: usize,
    nfkc: bool,
    lowercase: bool,
    whitespace: bool,
    punctuation: bool,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let col = str_column(&texts, "texts")?;
    let sh = shingler(
        unit,
        ngram,
        dedup::Normalize {
            nfkc,
            lowercase,
            whitespace,
            punctuation,
        },
    )?;
    let hasher = dedup::MinHasher::new(num_perm, seed)?;
    let n = col.len();
    let sigs = run_detached(py, || dedup::minhash_signatures(&col, &sh, &hasher))?;
    let arr =
        Array2::from_shape_vec((n, num_perm), sigs).map_err(|e| value_error(e.to_string()))?;
    Ok(arr.into_pyarray(py))
}

type LshOut<'py> = (
    Bound<'py, PyArray1<u32>>,
    u64,
    Bound<'py, PyArray2<u32>>,
    Bound<'py, PyArray1<f32>>,
);

/// Clusters from `MinHash` signatures by LSH banding. `verify`: "none" (every candidate pair),
/// "minhash" (signature estimate >= threshold) or "jaccard" (exact Jaccard of the shingle sets of
/// `texts` >= threshold). Returns (roots, candidate pairs, edges (m, 2), similarities).
#[pyfunction]
#[pyo3(signature = (signatures, bands, rows, verify = "minhash", threshold = 0.0, texts = None, unit = "word", ngram = 5, nfkc = true, lowercase = true, whitespace = true, punctuation = true))]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::fn_params_excessive_bools)] // the normalisation switches, as Python keywords
pub(super) fn lsh_clusters<'py>(
    py: Python<'py>,
    signatures: PyReadonlyArray2<'py, u32>,
    bands: usize,
    rows: usize,
    verify: &str,
    threshold: f64,
    texts: Option<StrColumnArgs<'py>>,
    unit: &str,
    ngram: usize,
    nfkc: bool,
    lowercase: bool,
    whitespace: bool,
    punctuation: bool,
) -> PyResult<LshOut<'py>> {
    let num_perm = signatures.as_array().ncols();
    let sigs = signatures
        .as_slice()
        .map_err(|_| value_error("signatures must be a C-contiguous uint32 (n, num_perm) array"))?;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(value_error(format!(
            "threshold must be in [0, 1], got {threshold}"
        )));
    }
    let mode = match verify {
        "none" => dedup::Verify::None,
        "minhash" => dedup::Verify::MinHash(threshold),
        "jaccard" => dedup::Verify::Jaccard(threshold),
        other => {
            return Err(value_error(format!(
                "verify must be 'none', 'minhash' or 'jaccard', got {other:?}"
            )))
        }
    };
    let col = match &texts {
        Some(t) => Some(str_column(t, "texts")?),
        None => None,
    };
    if matches!(mode, dedup::Verify::Jaccard(_)) && col.is_none() {
        return Err(value_error("verify='jaccard' needs texts"));
    }
    let sh = shingler(
        unit,
        ngram,
        dedup::Normalize {
            nfkc,
            lowercase,
            whitespace,
            punctuation,
        },
    )?;
    let params = dedup::LshParams { bands, rows };
    let r = run_detached(py, || {
        let sets = match &col {
            Some(c) if matches!(mode, dedup::Verify::Jaccard(_)) => {
                Some(dedup::minhash::shingle_sets(c, &sh)?)
            }
            _ => None,
        };
        dedup::lsh_clusters(sigs, num_perm, params, mode, sets.as_deref())
    })?;
    let m = r.edges.len();
    let mut edges = Array2::<u32>::zeros((m, 2));
    let mut similarity = Vec::with_capacity(m);
    for (k, (a, b, s)) in r.edges.iter().enumerate() {
        edges[[k, 0]] = *a;
        edges[[k, 1]] = *b;
        similarity.push(*s);
    }
    Ok((
        r.roots.into_pyarray(py),
        r.candidate_pairs,
        edges.into_pyarray(py),
        similarity.into_pyarray(py),
    ))
}
