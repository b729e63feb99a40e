"""Training on CPU with the real MiniLM: the loss falls, batches never repeat a passage, a saved
model reloads (trueneg and sentence-transformers agree), a killed run resumes to the same
weights, the reranker learns and scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)

from trueneg import Collection, ingest  # noqa: E402
from trueneg.models import Encoder, EncoderConfig  # noqa: E402
from trueneg.train import (  # noqa: E402
    Reranker,
    RerankerConfig,
    RetrieverConfig,
    train_reranker,
    train_retriever,
)
from trueneg.train._loop import Schedule, TrainData  # noqa: E402

ENV = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def toy(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """FlagEmbedding's toy fine-tuning file: 10 queries, 1 positive + 7 negatives each."""
    out = tmp_path_factory.mktemp("toy") / "c"
    return ingest([data_dir / "flagembedding-examples" / "toy_finetune_data.jsonl"], out)


def _infonce(model: str | None, coll: Collection, temperature: float) -> float:
    """Mean InfoNCE of every query over its own group (eval mode, no dropout)."""
    enc = Encoder(EncoderConfig(model=model, max_length=128))
    qe = enc.encode(coll.queries["text"].to_pylist(), "query")
    pe = enc.encode(coll.passages["text"].to_pylist())
    losses = []
    for q, pos, neg in zip(
        coll.examples["qid"].to_pylist(),
        coll.examples["positives"].to_pylist(),
        coll.examples["negatives"].to_pylist(),
        strict=True,
    ):
        s = pe[[pos[0], *neg]] @ qe[q] / temperature
        losses.append(float(np.log(np.exp(s - s.max()).sum()) + s.max() - s[0]))
    return float(np.mean(losses))


