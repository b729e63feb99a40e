"""Hard-negative mining. So far: the exact inner-product top-k kernel (Rust: blocked GEMM with a
fused per-row top-k, no query x corpus score matrix in memory). The embedding model and the
positive-aware selection are the next steps (see the issue tracker)."""

from __future__ import annotations

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
