"""Fix benchmark: 680K synthetic examples (1 positive + 25 negatives each, 5% with 1-3 false
negatives), relabel + write the fixed examples as Parquet, trueneg (Rust kernel over CSR buffers)
vs a plain-Python implementation of the same strategy, same run.

    pytest benches/python/test_bench_fix.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trueneg import Collection, judgments
from trueneg.collection import (
    EXAMPLE_SCHEMA,
    FORMAT_NAME,
    FORMAT_VERSION,
    PASSAGE_SCHEMA,
    QUERY_SCHEMA,
    parquet_options,
    write_manifest,
)
from trueneg.fix import apply_strategy

N = int(os.environ.get("TRUENEG_BENCH_FIX_N", "680000"))
NEG, POOL = 25, 200_000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Collection, pa.Table]:
    return make_synthetic(tmp_path_factory.mktemp("fix"))


def make_synthetic(d: Path, n: int = N) -> tuple[Collection, pa.Table]:
    """A collection of ``n`` examples (1 positive + 25 negatives from a 200k pool) and judgments
    flagging 1-3 negatives in 5% of them."""
    N = n
    rng = np.random.default_rng(0)
    pids = rng.integers(0, POOL, size=(N, 1 + NEG)).astype(np.uint32)
    passages = pa.table(
        {
            "pid": pa.array(np.arange(POOL, dtype=np.uint32)),
            "docid": pa.array([str(i) for i in range(POOL)]),
            "title": pa.nulls(POOL, pa.string()),
            "text": pa.array([f"passage {i}" for i in range(POOL)]),
            "extra": pa.nulls(POOL, pa.string()),
            "content_hash": pa.array(
                [i.to_bytes(16, "little") for i in range(POOL)], pa.binary(16)
            ),
        },
        schema=PASSAGE_SCHEMA,
    )
    queries = pa.table(
        {
            "qid": pa.array(np.arange(N, dtype=np.uint32)),
            "query_id": pa.array([str(i) for i in range(N)]),
            "text": pa.array([f"q{i}" for i in range(N)]),
            "subset": pa.array(["s"] * N),
            "extra": pa.nulls(N, pa.string()),
        },
        schema=QUERY_SCHEMA,
    )
    off1 = pa.array(np.arange(N + 1, dtype=np.int32))
    offn = pa.array((np.arange(N + 1) * NEG).astype(np.int32))
    examples = pa.table(
        {
            "qid": pa.array(np.arange(N, dtype=np.uint32)),
            "positives": pa.ListArray.from_arrays(off1, pa.array(pids[:, 0])),
            "negatives": pa.ListArray.from_arrays(offn, pa.array(pids[:, 1:].ravel())),
            "pos_scores": pa.nulls(N, pa.list_(pa.float64())),
            "neg_scores": pa.nulls(N, pa.list_(pa.float64())),
            "extra": pa.nulls(N, pa.string()),
            "source": pa.array(np.zeros(N, np.uint16)),
            "line": pa.array(np.arange(N, dtype=np.int64)),
        },
        schema=EXAMPLE_SCHEMA,
    )
    for name, t in (("passages", passages), ("queries", queries), ("examples", examples)):
        pq.write_table(t, d / f"{name}.parquet")
    write_manifest(
        d,
        {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": {"format": "synthetic", "files": []},
            "counts": {"passages": POOL, "queries": N, "examples": N},
            "steps": [],
        },
    )
    flagged = rng.choice(N, size=N // 20, replace=False)
    k = rng.integers(1, 4, size=len(flagged))
    ex = np.repeat(flagged, k)
    col = np.concatenate([rng.choice(NEG, size=kk, replace=False) for kk in k])
    pairs = judgments.table(
        {
            "example": ex,
            "pid": pids[ex, 1 + col],
            "stage": ["s"] * len(ex),
            "stage_index": [1] * len(ex),
            "label": ["better"] * len(ex),
            "flagged": [True] * len(ex),
        }
    )
    return Collection.load(d), pairs


def plain_python_relabel(coll: Collection, pairs: pa.Table, k: int = 7) -> pa.Table:
    fn: dict[int, set[int]] = {}
    for e, p in zip(pairs["example"].to_pylist(), pairs["pid"].to_pylist(), strict=True):
        fn.setdefault(e, set()).add(p)
    ex = coll.examples
    qid, pos_l, neg_l = (
        ex["qid"].to_pylist(),
        ex["positives"].to_pylist(),
        ex["negatives"].to_pylist(),
    )
    out_q, out_p, out_n = [], [], []
    for i, (q, pos, neg) in enumerate(zip(qid, pos_l, neg_l, strict=True)):
        f = fn.get(i)
        if f:
            hits = [p for p in neg if p in f]
            if len(hits) > k:
                continue
            pos = pos + [p for p in hits if p not in pos]
            neg = [p for p in neg if p not in f]
        out_q.append(q)
        out_p.append(pos)
        out_n.append(neg)
    return pa.table(
        {
            "qid": pa.array(out_q, pa.uint32()),
            "positives": pa.array(out_p, pa.list_(pa.uint32())),
            "negatives": pa.array(out_n, pa.list_(pa.uint32())),
        }
    )


RESULTS: dict[str, float] = {}


@pytest.mark.parametrize("side", ["trueneg", "plain python"])
def test_fix(
    benchmark: pytest.FixtureRequest,
    synthetic: tuple[Collection, pa.Table],
    tmp_path: Path,
    side: str,
) -> None:
    coll, pairs = synthetic
    times = []

    def once() -> None:
        t = time.perf_counter()
        if side == "trueneg":
            new, _ = apply_strategy(coll, pairs, "relabel")
        else:
            new = plain_python_relabel(coll, pairs)
        pq.write_table(
            new, tmp_path / "examples.parquet", **parquet_options()
        )  # same writer for both
        times.append(time.perf_counter() - t)
        RESULTS[side + "_rows"] = len(new)

    benchmark.pedantic(once, rounds=3, iterations=1)
    RESULTS[side] = min(times)
    if "trueneg" in RESULTS and "plain python" in RESULTS:
        assert RESULTS["trueneg_rows"] == RESULTS["plain python_rows"]
        print(
            f"\nrelabel + write, {N:,} examples x {NEG} negatives, 5% with false negatives: trueneg "
            f"{RESULTS['trueneg']:.2f} s, plain Python {RESULTS['plain python']:.2f} s, "
            f"{RESULTS['plain python'] / RESULTS['trueneg']:.1f}x"
        )
