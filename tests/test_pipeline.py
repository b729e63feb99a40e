"""``trueneg run``: the built-in default end to end, resume, kill mid-judge, and the report rendered
in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trueneg import Collection
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.judge.render import PROMPTS_DIR

from .fake_openai import FakeOpenAI, State, load_rlhn

ENV = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trueneg", "run", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_default_run_end_to_end_and_second_run_does_nothing(tmp_path: Path) -> None:
    r = _run(cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    w = tmp_path / "trueneg-run"
    assert "judge   76 false negatives in 28 examples; 0 requests sent" in r.stdout
    for s, n in (("remove", 22), ("remove-hn", 49), ("relabel", 49)):
        assert len(Collection.load(w / "fixed" / s)) == n
        assert len((w / "export" / f"{s}.jsonl").read_text().splitlines()) == n
    assert (w / "report" / "report.html").stat().st_size > 10_000
    md = (w / "report" / "report.md").read_text()
    assert md.count("![") >= 3
    # statuses as a table, the two stages' agreement, better and worse samples with ids, each
    # stage's verdict and the judge's reasoning (read from the run's cache)
    assert "### Answer statuses\n\n| stage | ok |" in md and "| stage1 | 50 |" in md
    assert "| better | better | 5 | 0.7% |" in md and "| worse | better | 23 |" in md
    samples = md[md.index("## Sample judged pairs") :]
    assert "better (stage2, gpt-4o)" in samples and "worse (stage2, gpt-4o)" in samples
    assert "stage1: worse → stage2: better" in samples
    assert "[4abe00e47fbcdca1af6b41cddb566211]" in samples  # the query's id
    assert "evaluate the reasoning" in samples and "<thinking>" not in samples
    again = _run(cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do: every stage is already done" in again.stdout
    assert "already done, skipped" in again.stdout


def test_changed_settings_redo_only_what_depends_on_them(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    files = ", ".join(f'"{p}"' for p in rlhn_sample_stage1())
    s2 = ", ".join(f'"{p}"' for p in sorted(RLHN_SAMPLE_DIR.glob("*stage_2*")))
    base = (
        f'[ingest]\ninputs = [{files}]\nformat = "tevatron"\n[judge]\noffline = true\n'
        f'[[judge.import]]\nfiles = [{files}]\nstage = "stage1"\n[[judge.import]]\nfiles = [{s2}]\nstage = "stage2"\n'
    )
    cfg.write_text(base + '[fix]\nstrategies = ["relabel"]\nmax_false_negatives = 7\n')
    assert _run(str(cfg), "--workdir", str(tmp_path / "w"), cwd=tmp_path).returncode == 0
    cfg.write_text(base + '[fix]\nstrategies = ["relabel"]\nmax_false_negatives = 8\n')
    r = _run(str(cfg), "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert re.search(r"judge\s+already done", r.stdout) and re.search(
        r"fix\s+relabel 50->49", r.stdout
    )
    assert "export  already done" not in r.stdout  # export follows fix


def test_killed_mid_judge_resumes(tmp_path: Path) -> None:
    st = State(latency=0.15)
    load_rlhn(st, RLHN_SAMPLE_DIR, PROMPTS_DIR)
    files = ", ".join(f'"{p}"' for p in rlhn_sample_stage1())
    with FakeOpenAI(st) as srv:
        cfg = tmp_path / "p.toml"
        cfg.write_text(
            f'[ingest]\ninputs = [{files}]\nformat = "tevatron"\n'
            f'[judge]\nbase_url = "{srv.base_url}"\nconcurrency = 2\n[report]\nenabled = false\n'
        )
        cmd = [sys.executable, "-m", "trueneg", "run", str(cfg), "--workdir", str(tmp_path / "w")]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 60
        while (
            time.time() < deadline
            and json.loads(urllib.request.urlopen(srv.base_url[:-3] + "/stats").read())["requests"]
            < 20
        ):
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        first = json.loads(urllib.request.urlopen(srv.base_url[:-3] + "/stats").read())["requests"]
        assert 20 <= first < 86
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, check=True, timeout=300)
        stats = json.loads(urllib.request.urlopen(srv.base_url[:-3] + "/stats").read())
    assert re.search(r"ingest\s+already done", r.stdout)
    assert "judge   76 false negatives in 28 examples" in r.stdout
    assert sum(stats["paid"].values()) - 86 <= 2  # at most the requests in flight at the kill


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (installed by .ci/run)"
)
def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    assert _run(cwd=tmp_path).returncode == 0
    html = tmp_path / "trueneg-run" / "report" / "report.html"
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    total = int(re.search(r'data-images="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    assert total >= 3 and loaded == total
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1100,1600",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000
