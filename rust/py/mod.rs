//! The `PyO3` module `trueneg._core`: argument checks, GIL release, error mapping.
//! All computing happens in the pure-Rust modules of the crate.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

mod errors;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::Mutex;

use crate::dedup;
use crate::error::CoreError;
use crate::formats::{bge, StrBuf};
use crate::intern;
use crate::ledger;
use crate::pool;
use crate::text::{self, StrColumn};
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

/// 128-bit fixed-seed keys of the rows of several Arrow-layout string columns,
/// returned as uint64 (n, 2) (high, low).
#[pyfunction]
#[pyo3(signature = (columns, seed = 0))]
fn hash_string_columns<'py>(
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
struct PyInterner {
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

fn strbuf_to_py<'py>(
    py: Python<'py>,
    b: StrBuf,
) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u8>>) {
    (b.offsets.into_pyarray(py), b.data.into_pyarray(py))
}

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
fn parse_bge_lines<'py>(
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
fn parse_bge_file_block<'py>(
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

type StrColumnOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u8>>,
    Option<Bound<'py, PyArray1<bool>>>,
);

/// An iterable of `str | None` as an Arrow-layout string column (offsets, data, nulls | None):
/// one copy of the UTF-8 bytes, no per-row objects.
#[pyfunction]
fn strings_to_column<'py>(
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

fn str_column<'a>(args: &'a StrColumnArgs<'_>, what: &str) -> PyResult<StrColumn<'a>> {
    let (offsets, data, nulls) = args;
    Ok(StrColumn {
        offsets: contiguous(offsets, &format!("{what} offsets"))?,
        data: contiguous(data, &format!("{what} data"))?,
        nulls: contiguous_opt(nulls.as_ref(), &format!("{what} nulls"))?,
    })
}

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
fn normalized_hashes<'py>(
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
fn minhash_signatures<'py>(
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
fn lsh_clusters<'py>(
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

/// Plan judge calls: each example's negatives split into the fewest near-equal calls of at most
/// `max_per_call`. Returns (example int64, start int32, end int32) arrays, one entry per call.
#[pyfunction]
#[pyo3(signature = (counts, max_per_call = 25))]
#[allow(clippy::type_complexity)]
fn plan_calls<'py>(
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
fn pack_batches<'py>(
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
fn apply_fix<'py>(
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

/// A 2-d float32 or float16 array, C-contiguous, borrowed read-only.
enum FloatRows<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, half::f16>),
}

impl<'py> FloatRows<'py> {
    fn extract(x: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(a) = x.extract::<PyReadonlyArray2<'py, f32>>() {
            return Ok(Self::F32(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray2<'py, half::f16>>() {
            return Ok(Self::F16(a));
        }
        Err(value_error(format!(
            "{what} must be a 2-d float32 or float16 array"
        )))
    }

    fn shape(&self) -> (usize, usize) {
        match self {
            Self::F32(a) => (a.as_array().nrows(), a.as_array().ncols()),
            Self::F16(a) => (a.as_array().nrows(), a.as_array().ncols()),
        }
    }

    fn rows(&self, what: &str) -> PyResult<crate::search::Rows<'_>> {
        let err = || value_error(format!("{what} must be C-contiguous"));
        Ok(match self {
            Self::F32(a) => crate::search::Rows::F32(a.as_slice().map_err(|_| err())?),
            Self::F16(a) => crate::search::Rows::F16(a.as_slice().map_err(|_| err())?),
        })
    }
}

/// Exact inner-product top-k: queries (n, d) and corpus (m, d), float32 or float16,
/// C-contiguous. Returns (indices int64 (n, k), scores float32 (n, k)), best first, ties by lower
/// index.
#[pyfunction]
#[pyo3(signature = (queries, corpus, k, method = "auto"))]
#[allow(clippy::type_complexity)]
fn topk_inner_product<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    corpus: &Bound<'py, PyAny>,
    k: usize,
    method: &str,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
    let method = match method {
        "auto" => crate::search::Method::Auto,
        "gemm" => crate::search::Method::Gemm,
        "int8" => crate::search::Method::Int8,
        other => {
            return Err(value_error(format!(
                "method must be auto, gemm or int8, got {other:?}"
            )))
        }
    };
    let (queries, corpus) = (
        FloatRows::extract(queries, "queries")?,
        FloatRows::extract(corpus, "corpus")?,
    );
    let ((nq, dq), (_, dc)) = (queries.shape(), corpus.shape());
    if dq != dc {
        return Err(value_error(format!(
            "dimension mismatch: queries have {dq} columns, the corpus {dc}"
        )));
    }
    let (q, c) = (queries.rows("queries")?, corpus.rows("corpus")?);
    let r = run_detached(py, || crate::search::topk_rows(q, c, dq, k, method))?;
    let idx = Array2::from_shape_vec((nq, k), r.indices).map_err(|e| value_error(e.to_string()))?;
    let sc = Array2::from_shape_vec((nq, k), r.scores).map_err(|e| value_error(e.to_string()))?;
    Ok((idx.into_pyarray(py), sc.into_pyarray(py)))
}

