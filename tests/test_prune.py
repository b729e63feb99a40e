"""Pruning: the leave-one-subset-out plan, the paper's keep/drop rule, the pruned collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trueneg import Collection, ingest
from trueneg.exceptions import InputError
from trueneg.prune import apply, decide, plan


def _coll(data_dir: Path, tmp_path: Path) -> Collection:
    files = [
        data_dir / "flagembedding-examples" / f
        for f in (
            "embedder_retrieval_msmarco.jsonl",
            "embedder_retrieval_nq.jsonl",
            "embedder_retrieval_nli.jsonl",
        )
    ]
    return ingest(files, tmp_path / "c")


def test_plan_decide_apply(data_dir: Path, tmp_path: Path) -> None:
    coll = _coll(data_dir, tmp_path)
    p = plan(coll, ["beir/nq"])
    assert [r["name"] for r in p["runs"]] == [
        "all",
        "without:embedder_retrieval_msmarco",
        "without:embedder_retrieval_nli",
        "without:embedder_retrieval_nq",
    ]
    assert p["runs"][1]["examples"] == 20 and p["runs"][0]["examples"] == 30
    # the paper's numbers for three of its subsets: ALL 0.519; without ELI5 0.525, without NQ 0.517,
    # without FEVER 0.505 -> drop ELI5 only (here named after our three subsets)
    results = {
        "all": 0.519,
        "without:embedder_retrieval_msmarco": 0.505,
        "without:embedder_retrieval_nli": {"scifact": 0.530, "nfcorpus": 0.520},
        "without:embedder_retrieval_nq": 0.517,
    }
    d = decide(p, results)
    assert d.drop == ["embedder_retrieval_nli"] and d.baseline == 0.519
    assert decide(p, results, necessary=["embedder_retrieval_nli"]).drop == []
    assert decide(p, results, margin=0.01).drop == []
    assert apply(coll.path, tmp_path / "pruned", d.keep) == 20
    assert set(Collection.load(tmp_path / "pruned").queries["subset"].to_pylist()) >= set(d.keep)
    with pytest.raises(InputError, match="the results need the 'all' run"):
        decide(p, {"without:x": 1})
    with pytest.raises(InputError, match="unknown subsets"):
        apply(coll.path, tmp_path / "p2", ["nope"])


def test_cli(data_dir: Path, tmp_path: Path) -> None:
    coll = _coll(data_dir, tmp_path)
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trueneg", "prune", *a],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    assert run("plan", str(coll.path), "-o", str(tmp_path / "plan.json")).returncode == 0
    (tmp_path / "res.json").write_text(
        json.dumps(
            {
                "all": 0.5,
                "without:embedder_retrieval_msmarco": 0.4,
                "without:embedder_retrieval_nli": 0.6,
                "without:embedder_retrieval_nq": 0.45,
            }
        )
    )
    r = run(
        "decide",
        str(tmp_path / "plan.json"),
        "--results",
        str(tmp_path / "res.json"),
        "-o",
        str(tmp_path / "d.json"),
    )
    assert "drop 1: embedder_retrieval_nli" in r.stdout
    r = run(
        "apply", str(coll.path), "-o", str(tmp_path / "p"), "--decision", str(tmp_path / "d.json")
    )
    assert r.returncode == 0 and "20 examples from 2 subsets" in r.stdout


def test_prune_run_trains_and_evaluates_every_run(
    data_dir: Path, rlhn_dir: Path, tmp_path: Path
) -> None:
    """``prune run`` on the two-subset RLHN sample (tiny settings): every run trained and scored
    on a real DL19 slice, the decision written; a rerun trains nothing."""
    pytest.importorskip("torch")
    pytest.importorskip("pytrec_eval")
    import orjson

    from trueneg.evaluate import read_qrels

    src = data_dir / "beir-msmarco-dl19-5k"
    qrels = read_qrels(src)
    queries = [
        orjson.loads(x)
        for x in (src / "queries.jsonl").read_bytes().splitlines()
        if x.strip() and orjson.loads(x)["_id"] in qrels
    ][:4]
    keep = {d for q in queries for d in sorted(qrels[q["_id"]])[:10]}
    corpus = [orjson.loads(x) for x in (src / "corpus.jsonl").read_bytes().splitlines()]
    docs = [d for d in corpus if d["_id"] in keep] + [d for d in corpus if d["_id"] not in keep][
        :40
    ]
    ev = tmp_path / "dl19-slice"
    (ev / "qrels").mkdir(parents=True)
    (ev / "corpus.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    (ev / "queries.jsonl").write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in queries))
    (ev / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(
            f"{q['_id']}\t{d}\t{g}\n"
            for q in queries
            for d, g in qrels[q["_id"]].items()
            if d in keep
        )
    )
    coll = ingest(sorted(rlhn_dir.glob("*.stage_1.*.jsonl")), tmp_path / "c", format="tevatron")
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "2"}
    plan_file = tmp_path / "plan.json"
    cli = [sys.executable, "-m", "trueneg", "prune"]
    subprocess.run(
        [*cli, "plan", str(coll.path), "-o", str(plan_file), "--eval", str(ev)], check=True, env=env
    )
    work = tmp_path / "w"
    cmd = [
        *cli,
        "run",
        str(plan_file),
        "-w",
        str(work),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--eval-precision",
        "auto",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads((work / "results.json").read_text())["results"]
    subsets = sorted(json.loads(plan_file.read_text())["subsets"])
    assert len(subsets) == 2
    assert set(res) == {"all", *(f"without:{s}" for s in subsets)}
    for v in res.values():
        assert v["steps"] == 1 and 0 <= v["datasets"]["dl19-slice"] <= 1
    d = json.loads((work / "decision.json").read_text())
    assert sorted(d["keep"] + d["drop"]) == subsets
    assert d["baseline"] == pytest.approx(res["all"]["average"])
    assert not list(work.glob("model-*")) and not list(work.glob("collection-*"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and again.stderr.count("done before") == 3
