"""Hard-negative mining. So far: the exact inner-product top-k kernel (Rust: blocked GEMM with a
fused per-row top-k, no query x corpus score matrix in memory). The embedding model and the
positive-aware selection are the next steps (see the issue tracker)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueneg import _core
from trueneg.exceptions import InputError


def _matrix(x: object, name: str) -> NDArray[np.float32]:
    a = np.asarray(x)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-d (rows, dim) array, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64, np.float16):
        raise InputError(f"{name} must be a float array, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)  # copies only when needed


def exact_topk(
    queries: object, corpus: object, k: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The ``k`` corpus rows with the highest inner product for each query row: (indices int64
    (n, k), scores float32 (n, k)), best first, ties broken by the lower index. Normalise the rows
    first for cosine similarity."""
    q, c = _matrix(queries, "queries"), _matrix(corpus, "corpus")
    if q.shape[1] != c.shape[1]:
        raise InputError(
            f"dimension mismatch: queries have {q.shape[1]} columns, the corpus {c.shape[1]}"
        )
    try:
        return _core.topk_inner_product(q, c, int(k))
    except _core.CoreValueError as e:
        raise InputError(str(e)) from None


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

    def negatives(self, q: int) -> list[int]:
        return self.ids[self.offsets[q] : self.offsets[q + 1]].tolist()

    def short(self, num_negatives: int) -> NDArray[np.int64]:
        """Queries with fewer eligible candidates than asked for (never filled with random ones)."""
        return np.flatnonzero(self.eligible < num_negatives)


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
) -> Selection:
    """Hard negatives for each query from exact search: positives (and, with ``cluster`` from dedup,
    their near duplicates) masked, the rank window ``range_min..range_max``, score bounds, a margin
    to the lowest positive score (relative 0.05 = NV-Retriever's TopK-PercPos, sign-safe), then the
    top ``num_negatives`` or a seeded random sample. Candidates above the margin bound but not above
    the positive score come back as the ambiguous band, for the judge."""
    q, c = _matrix(queries, "queries"), _matrix(corpus, "corpus")
    if len(positives) != len(q):
        raise InputError(f"{len(q)} queries but {len(positives)} positive lists")
    k = min(len(c), range_max + max((len(p) for p in positives), default=0))
    cand_ids, cand_scores = exact_topk(q, c, k)
    pos_off = np.concatenate([[0], np.cumsum([len(p) for p in positives])]).astype(np.int64)
    flat = np.asarray([x for p in positives for x in p], np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= len(c)):
        raise InputError(f"positive ids must be corpus rows 0..{len(c) - 1}")
    owner = np.repeat(np.arange(len(q)), np.diff(pos_off))
    pos_scores = (
        np.einsum("ij,ij->i", q[owner], c[flat]).astype(np.float32)
        if len(flat)
        else np.zeros(0, np.float32)
    )
    (off, ids, sc), eligible, (boff, bids, bsc) = _core.select_negatives(
        cand_ids,
        cand_scores,
        pos_off,
        flat.astype(np.uint32),
        pos_scores,
        num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        seed=seed,
        cluster=None if cluster is None else np.ascontiguousarray(cluster, np.uint32),
    )
    return Selection(off, ids, sc, eligible, boff, bids, bsc)
