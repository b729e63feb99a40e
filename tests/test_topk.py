"""The exact top-k kernel: parity with numpy, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueneg import _core
from trueneg.exceptions import InputError
from trueneg.mine import exact_topk


def _numpy_topk(q: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    s = q @ c.T
    # best first, ties by lower index (lexsort's last key is the primary one)
    return np.stack([np.lexsort((np.arange(len(r)), -r))[:k] for r in s])


@settings(max_examples=30, deadline=None)
@given(
    nq=st.integers(1, 40),
    nc=st.integers(1, 300),
    d=st.integers(1, 40),
    seed=st.integers(0, 10**6),
    data=st.data(),
)
def test_equals_numpy(nq: int, nc: int, d: int, seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    c = rng.standard_normal((nc, d)).astype(np.float32)
    k = data.draw(st.integers(1, nc))
    idx, sc = exact_topk(q, c, k)
    ref = _numpy_topk(q, c, k)
    exact = q @ c.T
    # ties aside: the chosen scores equal numpy's top-k scores
    np.testing.assert_allclose(sc, np.take_along_axis(exact, ref, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(exact, idx, 1), sc, rtol=1e-4, atol=1e-4)
    assert (np.diff(sc, axis=1) <= 1e-6).all()


def test_large_blocks_and_threads() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((500, 64)).astype(np.float32)
    c = rng.standard_normal((9000, 64)).astype(np.float32)  # three corpus blocks
    idx, _ = exact_topk(q, c, 50)
    assert (idx == _numpy_topk(q, c, 50)).mean() > 0.999
    _core.set_serial(True)
    try:
        idx1, _ = exact_topk(q, c, 50)
    finally:
        _core.set_serial(False)
    assert np.array_equal(idx, idx1)


def test_bad_input() -> None:
    q = np.ones((2, 4), np.float32)
    c = np.ones((5, 4), np.float32)
    with pytest.raises(
        InputError, match="dimension mismatch: queries have 4 columns, the corpus 3"
    ):
        exact_topk(q, np.ones((5, 3), np.float32), 1)
    with pytest.raises(InputError, match=r"k must be in 1..=5 \(the corpus size\), got 6"):
        exact_topk(q, c, 6)
    with pytest.raises(InputError, match="the corpus is empty"):
        exact_topk(q, np.ones((0, 4), np.float32), 1)
    bad = c.copy()
    bad[3, 2] = np.inf
    with pytest.raises(InputError, match="non-finite value .* in row 3, column 2"):
        exact_topk(q, bad, 1)
    with pytest.raises(InputError, match="must be a float array"):
        exact_topk(q.astype(np.int32), c, 1)
    with pytest.raises(InputError, match="2-d"):
        exact_topk(np.ones(4, np.float32), c, 1)
    # non-contiguous input is copied, not rejected
    idx, _ = exact_topk(np.ones((4, 8), np.float32)[::2, ::2], c, 2)
    assert idx.shape == (2, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.topk_inner_product(np.ones((4, 8), np.float32)[:, ::2], c, 1)
