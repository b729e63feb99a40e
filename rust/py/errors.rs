//! Mapping of core errors to Python exceptions, and the one place that releases the GIL.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::CoreError;

pyo3::create_exception!(
    trueneg._core,
    CoreValueError,
    PyValueError,
    "Invalid input to a trueneg kernel (bad shape or parameter)."
);

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e {
            CoreError::Shape(_) | CoreError::InvalidParam(_) => {
                CoreValueError::new_err(e.to_string())
            }
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
