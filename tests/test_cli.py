"""The command line, run as users run it (a subprocess of ``python -m trueneg``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .helpers import canonical_lines, write_lines


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {
        **os.environ,
        "TRUENEG_DISABLE_PROGRESS_BARS": "1",
        "TRUENEG_NUM_THREADS": "1",
        **(env or {}),
    }
    e.pop("TRUENEG_DEBUG", None) if env is None or "TRUENEG_DEBUG" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "trueneg", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=300,
        check=False,
    )


def test_stats_on_bundled_sample() -> None:
    r = run("stats")
    assert r.returncode == 0, r.stderr
    assert "bundled RLHN sample" in r.stdout
    lines = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.split()}
    assert lines["fiqa"][1:3] == ["25", "25"] and lines["fiqa"][4] == "15.00"
    assert lines["msmarco_passage"][3:6] == ["1.00", "25.00", "650"]
    assert lines["ALL"][1] == "50"


def test_stats_json() -> None:
    r = run("stats", "--json")
    data = json.loads(r.stdout)
    by = {s["subset"]: s for s in data["subsets"]}
    assert by["fiqa"]["unique_passages"] == 444
    assert by["ALL"]["examples"] == 50


def test_ingest_export_and_stats_on_a_collection(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "flagembedding-examples" / "embedder_retrieval_nq.jsonl"
    r = run("ingest", str(src), "-o", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    assert "10 examples, 10 queries" in r.stdout
    r = run("export", str(tmp_path / "c"), "-f", "bge", "-o", str(tmp_path / "out.jsonl"))
    assert r.returncode == 0, r.stderr
    assert canonical_lines(tmp_path / "out.jsonl") == canonical_lines(src)
    r = run("stats", str(tmp_path / "c"), "--json")
    assert json.loads(r.stdout)["subsets"][0]["subset"] == "embedder_retrieval_nq"


def test_known_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", ['{"query": "q", "pos": "oops", "neg": []}'])
    r = run("ingest", str(bad), "-o", str(tmp_path / "c"), "--format", "bge")
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert (
        err[0]
        == f"error: {bad}:1: field 'pos': expected a list of strings, got a string (a string here would be read as one passage per character)"
    )
    assert err[1] == "hint: set TRUENEG_DEBUG=1 for a traceback"
    assert "Traceback" not in r.stderr
    r = run(
        "ingest", str(bad), "-o", str(tmp_path / "c"), "--format", "bge", env={"TRUENEG_DEBUG": "1"}
    )
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_skip_reports_count(tmp_path: Path) -> None:
    src = write_lines(
        tmp_path / "in.jsonl", ['{"query": "q", "pos": ["p"], "neg": []}', "not json"]
    )
    r = run("ingest", str(src), "-o", str(tmp_path / "c"), "--format", "bge", "--on-error", "skip")
    assert r.returncode == 0
    assert "skipped 1 bad rows" in r.stderr


def test_usage_error_exit_2() -> None:
    r = run("stats", "--no-such-flag")
    assert r.returncode == 2


def test_env_json() -> None:
    r = run("env", "--json")
    info = json.loads(r.stdout)
    assert info["rust_threads"] == 1  # TRUENEG_NUM_THREADS=1
    assert info["packages"]["pyarrow"]
    # what embeds on this CPU: OpenVINO exactly where the package is installed
    assert info["cpu_embedding_backend"] == (
        "openvino" if info["packages"]["openvino"] else "torch"
    )
    from trueneg.models import CPU_BATCH_TOKENS

    assert info["cpu_embedding_batch_tokens"] == CPU_BATCH_TOKENS


def test_help_lists_verbs() -> None:
    r = run("--help")
    for verb in ("ingest", "export", "stats", "env"):
        assert verb in r.stdout