def test_retriever_learns_and_reloads(toy: Collection, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    cfg = RetrieverConfig(
        passage_max_length=128,
        temperature=0.05,
        schedule=Schedule(batch_size=4, epochs=4, lr=1e-4, warmup_ratio=0.0, seed=1),
    )
    before = _infonce(None, toy, 0.05)
    r = train_retriever(toy.path, tmp_path / "m", cfg)
    after = _infonce(str(tmp_path / "m"), toy, 0.05)
    assert r["steps"] == 12 and len(r["losses"]) == 12
    assert after < before * 0.8, (before, after)
    # the directory loads in sentence-transformers with the same pooling/normalisation
    texts = toy.passages["text"].to_pylist()[:16]
    ours = Encoder(EncoderConfig(model=str(tmp_path / "m"), max_length=128, dtype="fp32")).encode(
        texts
    )
    theirs = st.SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    saved = json.loads((tmp_path / "m" / "train.json").read_text())
    assert saved["config"]["temperature"] == 0.05 and saved["pooling"] == "mean"
    assert not (tmp_path / "m.checkpoints").exists()


def test_batches_never_repeat_a_query_or_passage(rlhn_dir: Path, tmp_path: Path) -> None:
    """The RLHN sample shares passages across queries; packed batches keep them apart, every
    example lands in exactly one batch, and positives rotate over epochs."""
    coll = ingest(sorted(rlhn_dir.glob("*.stage_1.*.jsonl")), tmp_path / "c")
    data = TrainData(coll, 7, seed=3)
    for epoch in range(3):
        batches = data.batches(epoch, 8)
        assert sorted(i for b in batches for i, _, _ in b) == sorted(data.rows.tolist())
        for b in batches:
            pids = [p for _, pos, negs in b for p in (pos, *negs)]
            assert len(pids) == len(set(pids))
            qids = [int(data.qids[i]) for i, _, _ in b]
            assert len(qids) == len(set(qids))
    multi = next(i for i in data.rows if len(data.positives[i]) > 1)
    seen = {data.group(int(multi), e)[0] for e in range(len(data.positives[multi]))}
    assert seen == set(data.positives[multi])
    negs0, negs1 = data.group(0, 0)[1], data.group(0, 1)[1]
    assert negs0 != negs1 or len(data.negatives[0]) <= 7


def _train_cmd(coll: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trueneg",
        "train",
        "retriever",
        str(coll),
        "-o",
        str(out),
        "--passage-max-length",
        "64",
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--lr",
        "1e-4",
        "--seed",
        "5",
        *extra,
    ]


def _kill_at_checkpoint(coll: Path, out: Path, step: int, cmd: list[str] | None = None) -> None:
    """Starts a training run (``cmd``, default: :func:`_train_cmd`) that checkpoints every step;
    kill -9 once step ``step`` is saved."""
    p = subprocess.Popen(
        cmd or _train_cmd(coll, out, "--save-steps", "1"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = out.with_name(out.name + ".checkpoints") / "checkpoints" / f"step-{step}"
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists() and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert marker.exists(), "the run ended before its checkpoint"


def test_killed_run_resumes_to_the_same_weights(toy: Collection, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    ref = subprocess.run(
        _train_cmd(toy.path, tmp_path / "ref"), env=ENV, capture_output=True, text=True, check=False
    )
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "m"
    _kill_at_checkpoint(toy.path, out, 3)
    assert not out.exists()
    r = subprocess.run(
        _train_cmd(toy.path, out, "--save-steps", "1"),
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "train.json").read_text())["resumed_from"]
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)


def test_stale_checkpoints_with_other_settings_are_refused(toy: Collection, tmp_path: Path) -> None:
    out = tmp_path / "m"
    _kill_at_checkpoint(toy.path, out, 1)
    r = subprocess.run(
        _train_cmd(toy.path, out, "--temperature", "0.5"),
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1
    assert "other settings or data" in r.stderr and "--no-resume" in r.stderr
    r = subprocess.run(
        _train_cmd(toy.path, out, "--temperature", "0.5", "--no-resume"),
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_reranker_learns_and_scores(toy: Collection, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    cfg = RerankerConfig(
        max_length=128, schedule=Schedule(batch_size=2, epochs=3, lr=1e-4, warmup_ratio=0.0)
    )
    r = train_reranker(toy.path, tmp_path / "rr", cfg)
    assert np.mean(r["losses"][-3:]) < np.mean(r["losses"][:3])
    rr = Reranker(tmp_path / "rr", max_length=128)
    qt = toy.queries["text"].to_pylist()
    pt = toy.passages["text"].to_pylist()
    ex = toy.examples
    q = [qt[i] for i in ex["qid"].to_pylist()]
    pos = rr.score(q, [pt[p[0]] for p in ex["positives"].to_pylist()])
    neg = rr.score(q, [pt[n[0]] for n in ex["negatives"].to_pylist()])
    assert (pos > neg).mean() >= 0.8
    ce = st.CrossEncoder(str(tmp_path / "rr"), device="cpu", max_length=128)
    theirs = ce.predict(
        list(zip(q, [pt[p[0]] for p in ex["positives"].to_pylist()], strict=True)),
        activation_fn=torch.nn.Identity(),
    )
    np.testing.assert_allclose(pos, theirs, atol=1e-4)


def test_cross_encoder_as_the_judges_local_scorer(toy: Collection, tmp_path: Path) -> None:
    """A reranker trained here pre-filters the judge: negatives scoring within the margin of the
    positive are 'uncertain' (their calls go on), the rest 'not_relevant', scores kept."""
    from trueneg.judge import Cache
    from trueneg.judge.cascade import JudgeConfig, Stage, run_cascade

    cfg = RerankerConfig(max_length=96, schedule=Schedule(batch_size=2, max_steps=3, lr=1e-4))
    train_reranker(toy.path, tmp_path / "rr", cfg)
    stage = Stage(
        "ce",
        str(tmp_path / "rr"),
        "gpt-4o-mini",
        backend="local",
        local_scorer="cross-encoder",
        local_margin=0.0,
    )
    with Cache(tmp_path / "c.sqlite") as cache:
        summary, table = run_cascade(toy, JudgeConfig(stages=(stage,)), cache, offline=True)
    rr = Reranker(tmp_path / "rr")
    qt, pt = toy.queries["text"].to_pylist(), toy.passages["text"].to_pylist()
    ex = toy.examples
    rows = table.to_pylist()
    assert len(rows) == sum(len(n) for n in ex["negatives"].to_pylist())
    for e in range(len(ex)):
        q = qt[ex["qid"][e].as_py()]
        pos = ex["positives"][e].as_py()
        ref = float(rr.score([q] * len(pos), [pt[p] for p in pos]).min())
        mine = [r for r in rows if r["example"] == e]
        sims = rr.score([q] * len(mine), [pt[r["pid"]] for r in mine])
        np.testing.assert_allclose([r["similarity"] for r in mine], sims, atol=1e-4)
        for r, s in zip(mine, sims, strict=True):
            assert r["label"] == ("uncertain" if s >= ref else "not_relevant")
    assert summary.stages[0].flagged_calls == len(
        {r["example"] for r in rows if r["label"] == "uncertain"}
    )
    assert not any(r["flagged"] for r in rows)


def _cisi_rows(data_dir: Path) -> list[dict]:
    import orjson

    docs = [
        orjson.loads(x)
        for x in (data_dir / "beir-cisi" / "corpus.jsonl").read_bytes().splitlines()[:8]
    ]
    p = [{"docid": d["_id"], "title": d.get("title", ""), "text": d["text"]} for d in docs]
    # one query in two examples (as a BEIR folder with interleaved qrels gives): each example's
    # positive appears among the other's negatives
    return [
        {
            "query_id": "q1",
            "query": "information retrieval evaluation",
            "positive_passages": [p[0]],
            "negative_passages": [p[1], p[2], p[3]],
        },
        {
            "query_id": "q1",
            "query": "information retrieval evaluation",
            "positive_passages": [p[1], p[4], p[5]],
            "negative_passages": [p[0], p[6]],
        },
        {
            "query_id": "q2",
            "query": "library automation",
            "positive_passages": [p[6]],
            "negative_passages": [p[7], p[0]],
        },
    ]


def test_rows_per_positive_and_all_positives_of_a_query_masked(
    data_dir: Path, tmp_path: Path
) -> None:
    import orjson

    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _cisi_rows(data_dir)))
    coll = ingest([f], tmp_path / "c", format="tevatron")
    docid = coll.passages["docid"].to_pylist()
    one = TrainData(coll, 7, seed=0)
    assert len(one) == 3  # a row per example
    # no negative of a q1 example is a positive of any q1 example
    for i in (0, 1):
        _, negs = one.group(i, 0)
        assert {docid[n] for n in negs}.isdisjoint({"1", "2", "5", "6"} & set(docid))
    _, negs2 = one.group(2, 0)  # q2's negatives keep the passage that is q1's positive
    assert docid[coll.examples["positives"].to_pylist()[0][0]] in {docid[n] for n in negs2}
    each = TrainData(coll, 7, seed=0, rows="positive")
    assert len(each) == 1 + 3 + 1
    rows_of_1 = [each.group(1, 0, r)[0] for r in range(3)]
    assert sorted(rows_of_1) == sorted(coll.examples["positives"].to_pylist()[1])
    matched = TrainData(coll, 7, seed=0, row_counts=[1, 1, 1])
    assert len(matched) == 3
    seen = {matched.group(1, e)[0] for e in range(6)}
    assert seen == set(coll.examples["positives"].to_pylist()[1])
    with pytest.raises(Exception, match="row_counts"):
        TrainData(coll, 7, seed=0, row_counts=[1, 1])


def test_max_steps_runs_across_epochs_and_the_summary_is_true(
    toy: Collection, tmp_path: Path
) -> None:
    from trueneg.cli.train import loss_summary

    cfg = RetrieverConfig(
        passage_max_length=64,
        query_max_length=32,
        schedule=Schedule(batch_size=4, max_steps=5, lr=1e-5, seed=2),
    )
    r = train_retriever(toy.path, tmp_path / "m", cfg)
    assert r["steps"] == 5 and len(r["losses"]) == 5 and r["epochs"] == 2 and r["rows"] == 10
    assert r["peak_rss_mb"] > 100
    assert loss_summary([3.14, 5.35, 5.13, 1e-6]) == "loss per step 3.14, 5.35, 5.13, 1e-06"
    long = [float(x) for x in range(20, 0, -1)]
    assert loss_summary(long) == "mean loss of the first / last 2 steps 19.5000 -> 1.5000"
    assert loss_summary([]) == "no steps"


def test_checkpointing_turns_on_when_a_step_would_not_fit(toy: Collection, tmp_path: Path) -> None:
    from trueneg.train._loop import activation_gb

    small = Encoder(EncoderConfig()).model_config
    assert activation_gb(small, 128, 256) > 2 * activation_gb(small, 128, 128) > 0
    # MiniLM, 16 rows x 8 passages x 256 tokens: far over 4 GB without checkpointing
    assert activation_gb(small, 128, 256) > 4

    def cfg(**kw: object) -> RetrieverConfig:
        return RetrieverConfig(
            passage_max_length=64,
            query_max_length=32,
            dropout=0.0,  # chunks draw dropout masks in another order; without it, exact
            schedule=Schedule(batch_size=4, max_steps=2, precision="fp32", seed=5, **kw),  # type: ignore[arg-type]
        )

    # a limit this tight leaves room for a few sequences at a time: the step is encoded in
    # checkpointed chunks, and trains exactly as the unchunked step (same losses, same weights)
    tight = train_retriever(toy.path, tmp_path / "a", cfg(memory_limit_gb=2.005))
    roomy = train_retriever(toy.path, tmp_path / "b", cfg(memory_limit_gb=64))
    assert str(tight["gradient_checkpointing"]).startswith("chunks of ")
    assert roomy["gradient_checkpointing"] is False
    np.testing.assert_allclose(tight["losses"], roomy["losses"], rtol=1e-4)
    forced = train_retriever(toy.path, tmp_path / "c", cfg(gradient_checkpointing=True))
    assert forced["gradient_checkpointing"] is True
