//! Bindings: exact top-k search and positive-aware negative selection.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::{contiguous, contiguous_opt, run_detached, value_error};

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
pub(super) fn topk_inner_product<'py>(
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
    Bound<'py, PyArray1<u32>>,
);

/// Positive-aware negative selection over top-k candidates. Returns ((offsets, ids, scores) of
/// the chosen negatives, eligible count per query, (offsets, ids, scores) of the ambiguous band,
/// candidates per query dropped by the score bounds or margins).
#[pyfunction]
#[pyo3(signature = (cand_ids, cand_scores, pos_offsets, pos_ids, pos_scores, num_negatives, range_min = 0, range_max = usize::MAX, max_score = None, min_score = None, absolute_margin = None, relative_margin = None, sampling = "top", seed = 0, cluster = None, query_offset = 0))]
#[allow(clippy::too_many_arguments)]
pub(super) fn select_negatives<'py>(
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
    query_offset: u64,
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
        "random" => crate::mining::Sampling::Random {
            seed,
            first_query: query_offset,
        },
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
        r.out_of_bounds.into_pyarray(py),
    ))
}

type EciPy<'py> = Bound<'py, pyo3::types::PyDict>;

/// ECI of a negative set (see `crate::mining::eci`): a dict of float32 arrays, per example
/// (`information_capacity`, `signal`, `safety`, `efficiency`, `eci`, `positive_score`,
/// `baseline`) and per negative in CSR order (`negative_score`, `hardness`, `negative_safety`).
#[pyfunction]
#[pyo3(signature = (queries, passages, qids, pos_offsets, pos, neg_offsets, neg, delta = 0.05, in_batch = 16))]
#[allow(clippy::too_many_arguments)]
pub(super) fn effective_contrastive_information<'py>(
    py: Python<'py>,
    queries: PyReadonlyArray2<'py, f32>,
    passages: PyReadonlyArray2<'py, f32>,
    qids: PyReadonlyArray1<'py, u32>,
    pos_offsets: PyReadonlyArray1<'py, i64>,
    pos: PyReadonlyArray1<'py, u32>,
    neg_offsets: PyReadonlyArray1<'py, i64>,
    neg: PyReadonlyArray1<'py, u32>,
    delta: f32,
    in_batch: usize,
) -> PyResult<EciPy<'py>> {
    use pyo3::types::PyDictMethods;

    let dim = queries.as_array().ncols();
    if passages.as_array().ncols() != dim {
        return Err(value_error(format!(
            "queries have {dim} dimensions, passages {}",
            passages.as_array().ncols()
        )));
    }
    let q = queries
        .as_slice()
        .map_err(|_| value_error("queries must be C-contiguous float32 (n, dim)"))?;
    let p = passages
        .as_slice()
        .map_err(|_| value_error("passages must be C-contiguous float32 (n, dim)"))?;
    let input = crate::mining::EciInput {
        queries: q,
        passages: p,
        dim,
        qids: contiguous(&qids, "qids")?,
        pos_offsets: contiguous(&pos_offsets, "pos_offsets")?,
        pos: contiguous(&pos, "pos")?,
        neg_offsets: contiguous(&neg_offsets, "neg_offsets")?,
        neg: contiguous(&neg, "neg")?,
    };
    let t = run_detached(py, || {
        crate::mining::effective_contrastive_information(&input, delta, in_batch)
    })?;
    let d = pyo3::types::PyDict::new(py);
    for (k, v) in [
        ("information_capacity", t.information_capacity),
        ("signal", t.signal),
        ("safety", t.safety),
        ("efficiency", t.efficiency),
        ("eci", t.eci),
        ("positive_score", t.positive_score),
        ("baseline", t.baseline),
        ("negative_score", t.negative_score),
        ("hardness", t.hardness),
        ("negative_safety", t.negative_safety),
    ] {
        d.set_item(k, v.into_pyarray(py))?;
    }
    Ok(d)
}
