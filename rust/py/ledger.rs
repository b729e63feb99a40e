//! Bindings: judge call plans, token counts, training batches and the fix strategies.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use super::{contiguous, run_detached, str_column, value_error, StrColumnArgs};
use crate::ledger;

/// Plan judge calls: each example's negatives split into the fewest near-equal calls of at most
/// `max_per_call`. Returns (example int64, start int32, end int32) arrays, one entry per call.
#[pyfunction]
#[pyo3(signature = (counts, max_per_call = 25))]
#[allow(clippy::type_complexity)]
pub(super) fn plan_calls<'py>(
    py: Python<'py>,
    counts: PyReadonlyArray1<'py, u32>,
    max_per_call: u32,
) -> PyResult<(
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u32>>,
)> {
    let c = contiguous(&counts, "counts")?;
    let calls = run_detached(py, || ledger::pack::plan_calls(c, max_per_call))?;
    let ex: Vec<u64> = calls.iter().map(|x| x.example).collect();
    let st: Vec<u32> = calls.iter().map(|x| x.start).collect();
    let en: Vec<u32> = calls.iter().map(|x| x.end).collect();
    Ok((
        ex.into_pyarray(py),
        st.into_pyarray(py),
        en.into_pyarray(py),
    ))
}

/// Training batches with no query and no passage twice: (offsets int64, examples uint32,
/// partial batch count). `passage_offsets`/`passage_ids`: each example's passages (CSR).
#[pyfunction]
#[pyo3(signature = (queries, passage_offsets, passage_ids, batch_size, seed = 0, max_open = 64))]
#[allow(clippy::type_complexity)]
pub(super) fn pack_batches<'py>(
    py: Python<'py>,
    queries: PyReadonlyArray1<'py, u32>,
    passage_offsets: PyReadonlyArray1<'py, i64>,
    passage_ids: PyReadonlyArray1<'py, u32>,
    batch_size: usize,
    seed: u64,
    max_open: usize,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u32>>, usize)> {
    let q = contiguous(&queries, "queries")?;
    let o = contiguous(&passage_offsets, "passage_offsets")?;
    let p = contiguous(&passage_ids, "passage_ids")?;
    let b = run_detached(py, || {
        ledger::batches::pack_batches(q, o, p, batch_size, seed, max_open)
    })?;
    Ok((
        b.offsets.into_pyarray(py),
        b.examples.into_pyarray(py),
        b.partial,
    ))
}

type FixPy<'py> = (
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<u32>>,
    (
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u64>>,
    ),
    (
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u64>>,
    ),
);

/// Apply a fix strategy ("remove", "remove-hn", "relabel") to CSR lists of pids. Returns (keep,
/// false negatives per example, (positives offsets, pids, sources), (negatives offsets, pids,
/// sources)); sources (empty unless `with_sources`) index the input `[positives | negatives]`.
#[pyfunction]
#[pyo3(signature = (pos_offsets, pos, neg_offsets, neg, fn_offsets, fn_pids, exempt, strategy, max_false_negatives = None, with_sources = false))]
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_fix<'py>(
    py: Python<'py>,
    pos_offsets: PyReadonlyArray1<'py, i64>,
    pos: PyReadonlyArray1<'py, u32>,
    neg_offsets: PyReadonlyArray1<'py, i64>,
    neg: PyReadonlyArray1<'py, u32>,
    fn_offsets: PyReadonlyArray1<'py, i64>,
    fn_pids: PyReadonlyArray1<'py, u32>,
    exempt: PyReadonlyArray1<'py, bool>,
    strategy: &str,
    max_false_negatives: Option<u32>,
    with_sources: bool,
) -> PyResult<FixPy<'py>> {
    let strategy = match strategy {
        "remove" => ledger::fix::Strategy::Remove,
        "remove-hn" => ledger::fix::Strategy::RemoveHn,
        "relabel" => ledger::fix::Strategy::Relabel,
        other => {
            return Err(value_error(format!(
                "strategy must be remove, remove-hn or relabel, got {other:?}"
            )))
        }
    };
    let input = ledger::fix::FixInput {
        pos_offsets: contiguous(&pos_offsets, "pos_offsets")?,
        pos: contiguous(&pos, "pos")?,
        neg_offsets: contiguous(&neg_offsets, "neg_offsets")?,
        neg: contiguous(&neg, "neg")?,
        fn_offsets: contiguous(&fn_offsets, "fn_offsets")?,
        fn_pids: contiguous(&fn_pids, "fn_pids")?,
        exempt: contiguous(&exempt, "exempt")?,
    };
    let o = run_detached(py, || {
        ledger::fix::apply(input, strategy, max_false_negatives, with_sources)
    })?;
    Ok((
        o.keep.into_pyarray(py),
        o.n_false_negatives.into_pyarray(py),
        (
            o.pos_offsets.into_pyarray(py),
            o.pos_pids.into_pyarray(py),
            o.pos_src.into_pyarray(py),
        ),
        (
            o.neg_offsets.into_pyarray(py),
            o.neg_pids.into_pyarray(py),
            o.neg_src.into_pyarray(py),
        ),
    ))
}

/// Token count of each text with an `OpenAI` encoding (`o200k_base` or `cl100k_base`), offline.
#[pyfunction]
#[pyo3(signature = (texts, encoding = "o200k_base"))]
pub(super) fn count_tokens<'py>(
    py: Python<'py>,
    texts: StrColumnArgs<'py>,
    encoding: &str,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let col = str_column(&texts, "texts")?;
    let n = run_detached(py, || ledger::tokens::count_tokens(&col, encoding))?;
    Ok(n.into_pyarray(py))
}
