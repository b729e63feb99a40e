"""The exact top-k kernel: parity with numpy, bad input."""

from __future__ import annotations

from pathlib import Path

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


def _reference_select(q, c, positives, n, rmin, rmax, rel):  # type: ignore[no-untyped-def]
    """A plain numpy/Python reading of sentence-transformers' rules: a pool of the top
    range_max + max_positives, positives masked, margin filter, then the first range_max survivors
    by score, the first range_min of them skipped."""
    out = []
    s = q @ c.T
    k = min(len(c), rmax + max(len(p) for p in positives))
    for i, pos in enumerate(positives):
        ref = min(s[i, p] for p in pos)
        bound = ref - abs(ref) * rel if rel is not None else np.inf
        order = np.lexsort((np.arange(len(c)), -s[i]))[:k]
        survivors = [j for j in order if j not in pos and s[i, j] <= bound][:rmax]
        out.append(survivors[rmin:][:n])
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10**6), rmin=st.integers(0, 5), rel=st.sampled_from([None, 0.0, 0.05, 0.3])
)
def test_selection_equals_reference(seed: int, rmin: int, rel: float | None) -> None:
    from trueneg.mine import select_negatives

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((12, 16)).astype(np.float32)
    c = rng.standard_normal((200, 16)).astype(np.float32)
    positives = [
        sorted(set(rng.integers(0, 200, size=rng.integers(1, 4)).tolist())) for _ in range(12)
    ]
    sel = select_negatives(
        q, c, positives, num_negatives=5, range_min=rmin, range_max=40, relative_margin=rel
    )
    ref = _reference_select(q, c, positives, 5, rmin, 40, rel)
    for i in range(12):
        assert sel.negatives(i) == ref[i]
        assert not set(sel.negatives(i)) & set(positives[i])


def test_selection_random_band_and_short() -> None:
    from trueneg.mine import select_negatives

    rng = np.random.default_rng(0)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    c = rng.standard_normal((50, 8)).astype(np.float32)
    pos = [
        [int(np.argmax(c @ q[i]))] for i in range(5)
    ]  # each query's best passage is its positive
    a = select_negatives(q, c, pos, num_negatives=3, sampling="random", seed=7)
    b = select_negatives(q, c, pos, num_negatives=3, sampling="random", seed=7)
    assert np.array_equal(a.ids, b.ids)
    band = select_negatives(q, c, pos, num_negatives=3, relative_margin=0.5)
    assert len(band.band_ids) > 0  # candidates close under the positive go to the judge
    few = select_negatives(q, c, pos, num_negatives=30, range_max=10)
    assert few.short(30).tolist() == [0, 1, 2, 3, 4] and all(
        len(few.negatives(i)) == 10 for i in range(5)
    )
    with pytest.raises(InputError, match="positive ids must be corpus rows"):
        select_negatives(q, c, [[99]] * 5)


