"""Hard-negative mining: candidate search, exact (Rust: blocked GEMM with a fused per-row top-k, no
query x corpus score matrix in memory; f32 or f16 rows) or approximate (usearch HNSW with f16/i8
quantisation, a saved and memory-mapped index, candidates re-scored exactly), then the
positive-aware selection (Rust) and ``mine_collection`` over a collection."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from trueneg import _core
from trueneg.exceptions import InputError

if TYPE_CHECKING:
    from trueneg.engine import Engine

Matrix = NDArray[np.float32] | NDArray[np.float16]


def _matrix(x: object, name: str) -> Matrix:
    """A C-contiguous (rows, dim) float32 or float16 array (float16 stays float16: half the
    memory; the kernel widens it a block at a time). Copies only when needed."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-d (rows, dim) array, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64, np.float16):
        raise InputError(f"{name} must be a float array, got dtype {a.dtype}")
    if a.dtype == np.float16:
        return np.ascontiguousarray(a, dtype=np.float16)
    return np.ascontiguousarray(a, dtype=np.float32)


def _same_dim(q: Matrix, c: Matrix) -> None:
    if q.shape[1] != c.shape[1]:
        raise InputError(
            f"dimension mismatch: queries have {q.shape[1]} columns, the corpus {c.shape[1]}"
        )


