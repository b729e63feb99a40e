"""examples/quickstart.py runs end to end against the test server (a real OpenAI-compatible HTTP
server whose answers flag the first document of every call), through the public API only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from .fake_openai import EMPTY_VERDICT, FakeOpenAI, State

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart(tmp_path: Path) -> None:
    st = State()
    st.default_answer = EMPTY_VERDICT.replace(
        "Preferred over ground truth: []", "Preferred over ground truth: [Doc (1)]"
    )
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}
    with FakeOpenAI(st) as srv:
        r = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--base-url",
             srv.base_url, "--workdir", str(tmp_path / "w")],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "Collection(" in out and "dedup: 1 free false negatives" in out
    # the server flags the first document of every call: one false negative per judged example,
    # each moved to the positives by relabel
    n = int(re.search(r"judge: (\d+) false negatives", out).group(1))
    assert 40 <= n <= 50
    assert f"fix: {n} negatives moved to the positives" in out
    assert "features: ['query', 'pos', 'neg', " in out and "num_rows: 50" in out
    assert "train: 2 steps" in out