def test_random_sampling_in_blocks_equals_one_call() -> None:
    """``query_offset``: blocks of queries (a streamed or resumed run) draw what one call draws."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    c = rng.standard_normal((300, 16)).astype(np.float32)
    ids, sc = exact_topk(q, c, 60)
    pos_off = np.arange(41, dtype=np.int64)
    pos = ids[:, 0].astype(np.uint32)  # each query's best passage is its positive
    pos_sc = sc[:, 0].copy()

    def select(a: int, b: int, offset: int) -> np.ndarray:
        (_, chosen, _), _, _, _ = _core.select_negatives(
            np.ascontiguousarray(ids[a:b]),
            np.ascontiguousarray(sc[a:b]),
            pos_off[a : b + 1] - a,
            pos[a:b],
            pos_sc[a:b],
            5,
            sampling="random",
            seed=9,
            query_offset=offset,
        )
        return chosen

    whole = select(0, 40, 0)
    blocks = np.concatenate([select(a, a + 7, a) for a in range(0, 40, 7)])
    assert np.array_equal(whole, blocks)
    unshifted = np.concatenate([select(a, min(a + 7, 40), 0) for a in range(0, 40, 7)])
    assert not np.array_equal(whole, unshifted)  # the offset is what makes them equal


@pytest.mark.parametrize("search", ["exact", "ann"])
def test_mine_collection_cli(data_dir: Path, tmp_path: Path, search: str) -> None:
    import os
    import subprocess
    import sys

    from trueneg import Collection, ingest

    coll = ingest([data_dir / "beir-cisi"], tmp_path / "c")
    rng = np.random.default_rng(0)
    pe = rng.standard_normal((len(coll.passages), 32)).astype(np.float32)
    qe = rng.standard_normal((len(coll.queries), 32)).astype(np.float32)
    # make each query close to its first positive so margins matter
    pos0 = [p[0] for p in coll.examples["positives"].to_pylist()]
    qids = coll.examples["qid"].to_pylist()
    qe[qids] = pe[pos0] + 0.1 * qe[qids]
    if search == "ann":
        pytest.importorskip("usearch")
        pe = pe.astype(np.float16)  # f16 embeddings are taken as they are
    np.save(tmp_path / "q.npy", qe)
    np.save(tmp_path / "p.npy", pe)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "mine",
            str(coll.path),
            "--query-embeddings",
            str(tmp_path / "q.npy"),
            "--passage-embeddings",
            str(tmp_path / "p.npy"),
            "-o",
            str(tmp_path / "m"),
            "--num-negatives",
            "5",
            "--search",
            search,
            "--ann-index",
            str(tmp_path / "idx.usearch"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    m = Collection.load(tmp_path / "m")
    negs = m.examples["negatives"].to_pylist()
    pos = m.examples["positives"].to_pylist()
    assert all(len(n) <= 5 and not set(n) & set(p) for n, p in zip(negs, pos, strict=True))
    full = sum(len(n) == 5 for n in negs)
    assert full > 0
    # the rest are reported short, never filled with random passages
    assert f"{len(negs) - full:,} examples short of 5" in r.stdout
    assert m.manifest["steps"][-1]["step"] == "mine"
    assert (tmp_path / "m" / "band.parquet").exists()
    assert (tmp_path / "idx.usearch").exists() == (search == "ann")


def test_float16_rows() -> None:
    """f16 rows give exactly what f32 rows holding the same (widened) values give, across the
    kernel's f16 rounds, and bad f16 values are named by row and column."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((130, 24)).astype(np.float16)
    c = rng.standard_normal((40_000, 24)).astype(np.float16)  # more than one f16 round
    want = exact_topk(q.astype(np.float32), c.astype(np.float32), 20)
    for qq in (q, q.astype(np.float32)):
        got = exact_topk(qq, c, 20)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    bad = c.copy()
    bad[7, 5] = np.nan
    with pytest.raises(InputError, match="non-finite value .* in row 7, column 5"):
        exact_topk(q, bad, 3)


@pytest.mark.skipif(
    "avx512vnni" not in _core.cpu_features(), reason="the int8 method needs AVX-512 VNNI"
)
def test_int8_method_is_exact() -> None:
    """The int8 prefilter returns the exact top-k: the same indices as gemm and the exact f32
    scores, on clustered data with near ties, a duplicate row and a zero query."""
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((20, 128)).astype(np.float32)
    c = centers[rng.integers(0, 20, 30_000)] + 0.2 * rng.standard_normal((30_000, 128)).astype(
        np.float32
    )
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    c[1] = c[0]
    q = c[rng.integers(0, 30_000, 300)] + 0.05 * rng.standard_normal((300, 128)).astype(np.float32)
    q[7] = 0.0
    gi, gs = exact_topk(q, c, 100, method="gemm")
    ii, is_ = exact_topk(q, c, 100, method="int8")
    np.testing.assert_allclose(is_, gs, atol=1e-5)
    exact = np.take_along_axis(q @ c.T, ii, 1)
    np.testing.assert_allclose(is_, exact, atol=1e-5)
    # the same sets, except near ties at the k-th place (rounding of two summation orders)
    full = q @ c.T
    for r in range(len(q)):
        for j in set(ii[r].tolist()) ^ set(gi[r].tolist()):
            assert abs(full[r, j] - gs[r, -1]) < 1e-5, (r, j)
    assert (ii == gi).mean() > 0.99
    assert np.array_equal(ii[7], np.arange(100)) and not is_[7].any()
    with pytest.raises(InputError, match="method must be auto, gemm or int8"):
        exact_topk(q, c, 5, method="int4")
    # f16 rows take the int8 path too: the exact scores of the rows widened to f32
    c16, q16 = c.astype(np.float16), q.astype(np.float16)
    hi, hs = exact_topk(q16, c16, 100, method="int8")
    wi, ws = exact_topk(q16.astype(np.float32), c16.astype(np.float32), 100, method="int8")
    assert np.array_equal(hi, wi) and np.array_equal(hs, ws)
