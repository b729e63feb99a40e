"""The quality loop on a tiny slice of real CISI: ``trueneg experiment`` runs every condition end
to end through the CLI, the result has its schema, the qrels oracle flags exactly the negatives
the qrels mark relevant, the step-matched control trains as many rows and steps as noisy, the
report shows the result; the qrels judge labels graded, sub-threshold and unjudged pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

pytest.importorskip("torch")
pytest.importorskip("pytrec_eval")

from trueneg import Collection, ingest, judgments
from trueneg.cli import spread_multi_options
from trueneg.evaluate import load_beir, read_qrels
from trueneg.exceptions import InputError
from trueneg.experiment import (
    CONDITIONS,
    DYNAMIC_CONDITIONS,
    METRICS,
    ExperimentConfig,
    _default_recipe,
    run_experiment,
)
from trueneg.fix import false_negative_pairs
from trueneg.judge import JudgeConfig, Stage, judge_collection

ENV = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "2"}


def _jsonl(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def cisi_slice(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 judged CISI queries, up to 12 of the relevant passages of each and 120 others."""
    src = data_dir / "beir-cisi"
    qrels = read_qrels(src)
    queries = [q for q in _jsonl(src / "queries.jsonl") if len(qrels.get(q["_id"], {})) >= 8][:10]
    keep_docs: set[str] = set()
    for q in queries:
        keep_docs.update(sorted(qrels[q["_id"]])[:12])
    corpus = _jsonl(src / "corpus.jsonl")
    others = [d for d in corpus if d["_id"] not in keep_docs][:120]
    docs = [d for d in corpus if d["_id"] in keep_docs] + others
    out = tmp_path_factory.mktemp("slice") / "cisi-slice"
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    (out / "queries.jsonl").write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in queries))
    ids = {d["_id"] for d in docs}
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q['_id']}\t{d}\t{g}" for q in queries for d, g in qrels[q["_id"]].items() if d in ids
    ]
    (out / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def run(cisi_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("exp")
    out = work / "out" / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "trueneg",
        "experiment",
        str(cisi_slice),
        "-o",
        str(out),
        "--seeds",
        "3",
        "--positives",
        "2",
        "--mine-depth",
        "10",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--eval-precision",
        "auto",
        "--dynamic",
        "--workdir",
        str(work / "w"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "relabel-matched" in p.stdout and "wrote" in p.stdout
    return work, json.loads(out.read_text())


def test_result_schema(run: tuple[Path, dict]) -> None:
    work, r = run
    assert r["dataset"] == "cisi-slice"
    assert r["settings"]["seeds"] == [3] and r["settings"]["judge"] == "qrels"
    assert set(r["conditions"]) == set(CONDITIONS + DYNAMIC_CONDITIONS)
    for name, c in r["conditions"].items():
        for m in METRICS:
            assert set(c[m]) == {"mean", "std", "per_seed"}
            assert len(c[m]["per_seed"]) == 1
        assert len(c["rows"]) == len(c["steps"]) == 1
        if name != "remove":  # remove may leave no query (every one has a false negative)
            assert 0 < c["nDCG@10"]["mean"] <= 1
    assert set(r["paired"]) == set(CONDITIONS + DYNAMIC_CONDITIONS) - {"noisy"}
    d = r["paired"]["relabel"]["delta_vs_noisy"]["mean"]
    c = r["conditions"]
    assert d == pytest.approx(c["relabel"]["nDCG@10"]["mean"] - c["noisy"]["nDCG@10"]["mean"])
    fn = r["false_negatives"]
    assert 0 < fn["share_of_mined_negatives"] < 1 and 0 < fn["rows_with_false_negatives"] <= 1
    # noisy trains on K = 2 labelled positives per query; relabel adds its false negatives as
    # rows; the matched control has noisy's rows and steps
    assert c["noisy"]["rows"][0] == 2 * fn["per_seed"][0]["train_queries"]
    assert c["relabel"]["rows"][0] > c["noisy"]["rows"][0]
    assert c["relabel-matched"]["rows"] == c["noisy"]["rows"]
    assert c["relabel-matched"]["steps"] == c["noisy"]["steps"] == [1]
    assert c["zero-shot"]["steps"] == [0]
    # dynamic trains noisy's rows, dynamic-filtered relabel's, with negatives re-mined each step;
    # ADORE's filtering masks only positives, the filtered condition runs every filter and the
    # qrels oracle in the loop; both are compared with static relabel and carry their cost
    assert c["dynamic"]["rows"] == c["noisy"]["rows"]
    assert c["dynamic-filtered"]["rows"] == c["relabel"]["rows"]
    plain, filtered = c["dynamic"]["dynamic"][0], c["dynamic-filtered"]["dynamic"][0]
    assert plain["refreshes"] == filtered["refreshes"] == 1
    assert plain["removed"]["positive"] > 0 and plain["removed"]["margin"] == 0
    assert filtered["removed"]["positive"] > 0 and filtered["judge_asked"] > 0
    assert "eci" not in c["dynamic"] and c["dynamic"]["train_seconds"]["mean"] > 0
    assert "delta_vs_relabel" in r["paired"]["dynamic-filtered"]
    md = (work / "out" / "result.md").read_text()
    assert "| relabel-matched |" in md and "| dynamic-filtered |" in md
    assert "Cohen's kappa 1.000" in md
    assert (work / "out" / "result.png").read_bytes()[:4] == b"\x89PNG"


def test_oracle_flags_equal_the_qrels(run: tuple[Path, dict], cisi_slice: Path) -> None:
    """Every mined negative the qrels call relevant is flagged, and nothing else."""
    work, r = run
    coll = Collection.load(work / "w" / "seed-3" / "noisy")
    qrels = read_qrels(cisi_slice)
    qid = coll.queries["query_id"].to_pylist()
    docid = coll.passages["docid"].to_pylist()
    truth = {
        (e, p)
        for e, (q, negs) in enumerate(
            zip(
                coll.examples["qid"].to_pylist(),
                coll.examples["negatives"].to_pylist(),
                strict=True,
            )
        )
        for p in negs
        if qrels[qid[q]].get(docid[p], 0) >= 1
    }
    pairs = false_negative_pairs(judgments.load(coll.path))
    flagged = set(zip(pairs["example"].to_pylist(), pairs["pid"].to_pylist(), strict=True))
    assert truth and flagged == truth
    q = r["judge_quality"]
    assert q["precision"] == q["recall"] == q["kappa"] == 1.0
    assert (
        q["per_seed"][0]["tp"]
        == len(truth)
        == r["false_negatives"]["per_seed"][0]["false_negatives"]
    )
    # no labelled positive (and no exact text copy of one) was mined as a negative
    texts = coll.passages["text"].to_pylist()
    for pos, negs in zip(
        coll.examples["positives"].to_pylist(), coll.examples["negatives"].to_pylist(), strict=True
    ):
        assert not {texts[p] for p in pos} & {texts[p] for p in negs}
    # the relabel collection holds the flagged pairs as positives
    rel = Collection.load(work / "w" / "seed-3" / "relabel")
    moved = sum(len(p) for p in rel.examples["positives"].to_pylist()) - sum(
        len(p) for p in coll.examples["positives"].to_pylist()
    )
    assert moved == len(truth)


def test_rerun_resumes_and_report_shows_it(
    run: tuple[Path, dict], cisi_slice: Path, tmp_path: Path
) -> None:
    """A second run over the same work folder recomputes nothing (same numbers, fast path), and
    ``trueneg report --experiment`` shows the table and the plot."""
    work, r = run
    seed_dir = work / "w" / "seed-3"
    stamps = {p.name: p.stat().st_mtime_ns for p in seed_dir.glob("*.json")}
    recipe = _default_recipe()
    cfg = ExperimentConfig(
        seeds=(3,),
        labelled_positives=2,
        mine_depth=10,
        eval_precision="auto",
        dynamic=True,
        recipe=replace(recipe, schedule=replace(recipe.schedule, max_steps=1, batch_size=4)),
    )
    again = run_experiment(cisi_slice, cfg, workdir=work / "w")
    assert again["conditions"] == r["conditions"]
    assert {p.name: p.stat().st_mtime_ns for p in seed_dir.glob("*.json")} == stamps
    rep = tmp_path / "rep"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "report",
            str(seed_dir / "noisy"),
            "-o",
            str(rep),
            "--experiment",
            str(work / "out" / "result.json"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert p.returncode == 0, p.stderr
    md = (rep / "report.md").read_text()
    assert "## Experiment: cisi-slice" in md and "relabel-matched" in md
    assert (rep / "experiment-cisi-slice.png").is_file()


def test_qrels_judge_labels(data_dir: Path, tmp_path: Path) -> None:
    """Graded qrels with a threshold: grade >= 2 flagged, grade 1 not relevant, absent pairs
    "unjudged" (no label); a collection without query ids is refused in one line."""
    corpus = {d["_id"]: d for d in _jsonl(data_dir / "beir-msmarco-dl19-5k" / "corpus.jsonl")}
    qrels = read_qrels(data_dir / "beir-msmarco-dl19-5k")
    q = next(q for q in qrels if {1, 2, 3} <= set(qrels[q].values()))
    by = {g: sorted(d for d, x in qrels[q].items() if x == g) for g in (1, 2, 3)}
    unjudged = sorted(set(corpus) - set(qrels[q]))[:2]
    query = next(
        x for x in _jsonl(data_dir / "beir-msmarco-dl19-5k" / "queries.jsonl") if x["_id"] == q
    )

    def p(d: str) -> dict:
        return {"docid": d, "title": corpus[d].get("title", ""), "text": corpus[d]["text"]}

    negs = [by[3][0], by[2][0], by[1][0], *unjudged]
    row = {
        "query_id": q,
        "query": query["text"],
        "positive_passages": [p(by[3][1])],
        "negative_passages": [p(d) for d in negs],
    }
    f = tmp_path / "train.jsonl"
    f.write_bytes(orjson.dumps(row) + b"\n")
    coll = ingest([f], tmp_path / "c", format="tevatron")
    cfg = JudgeConfig(
        stages=(
            Stage(
                "human",
                "qrels",
                "",
                backend="qrels",
                qrels=str(data_dir / "beir-msmarco-dl19-5k"),
                relevance_threshold=2,
            ),
        )
    )
    s = judge_collection(coll.path, cfg)
    assert s.false_negatives == 2 and s.cost_usd == 0
    assert s.stages[0].statuses == {"ok": 3, "unjudged": 2}
    t = judgments.load(coll.path).to_pylist()
    docids = coll.passages["docid"].to_pylist()
    got = {docids[r["pid"]]: (r["label"], r["flagged"], r["status"]) for r in t}
    assert got[by[3][0]] == ("relevant", True, "ok")
    assert got[by[2][0]] == ("relevant", True, "ok")
    assert got[by[1][0]] == ("not_relevant", False, "ok")
    assert got[unjudged[0]] == (None, False, "unjudged")
    with pytest.raises(InputError, match="needs qrels"):
        Stage("human", "qrels", "", backend="qrels")
    bge = ingest(
        [data_dir / "flagembedding-examples" / "toy_finetune_data.jsonl"], tmp_path / "bge"
    )
    with pytest.raises(InputError, match="no query ids"):
        judge_collection(bge.path, cfg)


def test_seeds_take_several_values_and_settings_are_checked() -> None:
    assert spread_multi_options(["experiment", "d", "--seeds", "0", "1", "2", "-o", "x"]) == [
        "experiment",
        "d",
        "--seeds",
        "0",
        "--seeds",
        "1",
        "--seeds",
        "2",
        "-o",
        "x",
    ]
    with pytest.raises(InputError, match="seeds repeat"):
        ExperimentConfig(seeds=(1, 1))
    with pytest.raises(InputError, match="unknown conditions"):
        ExperimentConfig(conditions=("noisy", "cleaned"))
    with pytest.raises(InputError, match="test_share"):
        ExperimentConfig(test_share=1.0)


def test_split_and_labelled_positives_are_seeded(data_dir: Path) -> None:
    from trueneg.experiment import labelled_positives, split_queries

    data = load_beir(data_dir / "beir-cisi")
    cfg = ExperimentConfig()
    a, b, c = (split_queries(data, cfg, s) for s in (0, 0, 1))
    assert a == b and a != c
    assert not set(a.train) & set(a.test) and len(a.train) + len(a.test) == 76
    rel = {d: g for d, g in data.qrels[data.query_ids[a.train[0]]].items() if g >= 1}
    k1 = labelled_positives(rel, cfg, 0, a.train[0])
    assert len(k1) == 4 and set(k1) <= set(rel)
    assert k1 == labelled_positives(rel, cfg, 0, a.train[0])
    assert k1 != labelled_positives(rel, cfg, 1, a.train[0])


def test_arhn_judge_and_syneg_refill_in_the_experiment(cisi_slice: Path, tmp_path: Path) -> None:
    """`trueneg experiment` with an ARHN judge TOML and a SyNeg generate TOML, both answered by
    the scripted model on the test server: ARHN's relabels are the judge's flags, its ambiguous
    negatives are dropped by the fix, and the +syneg conditions train on refilled sets."""
    from .fake_openai import FakeOpenAI, State
    from .scripted_llm import ScriptedLLM, scripted_negatives

    llm = ScriptedLLM()
    llm.generate = scripted_negatives
    state = State()
    state.responder = llm
    out = tmp_path / "r.json"
    with FakeOpenAI(state) as srv:
        judge = tmp_path / "arhn.toml"
        judge.write_text(
            f'[judge]\nbase_url = "{srv.base_url}"\n[[judge.stages]]\nname = "arhn"\n'
            'model = "qwen3-32b"\nmethod = "arhn"\narhn_rule = "R+F"\n'
        )
        gen = tmp_path / "gen.toml"
        gen.write_text(
            f'[generate]\nbase_url = "{srv.base_url}"\nmodel = "qwen3-32b"\nper_call = 5\n'
            "mix_ratio = 0.2\nrefill_to = 10\n"
        )
        cmd = [
            *("experiment", str(cisi_slice), "-o", str(out), "--seeds", "0"),
            *("--positives", "2", "--mine-depth", "10", "--max-steps", "1", "--batch-size", "4"),
            *("--judge", str(judge), "--generate", str(gen), "--workdir", str(tmp_path / "w")),
            *("--conditions", "noisy,relabel,relabel+syneg"),
        ]
        env = {**ENV, "OPENAI_API_KEY": "sk-test"}
        p = subprocess.run(
            [sys.executable, "-m", "trueneg", *cmd],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert set(r["conditions"]) == {"noisy", "relabel", "relabel+syneg"}
    assert r["conditions"]["relabel+syneg"]["nDCG@10"]["mean"] is not None
    assert llm.rank_calls > 0 and llm.answer_calls > 0 and llm.generate_calls > 0
    sy = r["false_negatives"]["per_seed"][0]["syneg"]["relabel+syneg"]
    assert sy["used"] > 0 and sy["refilled"] > 0
    w = tmp_path / "w" / "seed-0"
    t = judgments.load(w / "noisy")
    labels = set(t["label"].to_pylist())
    assert {"relabel", "ambiguous"} <= labels
    flagged = r["judge_quality"]["per_seed"][0]["flagged"]
    assert flagged == sum(x == "relabel" for x in t["label"].to_pylist()) > 0
    fix = orjson.loads((w / "relabel" / "fix.json").read_bytes())
    assert fix["dropped_ambiguous"] == sum(x == "ambiguous" for x in t["label"].to_pylist())
    syneg = Collection.load(w / "relabel+syneg")
    assert len(syneg.passages) > len(Collection.load(w / "relabel").passages)
    # every trained condition carries its training set's ECI (generated passages embedded too),
    # and the result correlates them with nDCG@10
    for c in ("noisy", "relabel", "relabel+syneg"):
        terms = r["conditions"][c]["eci_terms"][0]
        assert terms["eci"] > 0 and 0 < terms["safety"] <= 1
    assert r["eci_vs_ndcg"]["pairs"] == 3
    assert "ECI of the training set vs trained nDCG@10" in (out.with_suffix(".md")).read_text()
