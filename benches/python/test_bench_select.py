"""The whole selection stage (embeddings given): trueneg vs sentence-transformers
``mine_hard_negatives`` on the same embeddings and parameters, same run.

    pytest benches/python/test_bench_select.py --benchmark-enable -s                # 2,000 x 50,000 x 384
    TRUENEG_BENCH_SELECT="10000,200000,384" pytest benches/python/test_bench_select.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from select_workload import agreement, make_data, run_st, run_trueneg, st_model

NQ, NC, D = (int(x) for x in os.environ.get("TRUENEG_BENCH_SELECT", "2000,50000,384").split(","))
RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return make_data(NQ, NC, D)


def test_select_trueneg(benchmark: Any, data: dict[str, Any]) -> None:
    times: list[float] = []

    def once() -> None:
        t = time.perf_counter()
        RESULTS["trueneg_negs"] = run_trueneg(data)
        times.append(time.perf_counter() - t)

    benchmark.pedantic(once, rounds=2, iterations=1)
    RESULTS["trueneg"] = min(times)


def test_select_sentence_transformers(benchmark: Any, data: dict[str, Any]) -> None:
    pytest.importorskip("sentence_transformers")
    model = st_model()
    times: list[float] = []

    def once() -> None:
        negs, secs = run_st(data, model)
        RESULTS["st_negs"] = negs
        times.append(secs)

    benchmark.pedantic(once, rounds=1, iterations=1)
    st = min(times)
    if "trueneg" in RESULTS:
        agree = agreement(RESULTS["trueneg_negs"], RESULTS["st_negs"])
        print(
            f"\nselection, {NQ:,} queries x {NC:,} passages x {D}, {RESULTS['trueneg_negs'] and 7} negatives, "
            f"range_max 100, relative margin 0.05: trueneg {RESULTS['trueneg']:.2f} s, "
            f"sentence-transformers {st:.2f} s -> {st / RESULTS['trueneg']:.1f}x; same negatives {agree:.4f}"
        )
