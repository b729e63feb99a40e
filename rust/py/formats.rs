//! Bindings: the BGE JSON Lines parser.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::{strbuf_to_py, value_error};
use crate::formats::bge;

fn bge_columns_to_py<'py>(py: Python<'py>, c: bge::BgeColumns) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("query", strbuf_to_py(py, c.query))?;
    d.set_item("passages", strbuf_to_py(py, c.passages))?;
    d.set_item("extra", strbuf_to_py(py, c.extra))?;
    d.set_item("pos_counts", c.pos_counts.into_pyarray(py))?;
    d.set_item("neg_counts", c.neg_counts.into_pyarray(py))?;
    d.set_item("pos_scores", c.pos_scores.into_pyarray(py))?;
    d.set_item("has_pos_scores", c.has_pos_scores.into_pyarray(py))?;
    d.set_item("neg_scores", c.neg_scores.into_pyarray(py))?;
    d.set_item("has_neg_scores", c.has_neg_scores.into_pyarray(py))?;
    d.set_item("lines", c.lines.into_pyarray(py))?;
    d.set_item("all_int_scores", c.all_int_scores)?;
    let errors: Vec<(u64, Option<String>, String)> = c
        .errors
        .into_iter()
        .map(|e| (e.line, e.field, e.message))
        .collect();
    d.set_item("errors", errors)?;
    Ok(d)
}

/// Parse whole lines of a BGE JSON Lines file into columns (see `trueneg.formats.bge`).
/// Returns a dict of numpy arrays plus `errors`: a list of (line, field | None, message).
#[pyfunction]
#[pyo3(signature = (data, first_line = 1))]
pub(super) fn parse_bge_lines<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    first_line: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let bytes = data.as_bytes();
    let c = py.detach(|| bge::parse_bge_lines(bytes, first_line));
    bge_columns_to_py(py, c)
}

/// Parse one block of whole lines of a BGE JSON Lines file, memory-mapped. Returns
/// (columns dict, next offset, next line number); the next offset equals the file size at the end.
#[pyfunction]
#[pyo3(signature = (path, offset = 0, block_bytes = 33_554_432, first_line = 1))]
pub(super) fn parse_bge_file_block<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    offset: u64,
    block_bytes: u64,
    first_line: u64,
) -> PyResult<(Bound<'py, PyDict>, u64, u64)> {
    if block_bytes == 0 {
        return Err(value_error("block_bytes must be positive"));
    }
    let (c, next) =
        py.detach(|| bge::parse_bge_file_block(&path, offset, block_bytes, first_line))?;
    Ok((bge_columns_to_py(py, c)?, next.offset, next.line))
}