def exact_topk(
    queries: object, corpus: object, k: int, *, method: str = "auto"
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The ``k`` corpus rows with the highest inner product for each query row: (indices int64
    (n, k), scores float32 (n, k)), best first, ties broken by the lower index. Rows may be
    float32 or float16. Normalise the rows first for cosine similarity.

    ``method``: ``gemm`` (f32 gemm blocks with the top-k fused in), ``int8`` (an int8 prefilter
    on AVX-512 VNNI with a rigorous error bound per score, then exact f32 re-scoring of the
    candidates: the same exact answer, ~4x fewer cycles per multiply-add), or ``auto`` (int8 when
    the CPU has it and the search is large enough to gain: at least 2048 corpus rows and 32 k,
    64 queries, 64 dims; else gemm). float16 rows take either path, widened to
    float32 as they are read: the scores are the exact float32 inner products of the widened rows."""
    q, c = _matrix(queries, "queries"), _matrix(corpus, "corpus")
    _same_dim(q, c)
    try:
        return _core.topk_inner_product(q, c, int(k), method)
    except _core.CoreValueError as e:
        raise InputError(str(e)) from None


@dataclass(frozen=True)
class AnnConfig:
    """usearch HNSW settings. ``dtype`` is the quantisation of the stored vectors (f32, f16, bf16,
    i8); candidates are re-scored exactly in float32 afterwards, so quantisation only affects
    which candidates are found, never their scores. ``index_path`` saves the index and, when it
    exists for the same corpus and settings, memory-maps it instead of building it again."""

    dtype: str = "f16"
    connectivity: int = 32
    expansion_add: int = 128
    expansion_search: int = 256
    index_path: str | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in ("f32", "f16", "bf16", "i8"):
            raise InputError(f"ann dtype must be f32, f16, bf16 or i8, got {self.dtype!r}")
        for name in ("connectivity", "expansion_add", "expansion_search"):
            if getattr(self, name) < 2:
                raise InputError(f"ann {name} must be at least 2")


def _corpus_fingerprint(c: Matrix, cfg: AnnConfig) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(repr((c.shape, str(c.dtype), cfg.dtype, cfg.connectivity, cfg.expansion_add)).encode())
    h.update(np.ascontiguousarray(c).data.cast("B"))
    return h.hexdigest()


def ann_index(corpus: object, config: AnnConfig | None = None) -> Any:
    """A usearch inner-product HNSW index over the corpus rows (keys = row numbers): loaded
    (memory-mapped) from ``config.index_path`` when it was saved for this very corpus and these
    settings, else built (and saved there, atomically)."""
    try:
        from usearch.index import Index
    except ImportError:
        raise InputError("the ANN search needs usearch: pip install 'trueneg[ann]'") from None
    import json
    import os

    cfg = config or AnnConfig()
    c = _matrix(corpus, "corpus")
    if len(c) == 0:
        raise InputError("the corpus is empty")
    if not np.isfinite(c).all():
        raise InputError("corpus has a non-finite value (NaN or inf)")
    fp = _corpus_fingerprint(c, cfg)
    path = Path(cfg.index_path) if cfg.index_path else None
    meta = path.with_name(path.name + ".json") if path else None
    if (
        path
        and meta
        and path.exists()
        and meta.exists()
        and json.loads(meta.read_text()).get("fingerprint") == fp
    ):
        index = Index.restore(str(path), view=True)
        if index is not None:
            index.expansion_search = cfg.expansion_search  # type: ignore[misc]  # settable in usearch
            return index
    index = Index(
        ndim=c.shape[1],
        metric="ip",
        dtype=cfg.dtype,
        connectivity=cfg.connectivity,
        expansion_add=cfg.expansion_add,
        expansion_search=cfg.expansion_search,
    )
    index.add(np.arange(len(c), dtype=np.uint64), c, threads=cfg.threads)
    if path and meta:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        index.save(str(tmp))
        os.replace(tmp, path)
        meta.write_text(json.dumps({"fingerprint": fp, "rows": len(c), "dim": c.shape[1]}))
    return index


def ann_topk(
    queries: object, corpus: object, k: int, config: AnnConfig | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Approximate top-``k`` by inner product through usearch HNSW, same output as
    :func:`exact_topk` (ids -1 where the graph returned fewer than ``k``). The candidates found
    are re-scored exactly in float32 and re-sorted, so every score is the true inner product."""
    cfg = config or AnnConfig()
    q, c = _matrix(queries, "queries"), _matrix(corpus, "corpus")
    _same_dim(q, c)
    if not 1 <= k <= len(c):
        raise InputError(f"k must be in 1..={len(c)} (the corpus size), got {k}")
    if not np.isfinite(q).all():
        raise InputError("queries have a non-finite value (NaN or inf)")
    return ann_search(ann_index(c, cfg), q, c, k, cfg)


def ann_search(
    index: Any, q: Matrix, c: Matrix, k: int, cfg: AnnConfig
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """:func:`ann_topk` with a built (or loaded) ``index`` of the corpus ``c``: candidates from
    the graph, re-scored exactly in float32 from ``c``'s rows, sorted by (score, lower id)."""
    index.expansion_search = max(cfg.expansion_search, k)
    m = index.search(q, k, threads=cfg.threads)
    keys = np.asarray(m.keys, dtype=np.int64).reshape(len(q), k)
    counts = np.asarray(m.counts).reshape(len(q))
    keys[np.arange(k)[None, :] >= counts[:, None]] = -1
    scores = np.full((len(q), k), -np.inf, np.float32)
    step = max(1, (64 << 20) // (4 * k * c.shape[1]))  # gathered rows per chunk: 64 MiB
    for a in range(0, len(q), step):
        ids = keys[a : a + step]
        rows = np.asarray(c[np.maximum(ids, 0)]).astype(np.float32, copy=False)
        s = np.einsum("nkd,nd->nk", rows, q[a : a + step].astype(np.float32, copy=False))
        scores[a : a + step] = np.where(ids >= 0, s, -np.inf)
    order = np.lexsort((np.where(keys >= 0, keys, np.iinfo(np.int64).max), -scores), axis=1)
    keys = np.take_along_axis(keys, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    return keys, scores


@dataclass
class Selection:
    """Chosen negatives per query (CSR), eligible counts and the ambiguous band."""

    offsets: NDArray[np.int64]
    ids: NDArray[np.uint32]
    scores: NDArray[np.float32]
    eligible: NDArray[np.uint32]
    band_offsets: NDArray[np.int64]
    band_ids: NDArray[np.uint32]
    band_scores: NDArray[np.float32]
    #: candidates per query that the score bounds or the margins dropped (positives and their
    #: duplicates not counted), over all the candidates (every trueneg path fills it, streamed
    #: blocks and Ray shards included; None only in a Selection built by hand without it)
    out_of_bounds: NDArray[np.uint32] | None = None

    def negatives(self, q: int) -> list[int]:
        ids: list[int] = self.ids[self.offsets[q] : self.offsets[q + 1]].tolist()
        return ids

    def short(self, num_negatives: int) -> NDArray[np.int64]:
        """Queries with fewer eligible candidates than asked for (never filled with random ones)."""
        return np.flatnonzero(self.eligible < num_negatives)


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """The candidate search and selection settings static mining (:class:`MineConfig`) and
    dynamic negatives (:class:`trueneg.train.DynamicConfig`) share, with sentence-transformers'
    ``mine_hard_negatives`` names and defaults (see :func:`select_negatives`), checked on
    construction."""

    range_min: int = 0
    range_max: int = 100
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    #: NV-Retriever's TopK-PercPos: keep a negative only 5% of the positive score below it (the
    #: false-negative guard; None turns it off)
    relative_margin: float | None = 0.05
    #: top (the highest-scoring survivors) or random (a seeded sample of them)
    sampling: str = "top"
    #: exact (the Rust kernel) or ann (usearch HNSW, candidates re-scored exactly)
    search: str = "exact"
    #: usearch settings with search = "ann" (:class:`AnnConfig` fields)
    ann: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from trueneg.config import at_least, from_table, one_of

        at_least("range_min", self.range_min, 0)
        at_least("range_max", self.range_max, 1)
        if self.range_min >= self.range_max:
            raise InputError(
                f"range_min ({self.range_min}) must be below range_max ({self.range_max})"
            )
        at_least("absolute_margin", self.absolute_margin, 0.0, optional=True)
        at_least("relative_margin", self.relative_margin, 0.0, optional=True)
        one_of("sampling", self.sampling, ("top", "random"))
        one_of("search", self.search, ("exact", "ann"))
        if self.ann is not None:
            from_table(AnnConfig, self.ann, "ann")


@dataclasses.dataclass(frozen=True)
class MineConfig(SelectionConfig):
    """The settings of mining: the selection (:class:`SelectionConfig`) plus the number of
    negatives and the sampling seed. ``keep_old`` appends the mined negatives after the old ones;
    ``memory_limit`` bounds the run's memory (a size such as ``"8GB"``; ``None``: half of the
    machine's memory): queries are mined in blocks and the corpus searched in shards sized to it
    (:mod:`trueneg.streamed`), with the same output for any limit."""

    num_negatives: int = 7
    seed: int = 0
    keep_old: bool = False
    memory_limit: str | None = None

    def __post_init__(self) -> None:
        from trueneg.config import at_least
        from trueneg.streamed import parse_memory

        parse_memory(self.memory_limit)
        at_least("num_negatives", self.num_negatives, 1)
        super().__post_init__()

    def selection(self) -> dict[str, Any]:
        """Keyword arguments of :func:`select_negatives`."""
        d = dataclasses.asdict(self)
        d.pop("keep_old")
        d.pop("memory_limit")
        return d


def select_negatives(
    queries: object,
    corpus: object,
    positives: list[list[int]],
    *,
    num_negatives: int = 7,
    range_min: int = 0,
    range_max: int = 100,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    seed: int = 0,
    cluster: NDArray[np.uint32] | None = None,
    search: str = "exact",
    ann: AnnConfig | dict[str, Any] | None = None,
    method: str = "auto",
    query_offset: int = 0,
) -> Selection:
    """Hard negatives for each query from exact search, with sentence-transformers'
    ``mine_hard_negatives`` conventions: a pool of the top ``range_max`` + (most positives of any
    query) candidates; positives (and, with ``cluster`` from dedup, their near duplicates) masked;
    score bounds and a margin to the lowest positive score (relative 0.05 = NV-Retriever's
    TopK-PercPos, sign-safe); of the survivors the first ``range_max`` by score, the first
    ``range_min`` skipped; then the top ``num_negatives`` or a seeded random sample. Candidates above the margin bound but not above
    the positive score come back as the ambiguous band, for the judge. ``search="ann"`` finds the
    candidates with usearch HNSW (settings in ``ann``) instead of exact search."""
    q, c = _matrix(queries, "queries"), _matrix(corpus, "corpus")
    _same_dim(q, c)
    if len(positives) != len(q):
        raise InputError(f"{len(q)} queries but {len(positives)} positive lists")
    k = min(len(c), range_max + max((len(p) for p in positives), default=0))
    if search == "exact":
        cand_ids, cand_scores = exact_topk(q, c, k, method=method)
    elif search == "ann":
        cfg = AnnConfig(**ann) if isinstance(ann, dict) else ann
        cand_ids, cand_scores = ann_topk(q, c, k, cfg)
    else:
        raise InputError(f"search must be exact or ann, got {search!r}")
    pos_off, flat = flat_positives(positives, len(c))
    return select_candidates(
        cand_ids,
        cand_scores,
        q,
        c,
        pos_off,
        flat,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        seed=seed,
        cluster=cluster,
        query_offset=query_offset,
    )


def flat_positives(
    positives: list[list[int]], n_corpus: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(offsets, flat ids) of the positive lists, the ids checked to be corpus rows."""
    pos_off = np.concatenate([[0], np.cumsum([len(p) for p in positives])]).astype(np.int64)
    flat = np.asarray([x for p in positives for x in p], np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= n_corpus):
        raise InputError(f"positive ids must be corpus rows 0..{n_corpus - 1}")
    return pos_off, flat


def positive_scores(
    q: np.ndarray, corpus: np.ndarray, pos_off: NDArray[np.int64], flat: NDArray[np.int64]
) -> NDArray[np.float32]:
    """Each query row's inner product with each of its positives (CSR ``pos_off``/``flat``), in
    f32; the corpus rows are read in sorted order (cheap on a memory-mapped corpus)."""
    if not len(flat):
        return np.zeros(0, np.float32)
    owner = np.repeat(np.arange(len(q)), np.diff(pos_off))
    order = np.argsort(flat, kind="stable")
    rows = np.empty((len(flat), corpus.shape[1]), np.float32)
    rows[order] = corpus[flat[order]]
    out: NDArray[np.float32] = np.einsum("ij,ij->i", q[owner].astype(np.float32), rows).astype(
        np.float32
    )
    return out


def select_candidates(
    cand_ids: NDArray[np.int64],
    cand_scores: NDArray[np.float32],
    q: np.ndarray,
    corpus: np.ndarray,
    pos_off: NDArray[np.int64],
    flat: NDArray[np.int64],
    *,
    num_negatives: int,
    cluster: NDArray[np.uint32] | None = None,
    query_offset: int = 0,
    **selection: Any,
) -> Selection:
    """The positive-aware selection (Rust) over the top-k candidates of the queries ``q``: the
    step :func:`select_negatives` and each block of :func:`trueneg.streamed.select_streamed`
    share. ``selection``: range_min, range_max, max_score, min_score, absolute_margin,
    relative_margin, sampling, seed."""
    (off, ids, sc), eligible, (boff, bids, bsc), dropped = _core.select_negatives(
        cand_ids,
        cand_scores,
        pos_off,
        flat.astype(np.uint32),
        positive_scores(q, corpus, pos_off, flat),
        num_negatives,
        cluster=None if cluster is None else np.ascontiguousarray(cluster, np.uint32),
        query_offset=query_offset,
        **selection,
    )
    return Selection(off, ids, sc, eligible, boff, bids, bsc, dropped)


def query_positives(qids: Any, positives: list[list[int]]) -> list[list[int]]:
    """Each example's positives widened to every positive of its query (over all its examples):
    a BEIR folder or a file with one example per (query, positive) must not mine one example's
    positive as another's negative."""
    per: dict[int, list[int]] = {}
    for q, pos in zip(np.asarray(qids).tolist(), positives, strict=True):
        per.setdefault(q, []).extend(pos)
    merged = {q: list(dict.fromkeys(p)) for q, p in per.items()}
    return [merged[q] for q in np.asarray(qids).tolist()]


def exact_copies(coll: Any) -> NDArray[np.uint32]:
    """Cluster id per passage (pid order): the lowest pid with the same title and text (its
    content hash), so an exact copy of a positive under another docid is masked like the
    positive itself, with or without a dedup run."""
    h = coll.passages["content_hash"].combine_chunks()
    keys = np.frombuffer(h.buffers()[1], dtype="V16", count=len(h), offset=h.offset * 16)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return np.asarray(first[inverse.ravel()], np.uint32)


def mine_collection(
    path: str | Path,
    out: str | Path,
    query_embeddings: object,
    passage_embeddings: object,
    *,
    keep_old: bool = False,
    overwrite: bool = False,
    engine: Engine | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    memory_limit: str | int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Mine new negatives for every example of a collection from precomputed embeddings (queries
    in qid order, passages in pid order; normalise them for cosine) and write a new collection:
    negatives replaced (or, with ``keep_old``, appended after the old ones, without repeats), their
    scores stored, the ambiguous band written to ``band.parquet`` for the judge. ``engine``
    runs the selection (default: this process; the Ray engine spreads it over workers).
    In this process the queries are mined in blocks under ``memory_limit`` (see
    :func:`trueneg.streamed.select_streamed`; the embeddings may be memory-mapped ``.npy``
    arrays); ``work_dir`` keeps a checkpoint per block, so a killed call resumes there with
    identical output. Settings not given take :class:`MineConfig`'s defaults, the CLI's
    (``relative_margin`` 0.05)."""

    import pyarrow as pa

    from trueneg._io import check_output, prepare_output
    from trueneg.collection import (
        EXAMPLE_SCHEMA,
        Collection,
        refresh_extras,
    )
    from trueneg.engine import LocalEngine

    coll = Collection.load(path)
    prepare_output(out, [coll.path], overwrite=overwrite)
    if work_dir is not None:
        check_output(work_dir, [coll.path, out])
    defaults = MineConfig().selection()
    kw = {**defaults, **kw}
    qe, pe = (
        _matrix(query_embeddings, "query embeddings"),
        _matrix(passage_embeddings, "passage embeddings"),
    )
    if len(qe) != len(coll.queries) or len(pe) != len(coll.passages):
        raise InputError(
            f"embeddings for {len(qe)} queries and {len(pe)} passages; the collection has "
            f"{len(coll.queries)} and {len(coll.passages)}"
        )
    ex = coll.examples
    qids = ex["qid"].to_numpy()
    positives = query_positives(qids, ex["positives"].to_pylist())
    if kw.get("cluster") is None:
        kw["cluster"] = exact_copies(coll)
    if engine is None or isinstance(engine, LocalEngine):
        from trueneg.streamed import select_streamed

        sel = select_streamed(
            qe, pe, positives, query_rows=qids, work_dir=work_dir, memory_limit=memory_limit, **kw
        )
    else:
        sel = engine.select(np.asarray(qe[qids]), pe, positives, **kw)
    old = ex["negatives"].to_pylist()
    new_neg, new_scores = [], []
    for i in range(len(ex)):
        ids = sel.ids[sel.offsets[i] : sel.offsets[i + 1]].tolist()
        sc = sel.scores[sel.offsets[i] : sel.offsets[i + 1]].tolist()
        if keep_old:
            have = set(old[i])
            extra = [(a, b) for a, b in zip(ids, sc, strict=True) if a not in have]
            ids = old[i] + [a for a, _ in extra]
            sc = [float("nan")] * len(old[i]) + [b for _, b in extra]
        new_neg.append(ids)
        new_scores.append(sc)
    # the positives' scores by the same model, so a mined collection's scores compare
    pos_lists = ex["positives"].combine_chunks()
    flat_pos = pos_lists.flatten().to_numpy().astype(np.int64)
    offsets = pos_lists.offsets.to_numpy().astype(np.int32)
    offsets = offsets - offsets[0]
    owner = np.repeat(qids.astype(np.int64), np.diff(offsets))
    pos_sc = np.einsum(
        "ij,ij->i", qe[owner].astype(np.float32), pe[flat_pos].astype(np.float32)
    ).astype(np.float64)
    pos_scores = pa.ListArray.from_arrays(pa.array(offsets), pa.array(pos_sc, pa.float64()))
    table = pa.Table.from_arrays(
        [
            ex["qid"],
            ex["positives"],
            pa.array(new_neg, pa.list_(pa.uint32())),
            pos_scores,
            pa.array(new_scores, pa.list_(pa.float64())),
            ex["extra"],
            ex["source"],
            ex["line"],
        ],
        schema=EXAMPLE_SCHEMA,
    )
    changed = np.fromiter((a != b for a, b in zip(old, new_neg, strict=True)), bool, count=len(old))
    table, fields = refresh_extras(coll, table, changed)
    band_ex = np.repeat(np.arange(len(ex)), np.diff(sel.band_offsets))
    band = pa.table(
        {
            "example": band_ex.astype(np.int64),
            "qid": qids[band_ex].astype(np.uint32),
            "pid": sel.band_ids,
            "score": sel.band_scores,
        }
    )
    short = sel.short(kw.get("num_negatives", 7))
    report = {
        "examples": len(ex),
        "negatives": len(sel.ids),
        "band": len(sel.band_ids),
        "short_examples": len(short),
        "keep_old": keep_old,
        "example_fields": fields,
        "params": {
            k: (
                dataclasses.asdict(v)
                if dataclasses.is_dataclass(v) and not isinstance(v, type)
                else v
            )
            for k, v in kw.items()
            if not isinstance(v, np.ndarray)
        },
    }
    coll.derive(out, table, step="mine", params=report, tables={"band": band}, overwrite=overwrite)
    return report
