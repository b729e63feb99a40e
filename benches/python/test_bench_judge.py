"""Judge throughput: (a) online, the real openai client against the local fake server with 50 ms
latency at concurrency 64, vs the ideal concurrency / latency; (b) the cache-hit path of a whole
stage (plan, render, hash, look up, parse, judgments) in calls/s and pairs/s.

    pytest benches/python/test_bench_judge.py --benchmark-enable -s
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from trueneg import ingest
from trueneg.judge import Cache
from trueneg.judge.cache import Answer
from trueneg.judge.cascade import (
    RLHN_STAGES,
    CollectionText,
    JudgeConfig,
    make_requests,
    plan_stage,
    render_calls,
    run_cascade,
)
from trueneg.judge.client import Request, Sender, SendSettings

ROOT = Path(__file__).resolve().parents[2]
LATENCY, CONCURRENCY, N_ONLINE = 0.05, 64, int(os.environ.get("TRUENEG_BENCH_JUDGE_N", "3000"))
EXAMPLES = int(os.environ.get("TRUENEG_BENCH_JUDGE_EXAMPLES", "20000"))


@pytest.fixture(scope="module")
def server() -> str:
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(LATENCY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline()  # type: ignore[union-attr]
    port = int(line.split()[1])
    yield f"http://127.0.0.1:{port}/v1"
    p.terminate()
    p.wait()
    p.stdout.close()  # type: ignore[union-attr]


def online_requests(n: int) -> list[Request]:
    """``n`` distinct short chat requests (the server answers each after its latency)."""
    return [
        Request(
            key=f"k{i}",
            model="gpt-4o-mini",
            messages=({"role": "user", "content": f"question {i}: is Doc (1) relevant?"},),
            params=(("max_completion_tokens", 64), ("temperature", 0.1)),
        )
        for i in range(n)
    ]


def test_online_throughput(benchmark: pytest.FixtureRequest, server: str, tmp_path: Path) -> None:
    reqs = online_requests(N_ONLINE)
    rates = []

    def once() -> None:
        with Cache(tmp_path / f"c{len(rates)}.sqlite") as cache:
            s = Sender(cache=cache, settings=SendSettings(base_url=server, concurrency=CONCURRENCY))
            t = time.perf_counter()
            stats = asyncio.run(s.send_all(reqs))
            dt = time.perf_counter() - t
            assert stats.answered == N_ONLINE
            rates.append(N_ONLINE / dt)

    benchmark.pedantic(once, rounds=2, iterations=1)
    ideal = CONCURRENCY / LATENCY
    best = max(rates)
    benchmark.extra_info.update(items_per_s=best, ideal=ideal, fraction=best / ideal)
    print(
        f"\nonline: {best:,.0f} requests/s at concurrency {CONCURRENCY}, {LATENCY * 1000:.0f} ms latency; "
        f"ideal {ideal:,.0f}/s -> {best / ideal:.0%} of ideal"
    )


def cache_hit_workload(d: Path, examples: int = EXAMPLES) -> tuple[Any, JudgeConfig, Path, int]:
    """A collection of ``examples`` x 25 negatives whose stage-1 answers are all in a cache:
    (collection, config, cache path, number of calls)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]

    def text(n: int) -> str:
        return " ".join(rng.choice(words, n))

    pool = [text(60) for _ in range(50_000)]
    src = d / "bge.jsonl"
    with open(src, "wb") as f:
        for i in range(examples):
            ids = rng.integers(0, len(pool), 26)
            f.write(
                orjson.dumps(
                    {
                        "query": f"q{i} " + text(8),
                        "pos": [pool[ids[0]]],
                        "neg": [pool[j] for j in ids[1:]],
                    }
                )
                + b"\n"
            )
    coll = ingest([src], d / "c")
    stage = RLHN_STAGES[0]
    cfg = JudgeConfig(stages=(stage,))
    text_ = CollectionText(coll)
    plan = plan_stage(text_, stage, False)
    reqs = make_requests(
        stage, render_calls(text_, stage, plan), cfg, tokens=np.zeros(len(plan), np.uint32)
    )
    ans = "<verdict><better> [] </better><worse> [Doc (3)] </worse></verdict>"
    with Cache(d / "cache.sqlite") as cache:
        cache.put_many(
            Answer(r.key, stage.model, ans, None, "stop", 1, 1, 0.0, "import") for r in reqs
        )
    return coll, cfg, d / "cache.sqlite", len(plan)


def test_cache_hit_path(benchmark: pytest.FixtureRequest, tmp_path: Path) -> None:
    coll, cfg, cache_path, n_calls = cache_hit_workload(tmp_path)
    with Cache(cache_path) as cache:
        times = []

        def once() -> None:
            t = time.perf_counter()
            s, table = run_cascade(coll, cfg, cache, offline=True)
            times.append(time.perf_counter() - t)
            assert s.stages[0].cache_hits == n_calls and len(table) == EXAMPLES * 25

        benchmark.pedantic(once, rounds=2, iterations=1)
    best = min(times)
    benchmark.extra_info.update(calls_per_s=n_calls / best, pairs_per_s=EXAMPLES * 25 / best)
    print(
        f"\ncache hits: {n_calls:,} calls ({EXAMPLES * 25:,} pairs) in {best:.2f} s = "
        f"{n_calls / best:,.0f} calls/s, {EXAMPLES * 25 / best:,.0f} pairs/s"
    )
