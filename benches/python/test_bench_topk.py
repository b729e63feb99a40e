"""Exact top-k: trueneg's fused kernel vs numpy (sgemm per 512-query block + argpartition + sort of
k), same run, with achieved GFLOP/s against this machine's measured sgemm peak.

    pytest benches/python/test_bench_topk.py --benchmark-enable -s          # 2,000 x 100,000 x 384
    TRUENEG_BENCH_TOPK="10000,200000,384,100" pytest benches/python/test_bench_topk.py --benchmark-enable -s
    TRUENEG_BENCH_TOPK_ANCHORS=1 ...   # also faiss IndexFlatIP and usearch exact (pip install faiss-cpu usearch)
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from trueneg.mine import exact_topk

NQ, NC, D, K = (
    int(x) for x in os.environ.get("TRUENEG_BENCH_TOPK", "2000,100000,384,100").split(",")
)
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data(NQ, NC, D)


def make_data(nq: int, nc: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm random queries and passages, fixed seed."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((nq, d), dtype=np.float32)
    c = rng.standard_normal((nc, d), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return q, c


def numpy_topk(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_i = np.empty((len(q), k), np.int64)
    out_s = np.empty((len(q), k), np.float32)
    for s in range(0, len(q), 512):
        sc = q[s : s + 512] @ c.T
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(sc, part, 1)
        order = np.argsort(-ps, axis=1)
        out_i[s : s + 512] = np.take_along_axis(part, order, 1)
        out_s[s : s + 512] = np.take_along_axis(ps, order, 1)
    return out_i, out_s


def sgemm_peak() -> float:
    """The best f32 GFLOP/s numpy's sgemm reaches here: best of 3 at each of several square sizes
    (the size at which the BLAS peaks differs between processors: on a 2-core Xeon 2,048 gave
    239 GFLOP/s and 6,144 306, so one size would understate the peak and flatter the kernel)."""
    best = 0.0
    rng = np.random.default_rng(1)
    for n in (2048, 3072, 4096, 6144):
        a = rng.standard_normal((n, n), dtype=np.float32)
        a @ a
        for _ in range(3):
            t = time.perf_counter()
            a @ a
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def faiss_topk(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    s, i = index.search(q, k)
    return i, s


def usearch_topk(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from usearch.index import search

    out_i = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), 500):  # all queries in one call runs out of memory (ANCHORS.md)
        m = search(c, q[s : s + 500], k, metric="ip", exact=True)
        out_i[s : s + 500] = m.keys
    return out_i, np.zeros((len(q), k), np.float32)


SIDES = ["trueneg", "numpy"] + [
    s for s in ("faiss", "usearch") if os.environ.get("TRUENEG_BENCH_TOPK_ANCHORS")
]


@pytest.mark.parametrize("side", SIDES)
def test_topk(
    benchmark: pytest.FixtureRequest, data: tuple[np.ndarray, np.ndarray], side: str
) -> None:
    q, c = data
    fn = {"trueneg": exact_topk, "numpy": numpy_topk, "faiss": faiss_topk, "usearch": usearch_topk}[
        side
    ]
    times = []

    def once() -> None:
        t = time.perf_counter()
        RESULTS[side + "_idx"] = fn(q, c, K)[0]  # type: ignore[assignment]
        times.append(time.perf_counter() - t)

    benchmark.pedantic(once, rounds=1 if side in ("faiss", "usearch") else 2, iterations=1)
    RESULTS[side] = min(times)
    for other in ("faiss", "usearch"):
        if side == other:
            agree = float((RESULTS[other + "_idx"] == RESULTS["trueneg_idx"]).mean())  # type: ignore[operator]
            print(
                f"\n{other}: {RESULTS[other]:.2f} s; trueneg {RESULTS[other] / RESULTS['trueneg']:.2f}x faster; "
                f"same indices {agree:.4f}"
            )
    if side == "numpy":
        agree = float((RESULTS["trueneg_idx"] == RESULTS["numpy_idx"]).mean())  # type: ignore[operator]
        peak = sgemm_peak()
        flops = 2 * NQ * NC * D / 1e9
        print(
            f"\ntop-{K}, {NQ:,} x {NC:,} x {D}: trueneg {RESULTS['trueneg']:.2f} s "
            f"({flops / RESULTS['trueneg']:.0f} GFLOP/s), numpy {RESULTS['numpy']:.2f} s "
            f"({flops / RESULTS['numpy']:.0f} GFLOP/s); {RESULTS['numpy'] / RESULTS['trueneg']:.2f}x; "
            f"numpy sgemm peak {peak:.0f} GFLOP/s -> trueneg at {flops / RESULTS['trueneg'] / peak:.0%}; "
            f"same indices {agree:.4f}"
        )
