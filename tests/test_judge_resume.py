"""Kill -9 at random points, then resume: no answer the client received is ever lost or paid twice.

The server counts a completion as paid once it has written it to the socket. An answer written in
the last instant before the kill, not yet read by the client, is lost by construction on the online
API (it is the window between the server's write and the client's commit); the Batch API path has no
such window. The test measures it and bounds it by the requests in flight.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from trueneg import ingest
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.judge import Cache
from trueneg.judge.render import PROMPTS_DIR

from .fake_openai import FakeOpenAI, State, load_rlhn

KILLS = 20
CONCURRENCY = 4


def _stats(srv: FakeOpenAI) -> dict:
    return json.loads(urllib.request.urlopen(srv.base_url.replace("/v1", "/stats")).read())


def test_kill_nine_and_resume(tmp_path: Path) -> None:
    coll = tmp_path / "c"
    ingest(rlhn_sample_stage1(), coll)
    st = State(latency=0.08)
    load_rlhn(st, RLHN_SAMPLE_DIR, PROMPTS_DIR)
    rng = random.Random(7)
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "TRUENEG_NUM_THREADS": "1"}
    with FakeOpenAI(st) as srv:
        cmd = [
            sys.executable,
            "-m",
            "trueneg",
            "judge",
            "run",
            str(coll),
            "--base-url",
            srv.base_url,
            "--concurrency",
            str(CONCURRENCY),
            "--json",
        ]
        killed = 0
        for _ in range(KILLS):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(rng.uniform(0.6, 1.6))  # the CLI takes ~0.5 s to import and plan
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                killed += 1
            p.wait()
        final = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        stats = _stats(srv)
    summary = json.loads(final.stdout)
    assert summary["false_negatives"] == 76  # the same result as an uninterrupted run
    with Cache(coll / "judge-cache.sqlite") as c:
        cached = c.count()
    assert cached == 86
    paid = stats["paid"]
    assert len(paid) == 86  # every request answered once at least, and ...
    duplicates = sum(v - 1 for v in paid.values())
    # ... re-paid only when the kill fell between the server's write and the client's commit
    assert duplicates <= killed * CONCURRENCY
    print(
        f"\n{killed} kills: {sum(paid.values())} paid answers for 86 requests ({duplicates} in flight at a kill)"
    )
