"""The release artefact: an abi3 wheel built by maturin installs into a fresh venv with only the
runtime dependencies and runs the main job (``trueneg run`` on the built-in default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs the Rust toolchain")
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}
    subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--out", str(dist), "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1 and "-abi3-" in wheels[0].name, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.startswith("trueneg/_core") and n.endswith(".so") for n in names)
    assert any(n.startswith("trueneg/data/rlhn-test-50/") for n in names)  # the default run's data
    for extra in ("embed", "train", "ray", "ann", "dev"):
        assert f"Provides-Extra: {extra}" in meta, extra
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], check=True)
    # only the runtime dependencies: no torch, no ray in the fresh environment
    r = subprocess.run(
        [
            str(py),
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('ray'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == ["None", "None"]
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(
        [str(venv / "bin" / "trueneg"), "run"],
        cwd=work,
        capture_output=True,
        text=True,
        env={**env, "TRUENEG_DISABLE_PROGRESS_BARS": "1"},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "76 false negatives" in r.stdout
    assert (work / "trueneg-run" / "report" / "report.html").stat().st_size > 10_000
