"""Ingest benchmark: a large synthetic BGE JSON Lines file, trueneg vs plain ``json`` + pandas.

Run (not part of the test suite):

    pytest benches/python/test_bench_ingest.py --benchmark-enable -s
    TRUENEG_BENCH_ROWS=1000000 pytest benches/python/test_bench_ingest.py --benchmark-enable -s

Each side runs in a fresh subprocess so its peak RSS is its own; the time is taken inside the
process after imports. trueneg does more work than the baseline (interning, content hashes,
Parquet on disk); the baseline only builds a DataFrame of Python objects in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synth import make_bge_jsonl

ROWS = int(os.environ.get("TRUENEG_BENCH_ROWS", "200000"))

TRUENEG = """
import json, resource, sys, time
from trueneg import ingest
t = time.perf_counter()
c = ingest([sys.argv[1]], sys.argv[2], overwrite=True)
n = c.manifest["counts"]["examples"]
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BASELINE = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
with open(sys.argv[1]) as f:
    rows = [json.loads(line) for line in f]
df = pd.DataFrame(rows)
n = len(df)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RESULTS: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def bge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bge_jsonl(tmp_path_factory.mktemp("bench") / "bge.jsonl", ROWS)


def _run(code: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("side", ["trueneg", "json+pandas"])
def test_ingest(
    benchmark: pytest.FixtureRequest, bge_file: Path, tmp_path: Path, side: str
) -> None:
    code = TRUENEG if side == "trueneg" else BASELINE
    runs: list[dict[str, float]] = []

    def once() -> None:
        runs.append(_run(code, str(bge_file), str(tmp_path / "coll")))

    benchmark.pedantic(once, rounds=3, iterations=1)
    best = min(runs, key=lambda r: r["seconds"])
    assert best["rows"] == ROWS
    best["rows_per_s"] = ROWS / best["seconds"]
    benchmark.extra_info.update(best)
    RESULTS[side] = best
    if len(RESULTS) == 2:
        a, b = RESULTS["trueneg"], RESULTS["json+pandas"]
        size = bge_file.stat().st_size / 1e6
        print(f"\n{ROWS:,} rows, {size:,.0f} MB of BGE JSON Lines (best of 3, fresh process each)")
        for name, r in RESULTS.items():
            print(
                f"  {name:12s} {r['seconds']:7.2f} s  {r['rows_per_s']:>10,.0f} rows/s  peak RSS {r['peak_rss_mb']:,.0f} MB"
            )
        print(
            f"  speed ratio trueneg / json+pandas: {b['seconds'] / a['seconds']:.2f}x; "
            f"peak memory ratio: {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x less"
        )
