//! Bindings: string columns, 128-bit row keys and the interner.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use super::{
    array_to_keys, keys_to_array, run_detached, str_column, strbuf_to_py, value_error,
    StrColumnArgs,
};
use crate::error::CoreError;
use crate::formats::StrBuf;
use crate::intern;
use crate::text;

/// 128-bit fixed-seed keys of the rows of several Arrow-layout string columns,
/// returned as uint64 (n, 2) (high, low).
#[pyfunction]
#[pyo3(signature = (columns, seed = 0))]
pub(super) fn hash_string_columns<'py>(
    py: Python<'py>,
    columns: Vec<StrColumnArgs<'py>>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    let cols = columns
        .iter()
        .enumerate()
        .map(|(i, c)| str_column(c, &format!("columns[{i}]")))
        .collect::<PyResult<Vec<_>>>()?;
    let keys = run_detached(py, || text::hash_rows(&cols, seed))?;
    Ok(keys_to_array(&keys).into_pyarray(py))
}

/// Maps 128-bit keys to dense uint32 ids in first-seen order, chunk after chunk.
#[pyclass(module = "trueneg._core", name = "Interner", frozen)]
pub(super) struct PyInterner {
    inner: Mutex<intern::Interner>,
}

#[pymethods]
impl PyInterner {
    #[new]
    fn new() -> Self {
        Self {
            inner: Mutex::new(intern::Interner::new()),
        }
    }

    /// Intern `keys` (uint64 (n, 2)); `values` (same shape) are remembered the first
    /// time a key is seen and compared later. Returns (ids uint32, `is_new` bool, conflict bool).
    #[pyo3(signature = (keys, values = None))]
    #[allow(clippy::type_complexity)]
    fn intern<'py>(
        &self,
        py: Python<'py>,
        keys: PyReadonlyArray2<'py, u64>,
        values: Option<PyReadonlyArray2<'py, u64>>,
    ) -> PyResult<(
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<bool>>,
        Bound<'py, PyArray1<bool>>,
    )> {
        let k = array_to_keys(&keys, "keys")?;
        let v = match &values {
            Some(v) => array_to_keys(v, "values")?,
            None => Vec::new(),
        };
        let r = run_detached(py, || {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| CoreError::InvalidParam("interner lock poisoned".into()))?;
            guard.intern(&k, &v)
        })?;
        Ok((
            r.ids.into_pyarray(py),
            r.is_new.into_pyarray(py),
            r.conflict.into_pyarray(py),
        ))
    }

    /// Id of each key (uint64 (n, 2)), -1 where unknown.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        keys: PyReadonlyArray2<'py, u64>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let k = array_to_keys(&keys, "keys")?;
        let r = run_detached(py, || {
            let guard = self
                .inner
                .lock()
                .map_err(|_| CoreError::InvalidParam("interner lock poisoned".into()))?;
            Ok(guard.lookup(&k))
        })?;
        Ok(r.into_pyarray(py))
    }

    fn __len__(&self) -> PyResult<usize> {
        let guard = self
            .inner
            .lock()
            .map_err(|_| value_error("interner lock poisoned"))?;
        Ok(guard.len())
    }
}

type StrColumnOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u8>>,
    Option<Bound<'py, PyArray1<bool>>>,
);

/// An iterable of `str | None` as an Arrow-layout string column (offsets, data, nulls | None):
/// one copy of the UTF-8 bytes, no per-row objects.
#[pyfunction]
pub(super) fn strings_to_column<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
) -> PyResult<StrColumnOut<'py>> {
    let mut buf = StrBuf::default();
    let mut nulls: Vec<bool> = Vec::new();
    let mut any_null = false;
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        if item.is_none() {
            any_null = true;
            nulls.push(true);
            buf.push("");
            continue;
        }
        let s = item.cast::<pyo3::types::PyString>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "texts[{i}]: expected a str or None, got {}",
                item.get_type()
                    .name()
                    .map_or_else(|_| "?".to_string(), |n| n.to_string())
            ))
        })?;
        buf.push(s.to_str()?);
        nulls.push(false);
    }
    let (offsets, data) = strbuf_to_py(py, buf);
    Ok((offsets, data, any_null.then(|| nulls.into_pyarray(py))))
}
