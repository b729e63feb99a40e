//! The `PyO3` module `trueneg._core`: argument checks, GIL release, error mapping.
//! All computing happens in the pure-Rust modules of the crate; the bindings are split by
//! domain (text, formats, dedup, ledger, search, env), one `#[pymodule]` here.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

mod dedup;
mod env;
mod errors;
mod formats;
mod ledger;
mod search;
mod text;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::formats::StrBuf;
use crate::text::StrColumn;
use errors::value_error;

pub(crate) use errors::run_detached;

type StrColumnArgs<'py> = (
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, u8>,
    Option<PyReadonlyArray1<'py, bool>>,
);

fn keys_to_array(keys: &[u128]) -> Array2<u64> {
    let mut out = Array2::<u64>::zeros((keys.len(), 2));
    for (i, k) in keys.iter().enumerate() {
        out[[i, 0]] = (*k >> 64) as u64;
        out[[i, 1]] = *k as u64;
    }
    out
}

fn array_to_keys(a: &PyReadonlyArray2<'_, u64>, name: &str) -> PyResult<Vec<u128>> {
    let v = a.as_array();
    if v.ncols() != 2 {
        return Err(value_error(format!(
            "{name} must have shape (n, 2), got {:?}",
            v.shape()
        )));
    }
    Ok(v.rows()
        .into_iter()
        .map(|r| (u128::from(r[0]) << 64) | u128::from(r[1]))
        .collect())
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    what: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| value_error(format!("{what} must be a C-contiguous 1-d array")))
}

fn contiguous_opt<'a, T: numpy::Element>(
    a: Option<&'a PyReadonlyArray1<'_, T>>,
    what: &str,
) -> PyResult<Option<&'a [T]>> {
    a.map(|a| contiguous(a, what)).transpose()
}

fn strbuf_to_py<'py>(
    py: Python<'py>,
    b: StrBuf,
) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u8>>) {
    (b.offsets.into_pyarray(py), b.data.into_pyarray(py))
}

fn str_column<'a>(args: &'a StrColumnArgs<'_>, what: &str) -> PyResult<StrColumn<'a>> {
    let (offsets, data, nulls) = args;
    Ok(StrColumn {
        offsets: contiguous(offsets, &format!("{what} offsets"))?,
        data: contiguous(data, &format!("{what} data"))?,
        nulls: contiguous_opt(nulls.as_ref(), &format!("{what} nulls"))?,
    })
}

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::dedup::{lsh_clusters, minhash_signatures, normalized_hashes};
    #[pymodule_export]
    use super::env::{cpu_features, num_threads, set_serial};
    #[pymodule_export]
    use super::formats::{parse_bge_file_block, parse_bge_lines};
    #[pymodule_export]
    use super::ledger::{apply_fix, count_tokens, pack_batches, plan_calls};
    #[pymodule_export]
    use super::search::{effective_contrastive_information, select_negatives, topk_inner_product};
    #[pymodule_export]
    use super::text::{hash_string_columns, strings_to_column, PyInterner};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        let py = m.py();
        m.add("TruenegError", py.get_type::<super::errors::TruenegError>())?;
        m.add("CoreValueError", super::errors::core_value_error_type(py)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
