//! Mapping of core errors to Python exceptions, and the one place that releases the GIL.
//!
//! One exception family from Rust to the CLI: `TruenegError` (the base of every error trueneg
//! raises on purpose, which the Python package re-exports) and `CoreValueError`, a
//! `TruenegError` and a `ValueError` at once (built at import with both bases, which
//! `create_exception!` cannot do).

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::error::CoreError;

pyo3::create_exception!(
    trueneg._core,
    TruenegError,
    PyException,
    "Base class of every error trueneg raises on purpose."
);

static CORE_VALUE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `CoreValueError(TruenegError, ValueError)`, made once per interpreter.
pub(crate) fn core_value_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    CORE_VALUE_ERROR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [py.get_type::<TruenegError>(), py.get_type::<PyValueError>()],
            )?;
            let dict = PyDict::new(py);
            dict.set_item("__module__", "trueneg._core")?;
            dict.set_item(
                "__doc__",
                "Invalid input to a trueneg kernel (bad shape or parameter).",
            )?;
            let t = py
                .get_type::<PyType>()
                .call1(("CoreValueError", bases, dict))?;
            Ok::<_, PyErr>(t.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// A `CoreValueError` with this message: every bad input a kernel refuses.
pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    let msg: String = msg.into();
    Python::attach(|py| match core_value_error_type(py) {
        Ok(t) => PyErr::from_type(t.clone(), msg),
        Err(e) => e,
    })
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e {
            CoreError::Shape(_) | CoreError::InvalidParam(_) => value_error(e.to_string()),
        }
    }
}

/// Run `f` with the GIL released and map its error. Every kernel call goes through here.
pub(crate) fn run_detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    py.detach(f).map_err(PyErr::from)
}
