"""Evaluation on the real BEIR-format sets: metrics equal pytrec_eval's on an independently
built run; kappa equals scikit-learn's; bad files are named; the CLI writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytrec_eval = pytest.importorskip("pytrec_eval")

from trueneg.evaluate import (  # noqa: E402
    agreement,
    evaluate_beir,
    load_beir,
    load_labels,
    metrics,
    table,
)
from trueneg.exceptions import InputError  # noqa: E402
from trueneg.models import Encoder, EncoderConfig  # noqa: E402

SETS = ["beir-cisi", "beir-cranfield", "beir-msmarco-dl19-5k"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """MiniLM with an embedding cache, so the independent check below re-uses the embeddings."""
    import torch

    torch.set_num_threads(2)
    cache = tmp_path_factory.mktemp("emb")
    return Encoder(EncoderConfig(max_length=128, cache_dir=str(cache)))


@pytest.fixture(scope="module")
def result(data_dir: Path, encoder: Encoder) -> dict:
    return evaluate_beir([data_dir / s for s in SETS], encoder)


@pytest.mark.parametrize("name", SETS)
def test_metrics_equal_pytrec_eval(
    data_dir: Path, encoder: Encoder, result: dict, name: str
) -> None:
    data = load_beir(data_dir / name)
    qe = encoder.encode(data.query_texts, "query")
    de = encoder.encode(data.doc_texts)
    s = qe @ de.T
    run = {}
    for i, q in enumerate(data.query_ids):
        top = np.argsort(-s[i], kind="stable")[:101]
        hits = {data.doc_ids[j]: float(s[i, j]) for j in top if data.doc_ids[j] != q}
        run[q] = dict(list(hits.items())[:100])
    ev = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(h.items(), key=lambda x: -x[1])[:10]) for q, h in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(data.qrels, {"recip_rank"}).evaluate(top10)
    got = result["datasets"][name]["retrieval"]
    assert got["queries"] == len(ev) == len(data.query_ids)
    assert got["nDCG@10"] == pytest.approx(
        np.mean([v["ndcg_cut_10"] for v in ev.values()]), abs=1e-6
    )
    assert got["Recall@100"] == pytest.approx(
        np.mean([v["recall_100"] for v in ev.values()]), abs=1e-6
    )
    assert got["MRR@10"] == pytest.approx(np.mean([v["recip_rank"] for v in rr.values()]), abs=1e-6)
    assert 0.05 < got["nDCG@10"] < 0.95  # a real model on real data, not a degenerate run


def test_average_and_table(result: dict) -> None:
    avg = result["average"]["retrieval"]["nDCG@10"]
    assert avg == pytest.approx(
        np.mean([result["datasets"][s]["retrieval"]["nDCG@10"] for s in SETS])
    )
    t = table(result)
    assert t.count("\n") == len(SETS) + 2 and "**average**" in t and f"{avg:.4f}" in t


def test_kappa_equals_scikit_learn(data_dir: Path, encoder: Encoder) -> None:
    """Human labels: DL19's graded qrels (relevant = grade >= 2); judge: MiniLM cosine >= 0.5."""
    sk = pytest.importorskip("sklearn.metrics")
    data = load_beir(data_dir / "beir-msmarco-dl19-5k")
    qe = dict(zip(data.query_ids, encoder.encode(data.query_texts, "query"), strict=True))
    de = dict(zip(data.doc_ids, encoder.encode(data.doc_texts), strict=True))
    judge, human = [], []
    for q, docs in data.qrels.items():
        if q not in qe:
            continue
        for d, g in docs.items():
            if d in de:
                judge.append(bool(qe[q] @ de[d] >= 0.5))
                human.append(g >= 2)
    assert len(judge) > 1000 and 0 < sum(judge) < len(judge)
    r = agreement(judge, human)
    assert r["kappa"] == pytest.approx(sk.cohen_kappa_score(human, judge), abs=1e-12)
    assert r["precision"] == pytest.approx(sk.precision_score(human, judge), abs=1e-12)
    assert r["recall"] == pytest.approx(sk.recall_score(human, judge), abs=1e-12)


def test_bad_files_are_named(tmp_path: Path, data_dir: Path) -> None:
    import shutil

    b = tmp_path / "b"
    shutil.copytree(data_dir / "beir-cisi", b)
    (b / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t28\tx\n")
    with pytest.raises(InputError, match=r"test.tsv:2: field 'score': expected an integer"):
        load_beir(b)
    (b / "qrels" / "test.tsv").write_text("1\t28\t1\n")
    with (b / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "x"}\n')
    with pytest.raises(InputError, match=r"corpus.jsonl:1461: .*'text'"):
        load_beir(b)
    with pytest.raises(InputError, match="no query of the run has qrels"):
        metrics({"1": {"a": 1}}, {"2": {"a": 1.0}})
    lab = tmp_path / "l.tsv"
    lab.write_text("judge\thuman\nyes\t2\nno\tmaybe\n")
    with pytest.raises(InputError, match=r"l.tsv:3: field human"):
        load_labels(lab)


def test_cli(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}
    lab = tmp_path / "l.jsonl"
    lab.write_text(
        "\n".join(
            json.dumps({"judge": j, "human": h})
            for j, h in [(True, 3), (False, 0), (True, 0), (False, 2), (True, 1)]
        )
        + "\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "eval",
            "agreement",
            str(lab),
            "-o",
            str(tmp_path / "a.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (2, 1, 1, 1)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "eval",
            "beir",
            str(data_dir / "beir-cisi"),
            "--max-length",
            "64",
            "-o",
            str(tmp_path / "r.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    assert "beir-cisi" in r.stdout and 0 < res["datasets"]["beir-cisi"]["retrieval"]["nDCG@10"] < 1


def test_defaults_reproduce_sentence_transformers_numbers(data_dir: Path, tmp_path: Path) -> None:
    """``trueneg eval beir`` with its defaults (the model's max_seq_length 256, fp32, passages
    as title + text) gives what sentence-transformers + pytrec_eval give for all-MiniLM-L6-v2 on
    CISI: nDCG@10 0.4193 (measured outside the project)."""
    out = tmp_path / "r.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "eval",
            "beir",
            str(data_dir / "beir-cisi"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"},
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(out.read_text())["datasets"]["beir-cisi"]["retrieval"]["nDCG@10"]
    assert got == pytest.approx(0.4193, abs=0.001)
