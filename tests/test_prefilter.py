"""The local scorer measured as a pre-filter against RLHN's recorded GPT-4o verdicts on the
bundled sample: the curve is monotone, ends at everything passed, and at a margin its "passed"
share is exactly what a cascade with that local stage in front finds."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from trueneg import ingest
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.judge import Cache, JudgeConfig, judge_collection
from trueneg.judge.cascade import RLHN_STAGES, Stage
from trueneg.judge.importers import import_rlhn
from trueneg.judge.prefilter import prefilter_curve


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    c = tmp_path_factory.mktemp("pf") / "c"
    ingest(rlhn_sample_stage1(), c, format="tevatron")
    with Cache(c / "judge-cache.sqlite") as cache:
        import_rlhn(cache, rlhn_sample_stage1(), RLHN_STAGES[0])
        import_rlhn(cache, sorted(RLHN_SAMPLE_DIR.glob("*stage_2*.jsonl")), RLHN_STAGES[1])
    s = judge_collection(c, JudgeConfig(), offline=True)
    assert s.false_negatives == 76
    return c


def test_curve_and_the_cascade_agree(judged: Path) -> None:
    curve = prefilter_curve(judged, margins=(-0.2, 0.0, 0.05, 0.5, 5.0))
    assert curve["reference_false_negatives"] == 76 and curve["calls"] == 50
    rows = curve["curve"]
    for a, b in itertools.pairwise(rows):
        assert a["passed"] <= b["passed"] and a["calls"] <= b["calls"]
    assert rows[-1]["passed"] == 1.0 and rows[-1]["calls"] == 1.0
    assert curve["best_at_90"] is not None and curve["best_at_90"]["passed"] >= 0.9
    # the same margin as a local stage in front of the RLHN cascade (recorded answers, offline)
    local = Stage("local", "default", "", backend="local", local_margin=0.05)
    s1 = Stage("stage1", "gpt-4o-mini", "gpt-4o-mini", trigger="previous")
    s2 = RLHN_STAGES[1]
    s = judge_collection(judged, JudgeConfig(stages=(local, s1, s2)), offline=True)
    row = next(r for r in rows if r["margin"] == 0.05)
    assert s.stages[0].flagged_calls == round(row["calls"] * 50)
    assert s.false_negatives == round(row["passed"] * 76)


def test_cli_writes_the_curve_and_the_report_plots_it(judged: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    out = tmp_path / "curve.json"
    # the judged collection was re-judged with a local stage above; judge it as RLHN again
    judge_collection(judged, JudgeConfig(), offline=True)
    r = subprocess.run(
        [sys.executable, "-m", "trueneg", "judge", "prefilter", str(judged), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "against 76 false negatives in 50 calls" in r.stdout
    assert json.loads(out.read_text())["scorer"] == "embedding"
    rep = tmp_path / "rep"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "report",
            str(judged),
            "-o",
            str(rep),
            "--prefilter",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "## Local scorer as a pre-filter" in (rep / "report.md").read_text()
    assert (rep / "prefilter.png").read_bytes()[:4] == b"\x89PNG"