type SelectPy<'py> = (
    (
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<f32>>,
    ),
    Bound<'py, PyArray1<u32>>,
    (
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<f32>>,
    ),
);

/// Positive-aware negative selection over top-k candidates. Returns ((offsets, ids, scores) of
/// the chosen negatives, eligible count per query, (offsets, ids, scores) of the ambiguous band).
#[pyfunction]
#[pyo3(signature = (cand_ids, cand_scores, pos_offsets, pos_ids, pos_scores, num_negatives, range_min = 0, range_max = usize::MAX, max_score = None, min_score = None, absolute_margin = None, relative_margin = None, sampling = "top", seed = 0, cluster = None))]
#[allow(clippy::too_many_arguments)]
fn select_negatives<'py>(
    py: Python<'py>,
    cand_ids: PyReadonlyArray2<'py, i64>,
    cand_scores: PyReadonlyArray2<'py, f32>,
    pos_offsets: PyReadonlyArray1<'py, i64>,
    pos_ids: PyReadonlyArray1<'py, u32>,
    pos_scores: PyReadonlyArray1<'py, f32>,
    num_negatives: usize,
    range_min: usize,
    range_max: usize,
    max_score: Option<f32>,
    min_score: Option<f32>,
    absolute_margin: Option<f32>,
    relative_margin: Option<f32>,
    sampling: &str,
    seed: u64,
    cluster: Option<PyReadonlyArray1<'py, u32>>,
) -> PyResult<SelectPy<'py>> {
    let k = cand_ids.as_array().ncols();
    let ids = cand_ids
        .as_slice()
        .map_err(|_| value_error("cand_ids must be C-contiguous int64 (n, k)"))?;
    let sc = cand_scores
        .as_slice()
        .map_err(|_| value_error("cand_scores must be C-contiguous float32 (n, k)"))?;
    let sampling = match sampling {
        "top" => crate::mining::Sampling::Top,
        "random" => crate::mining::Sampling::Random { seed },
        other => {
            return Err(value_error(format!(
                "sampling must be 'top' or 'random', got {other:?}"
            )))
        }
    };
    let params = crate::mining::SelectParams {
        num_negatives,
        range_min,
        range_max,
        max_score,
        min_score,
        absolute_margin,
        relative_margin,
        sampling,
    };
    let (po, pi, ps) = (
        contiguous(&pos_offsets, "pos_offsets")?,
        contiguous(&pos_ids, "pos_ids")?,
        contiguous(&pos_scores, "pos_scores")?,
    );
    let cl = contiguous_opt(cluster.as_ref(), "cluster")?;
    let r = run_detached(py, || {
        crate::mining::select_negatives(ids, sc, k, po, pi, ps, cl, &params)
    })?;
    Ok((
        (
            r.offsets.into_pyarray(py),
            r.ids.into_pyarray(py),
            r.scores.into_pyarray(py),
        ),
        r.eligible.into_pyarray(py),
        (
            r.band_offsets.into_pyarray(py),
            r.band_ids.into_pyarray(py),
            r.band_scores.into_pyarray(py),
        ),
    ))
}

/// Token count of each text with an `OpenAI` encoding (`o200k_base` or `cl100k_base`), offline.
#[pyfunction]
#[pyo3(signature = (texts, encoding = "o200k_base"))]
fn count_tokens<'py>(
    py: Python<'py>,
    texts: StrColumnArgs<'py>,
    encoding: &str,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let col = str_column(&texts, "texts")?;
    let n = run_detached(py, || ledger::tokens::count_tokens(&col, encoding))?;
    Ok(n.into_pyarray(py))
}

/// Run every later kernel on the calling thread (set in forked children).
#[pyfunction]
fn set_serial(serial: bool) {
    pool::set_serial(serial);
}

/// Number of threads the kernels use.
#[pyfunction]
fn num_threads() -> usize {
    pool::num_threads()
}

/// CPU features the build and the machine offer, for `trueneg env`.
#[pyfunction]
fn cpu_features() -> Vec<String> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            (
                "avx512bf16",
                std::arch::is_x86_feature_detected!("avx512bf16"),
            ),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            out.push("neon".to_string());
        }
    }
    out
}

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::{
        apply_fix, count_tokens, cpu_features, hash_string_columns, lsh_clusters,
        minhash_signatures, normalized_hashes, num_threads, pack_batches, parse_bge_file_block,
        parse_bge_lines, plan_calls, select_negatives, set_serial, strings_to_column,
        topk_inner_product, PyInterner,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        let py = m.py();
        m.add("TruenegError", py.get_type::<super::errors::TruenegError>())?;
        m.add("CoreValueError", super::errors::core_value_error_type(py)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
