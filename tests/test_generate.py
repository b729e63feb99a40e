"""SyNeg (``trueneg generate``) on the real RLHN sample through the real openai client and the
test server with a scripted model: the prompt's parts, every check (length, near-duplicates of
the positive, of the negatives and of each other, the judge), mixing, refill, interning with
provenance, the cache (a rerun pays nothing), the dry run and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from trueneg import Collection, ingest
from trueneg.data import rlhn_sample_stage1
from trueneg.exceptions import InputError
from trueneg.generate import GenerateConfig, generate_collection, parse_generated

from .fake_openai import FakeOpenAI, State
from .scripted_llm import ScriptedLLM, scripted_negatives


def _server_state() -> tuple[State, ScriptedLLM]:
    llm = ScriptedLLM()
    llm.generate = scripted_negatives
    state = State()
    state.responder = llm
    return state, llm


def _stats(srv: FakeOpenAI) -> dict:
    return json.loads(urllib.request.urlopen(srv.base_url.replace("/v1", "/stats")).read())


@pytest.fixture
def coll_dir(tmp_path: Path) -> Path:
    ingest(rlhn_sample_stage1(), tmp_path / "c")
    return tmp_path / "c"


def test_parse_generated() -> None:
    g = parse_generated('```json\n{"reasoning": "x", "hard_negatives": ["a  b\\n c", 3, " "]}\n```')
    assert g.status == "ok" and g.texts == ["a b c"] and g.notes
    assert parse_generated("none").status == "parse_error"
    assert parse_generated('{"hard_negatives": "x"}').status == "parse_error"
    assert parse_generated("x", finish_reason="length").status == "length"
    assert parse_generated(None, refusal="no").status == "refusal"


def test_mix_and_refill_with_every_check(coll_dir: Path, tmp_path: Path) -> None:
    state, llm = _server_state()
    old = Collection.load(coll_dir)
    negs = old.examples["negatives"].to_pylist()
    with FakeOpenAI(state) as srv:
        cfg = GenerateConfig(base_url=srv.base_url, per_call=5, mix_ratio=0.05, refill_to=30)
        r = generate_collection(coll_dir, tmp_path / "g", cfg)
        assert _stats(srv)["requests"] == len(old.examples) == r.calls == llm.generate_calls
        again = generate_collection(coll_dir, tmp_path / "g2", cfg)
        assert _stats(srv)["requests"] == len(old.examples)  # answered from the cache
    assert again.sent == 0 and again.used == r.used
    n = len(old.examples)
    assert r.generated == 5 * n and r.statuses == {"ok": n}
    # the positive's copy is rejected by length first when the positive is out of bounds
    words = [
        len(old.passages["text"][p[0]].as_py().split())
        for p in old.examples["positives"].to_pylist()
    ]
    short, long_ = sum(w < 15 for w in words), sum(w > 400 for w in words)
    want = {
        "near_duplicate_of_positive": n - short - long_,
        "too_short": n + short,
        "too_long": long_,
        "near_duplicate_of_generated": n,
    }
    assert r.rejected == {k: v for k, v in want.items() if v}
    new = Collection.load(tmp_path / "g")
    texts = new.passages["text"].to_pylist()
    extra = new.passages["extra"].to_pylist()
    gen_pids = {i for i, e in enumerate(extra) if e and "generated:gpt-4o-mini" in e}
    assert len(new.passages) == len(old.passages) + len(gen_pids) and len(gen_pids) == 2 * n
    q = old.queries["text"].to_pylist()
    qids = old.examples["qid"].to_pylist()
    mixed = refilled = 0
    for i, (before, after) in enumerate(
        zip(negs, new.examples["negatives"].to_pylist(), strict=True)
    ):
        m = int(np.floor(len(before) * 0.05 + 0.5))
        m = min(m, 2)
        gen = [p for p in after if p in gen_pids]
        assert after[: len(before) - m] == before[: len(before) - m]  # the hardest mined kept
        assert all(q[qids[i]] in texts[p] for p in gen)
        add = min(max(0, 30 - len(before)), 2 - m)
        assert len(after) == len(before) + add
        mixed, refilled = mixed + m, refilled + add
    assert (r.mixed, r.refilled, r.used) == (mixed, refilled, mixed + refilled) and r.refilled > 0
    assert r.examples_still_short == sum(len(a) < 30 for a in new.examples["negatives"].to_pylist())
    assert "generate" in [s["step"] for s in new.manifest["steps"]]
    assert json.loads((tmp_path / "g" / "generate.json").read_text())["used"] == r.used
    # a passage generated twice is one passage (interned by content)
    assert len(set(texts)) == len(texts) or len({texts[p] for p in gen_pids}) == len(gen_pids)


def test_the_judge_check_drops_relevant_ones(coll_dir: Path, tmp_path: Path) -> None:
    state, _ = _server_state()
    # the judge (RLHN's stage-1 prompt) calls the first document of every call better
    state.default_answer = "<verdict><better> Doc (1) </better><worse> </worse></verdict>"
    judge = tmp_path / "judge.toml"
    with FakeOpenAI(state) as srv:
        judge.write_text(
            f'[judge]\nbase_url = "{srv.base_url}"\n[[judge.stages]]\nname = "s1"\n'
            'model = "gpt-4o-mini"\nprompt = "gpt-4o-mini"\n'
        )
        cfg = GenerateConfig(
            base_url=srv.base_url, per_call=5, mix_ratio=0.0, refill_to=30, judge=str(judge)
        )
        r = generate_collection(coll_dir, tmp_path / "g", cfg)
    n = len(Collection.load(coll_dir).examples)
    assert r.rejected["relevant"] == n and r.refilled == n  # one of two left per example


def test_dry_run_and_config(coll_dir: Path, tmp_path: Path) -> None:
    state, _ = _server_state()
    with FakeOpenAI(state) as srv:
        cfg = GenerateConfig(base_url=srv.base_url, prices={"gpt-4o-mini": (0.15, 0.6)})
        r = generate_collection(coll_dir, tmp_path / "g", cfg, dry_run=True)
        assert _stats(srv)["requests"] == 0
    assert r.calls == 50 and r.expected_cost_usd > 0 and not (tmp_path / "g").exists()
    # the library call, as a notebook would make it
    import trueneg

    with FakeOpenAI(state) as srv:
        res = trueneg.generate(coll_dir, out=tmp_path / "lib", base_url=srv.base_url, per_call=5)
    assert res.collection.path == (tmp_path / "lib").resolve() or res.collection.path.name == "lib"
    assert res.report.used > 0 and len(res.collection.passages) > 0
    with pytest.raises(InputError, match="did you mean 'mix_ratio'"):
        trueneg.generate(coll_dir, out=tmp_path / "x", mix_ration=0.1)
    f = tmp_path / "gen.toml"
    f.write_text('[generate]\nmodel = "qwen3"\nmix_ratio = 0.5\nrefill_to = 8\n')
    c = GenerateConfig.from_toml(f)
    assert (c.model, c.mix_ratio, c.refill_to) == ("qwen3", 0.5, 8)
    f.write_text("[generate]\nmix_ration = 0.5\n")
    with pytest.raises(InputError, match="mix_ratio"):
        GenerateConfig.from_toml(f)
    with pytest.raises(InputError, match="mix_ratio"):
        GenerateConfig(mix_ratio=1.5)
    with pytest.raises(InputError, match="unknown generation prompt"):
        GenerateConfig(prompt="nope")


def test_cli_generate(coll_dir: Path, tmp_path: Path) -> None:
    state, _ = _server_state()
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    with FakeOpenAI(state) as srv:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "trueneg",
                "generate",
                str(coll_dir),
                "--out",
                str(tmp_path / "g"),
                "--base-url",
                srv.base_url,
                "--mix-ratio",
                "0.1",
                "--refill-to",
                "0",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    assert "250 generated (50 calls sent" in out.stdout
    assert "rejected: near_duplicate_of_generated 50, near_duplicate_of_positive " in out.stdout
    assert "used 100 (100 mixed in, 0 refilling" in out.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "generate",
            str(coll_dir),
            "--out",
            str(coll_dir / "x"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 0 and "50 calls for 50 examples" in bad.stdout
    inside = subprocess.run(
        [sys.executable, "-m", "trueneg", "generate", str(coll_dir), "--out", str(coll_dir / "x")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert inside.returncode != 0 and inside.stderr.startswith("error:")
    assert orjson.loads((tmp_path / "g" / "manifest.json").read_bytes())["counts"]["passages"] > 0


def test_pipeline_with_an_arhn_judge_and_a_generate_stage(tmp_path: Path) -> None:
    """A pipeline file: ARHN as the judge, then [generate] on the remove-hn and relabel sets,
    which are exported in place of the fixed ones; a second run does nothing."""
    state, llm = _server_state()
    files = ", ".join(f'"{p}"' for p in rlhn_sample_stage1())
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    with FakeOpenAI(state) as srv:
        cfg = tmp_path / "p.toml"
        cfg.write_text(
            f'[ingest]\ninputs = [{files}]\nformat = "tevatron"\n'
            f'[judge]\nbase_url = "{srv.base_url}"\n[[judge.stages]]\nname = "arhn"\n'
            'model = "qwen3-32b"\nmethod = "arhn"\n'
            f'[fix]\nstrategies = ["remove-hn", "relabel"]\nmax_false_negatives = 30\n'
            f'[generate]\nbase_url = "{srv.base_url}"\nmodel = "qwen3-32b"\nper_call = 5\n'
            'mix_ratio = 0.0\nrefill_to = 26\nstrategies = ["remove-hn"]\n'
            "[report]\nenabled = false\n"
        )
        cmd = [sys.executable, "-m", "trueneg", "run", str(cfg), "--workdir", str(tmp_path / "w")]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert r.returncode == 0, r.stderr
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert re.search(r"generate remove-hn \+\d+ generated", r.stdout)
    assert "nothing to do" in again.stdout
    w = tmp_path / "w"
    fixed = Collection.load(w / "fixed" / "remove-hn")
    gen = Collection.load(w / "generated" / "remove-hn")
    rows = (w / "export" / "remove-hn.jsonl").read_text().splitlines()
    assert len(rows) == len(gen.examples) == len(fixed.examples)
    n_fixed = sum(len(x) for x in fixed.examples["negatives"].to_pylist())
    n_gen = sum(len(x) for x in gen.examples["negatives"].to_pylist())
    exported = sum(len(orjson.loads(x)["negative_passages"]) for x in rows)
    assert exported == n_gen > n_fixed
    assert llm.generate_calls > 0 and llm.rank_calls > 0
    relabel = (w / "export" / "relabel.jsonl").read_text().splitlines()
    assert len(relabel) == len(Collection.load(w / "fixed" / "relabel").examples)
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('strategies = ["remove-hn"]', 'strategies = ["remove"]'))
    b = subprocess.run(
        [sys.executable, "-m", "trueneg", "run", str(bad), "--workdir", str(tmp_path / "w2")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (
        b.returncode != 0
        and "[generate]: strategies must be a list of [fix] strategies" in b.stderr
    )


def test_budget_stops_and_a_rerun_pays_only_for_the_rest(coll_dir: Path, tmp_path: Path) -> None:
    state, _ = _server_state()
    prices = {"gpt-4o-mini": (0.15, 0.6)}
    with FakeOpenAI(state) as srv:
        cfg = GenerateConfig(base_url=srv.base_url, per_call=5, prices=prices, concurrency=1)
        one_call = generate_collection(coll_dir, tmp_path / "d", cfg, dry_run=True)
        # a budget of 3 calls' worst case (each reserved before it is sent; answers cost far
        # less): the sender stops part way, and the calls it did not send are "budget"
        tight = replace(cfg, budget_usd=3 * one_call.estimated_cost_usd / 50)
        first = generate_collection(coll_dir, tmp_path / "a", tight)
        assert 0 < first.sent < 50 and first.statuses["budget"] == 50 - first.sent
        assert Collection.load(tmp_path / "a").examples is not None  # written all the same
        second = generate_collection(coll_dir, tmp_path / "b", cfg)
        stats = _stats(srv)
    assert second.sent == 50 - first.sent and second.cache_hits == first.sent
    assert second.statuses == {"ok": 50}
    assert max(stats["paid"].values()) == 1  # no answer bought twice
    offline = generate_collection(coll_dir, tmp_path / "off", cfg, offline=True)
    assert offline.sent == 0 and offline.used == second.used


def test_batch_api_backend(coll_dir: Path, tmp_path: Path) -> None:
    state, _ = _server_state()
    with FakeOpenAI(state) as srv:
        online = generate_collection(
            coll_dir,
            tmp_path / "a",
            GenerateConfig(base_url=srv.base_url, per_call=5),
            cache_path=tmp_path / "a.sqlite",
        )
        batch = generate_collection(
            coll_dir,
            tmp_path / "b",
            GenerateConfig(base_url=srv.base_url, per_call=5, backend="batch"),
            cache_path=tmp_path / "b.sqlite",
        )
        assert state.batches
    assert batch.used == online.used and batch.statuses == {"ok": 50}
    a = Collection.load(tmp_path / "a").examples["negatives"].to_pylist()
    b = Collection.load(tmp_path / "b").examples["negatives"].to_pylist()
    assert a == b
