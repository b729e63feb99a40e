"""Dynamic hard negatives (``negatives = "dynamic"``) with the real MiniLM on FlagEmbedding's toy
file: the frozen index is memory-mapped read-only and never written; every refresh applies every
filter (positives, their near duplicates, the collection's judge verdicts, the judge in the loop),
so no batch ever trains on a filtered pair; a killed run resumes to the same weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)

from trueneg import Collection, ingest  # noqa: E402
from trueneg.exceptions import InputError  # noqa: E402
from trueneg.judge import JudgeConfig, Stage, judge_collection  # noqa: E402
from trueneg.models import Encoder, EncoderConfig  # noqa: E402
from trueneg.train import RetrieverConfig, train_retriever  # noqa: E402
from trueneg.train._loop import Schedule  # noqa: E402
from trueneg.train.dynamic import (  # noqa: E402
    FILTERS,
    DynamicConfig,
    DynamicNegatives,
    open_index,
    passage_clusters,
)

from .test_train import _kill_at_checkpoint  # noqa: E402
from .test_train import _train_cmd as static_cmd  # noqa: E402

ENV = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}
TOY = "flagembedding-examples/toy_finetune_data.jsonl"


@pytest.fixture(scope="module")
def toy(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """The toy file as Tevatron rows (ids for the qrels judge: q0.., and a docid per distinct
    text), with one near duplicate of the first query's positive (the same sentence in capitals,
    with doubled spaces: dedup's normalised-exact match) added to its negatives."""
    rows = [orjson.loads(x) for x in (data_dir / TOY).read_bytes().splitlines() if x.strip()]
    rows[0]["neg"].append(rows[0]["pos"][0].upper().replace(" ", "  "))
    docid: dict[str, str] = {}

    def passages(texts: list[str]) -> list[dict[str, str]]:
        return [
            {"docid": docid.setdefault(t, f"d{len(docid)}"), "title": "", "text": t} for t in texts
        ]

    tev = [
        {
            "query_id": f"q{i}",
            "query": r["query"],
            "positive_passages": passages(r["pos"]),
            "negative_passages": passages(r["neg"]),
        }
        for i, r in enumerate(rows)
    ]
    tmp = tmp_path_factory.mktemp("toy")
    f = tmp / "toy.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in tev))
    return ingest([f], tmp / "c", format="tevatron")


def _qrels(coll: Collection, pairs: list[tuple[int, int]], path: Path) -> Path:
    qid = coll.queries["query_id"].to_pylist()
    docid = coll.passages["docid"].to_pylist()
    lines = ["query-id\tcorpus-id\tscore"] + [f"{qid[q]}\t{docid[p]}\t1" for q, p in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


def _qrels_judge(path: Path) -> JudgeConfig:
    return JudgeConfig(stages=(Stage("qrels", "qrels", "", backend="qrels", qrels=str(path)),))


def _config(**dynamic: object) -> RetrieverConfig:
    return RetrieverConfig(
        passage_max_length=64,
        negatives="dynamic",
        dynamic=DynamicConfig(range_max=12, **dynamic),  # type: ignore[arg-type]
        schedule=Schedule(batch_size=4, epochs=2, lr=1e-4, warmup_ratio=0.0, seed=7),
    )


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_dynamic_selection_settings_are_mines() -> None:
    """One selection schema: the same fields, defaults and checks as ``trueneg mine`` (only
    ``sampling`` defaults to random, as STAR)."""
    import dataclasses

    from trueneg.mine import MineConfig, SelectionConfig

    shared = [f.name for f in dataclasses.fields(SelectionConfig)]
    dyn, mine = DynamicConfig(), MineConfig()
    assert [f.name for f in dataclasses.fields(DynamicConfig)][: len(shared)] == shared
    assert {n: getattr(dyn, n) for n in shared if n != "sampling"} == {
        n: getattr(mine, n) for n in shared if n != "sampling"
    }
    assert (dyn.sampling, mine.sampling) == ("random", "top")
    for bad, match in (
        ({"range_min": 5, "range_max": 5}, "range_min"),
        ({"relative_margin": -0.1}, "relative_margin"),
        ({"sampling": "best"}, "sampling"),
        ({"search": "faiss"}, "search"),
        ({"ann": {"conectivity": 8}}, "connectivity"),
    ):
        for cls in (DynamicConfig, MineConfig):
            with pytest.raises(InputError, match=match):
                cls(**bad)  # type: ignore[arg-type]


def test_the_frozen_index_is_never_written(toy: Collection, tmp_path: Path) -> None:
    enc = Encoder(EncoderConfig(max_length=64, dtype="fp32"))
    index = tmp_path / "index.npy"
    np.save(index, enc.encode(toy.passages["text"].to_pylist()).astype(np.float16))
    before = _digest(index)
    mm = open_index(index, len(toy.passages))
    with pytest.raises(ValueError):  # memory-mapped read-only: a write cannot happen
        mm[0, 0] = 1.0
    r = train_retriever(toy.path, tmp_path / "m", _config(index=str(index)))
    assert _digest(index) == before
    dyn = r["negatives"]
    assert dyn["refreshes"] == r["steps"] * 1 > 0 and dyn["index"] == str(index.resolve())
    assert not (tmp_path / "m.checkpoints").exists()
    # the index must hold one row per passage, and a given index cannot be refreshed (ANCE)
    np.save(tmp_path / "short.npy", np.zeros((3, 384), np.float32))
    with pytest.raises(InputError, match="rows"):
        train_retriever(toy.path, tmp_path / "m2", _config(index=str(tmp_path / "short.npy")))
    with pytest.raises(InputError, match="frozen"):
        DynamicConfig(index=str(index), index_refresh_steps=2)


def test_every_refresh_applies_every_filter(
    toy: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verdicts: the qrels judge marks one static negative of each of three queries relevant.
    In the loop: a second qrels file also marks, for every query, the passages of two other
    queries' positives relevant (pairs no verdict covers, found only by re-mining). Every batch
    the trainer sees is checked against all of it."""
    ex = toy.examples
    qids = ex["qid"].to_pylist()
    negs = ex["negatives"].to_pylist()
    pos = ex["positives"].to_pylist()
    static = [(qids[i], negs[i][0]) for i in (1, 2, 3)]
    judge_collection(toy.path, _qrels_judge(_qrels(toy, static, tmp_path / "a.tsv")))
    in_loop = static + [
        (qids[i], p) for i in range(len(qids)) for j in (1, 2) for p in pos[(i + j) % len(qids)]
    ]
    judge = _qrels_judge(_qrels(toy, in_loop, tmp_path / "b.tsv"))
    seen: list[tuple[int, list[tuple[int, int, list[int]]]]] = []
    prepare = DynamicNegatives.prepare

    def spy(self: DynamicNegatives, batch: list, step: int) -> list:
        out = prepare(self, batch, step)
        seen.append((step, out))
        return out

    monkeypatch.setattr(DynamicNegatives, "prepare", spy)
    r = train_retriever(
        toy.path,
        tmp_path / "m",
        _config(judge=judge, judge_cache=str(tmp_path / "cache.sqlite"), relative_margin=0.2),
    )
    cluster = passage_clusters(toy, "near")
    assert cluster is not None
    texts = toy.passages["text"].to_pylist()
    dup = texts.index(texts[pos[0][0]].upper().replace(" ", "  "))
    assert dup != pos[0][0] and cluster[dup] == cluster[pos[0][0]]
    banned = set(in_loop)
    assert len(seen) == r["steps"]
    for _, batch in seen:
        for i, p, chosen in batch:
            q = qids[i]
            assert p in pos[i] and len(chosen) == 7
            roots = {int(cluster[x]) for x in pos[i]}
            for n in chosen:
                assert n not in pos[i] and int(cluster[n]) not in roots
                assert (q, n) not in banned, (q, n)
    dyn = r["negatives"]
    log = dyn["log"]
    # one refresh per step (refresh_steps = 1), each with every filter's count
    assert [e["step"] for e in log] == list(range(r["steps"]))
    assert all(set(e["removed"]) == set(FILTERS) for e in log)
    for f in FILTERS:
        assert dyn["removed"][f] > 0, (f, dyn["removed"])
    # a pair the qrels do not list is deferred on, not failed, and not asked again
    assert dyn["judge_asked"] > 0 and dyn["judge_unlabelled"] == 0
    # seeded and deterministic: a second run makes the same choices
    r2 = train_retriever(
        toy.path,
        tmp_path / "m2",
        _config(judge=judge, judge_cache=str(tmp_path / "cache.sqlite"), relative_margin=0.2),
    )
    assert r2["negatives"]["removed"] == dyn["removed"]


def test_plain_dynamic_masks_only_positives(toy: Collection, tmp_path: Path) -> None:
    """ADORE's filtering (positives only), with the exact kernel and with usearch HNSW, which
    on a corpus this small finds the exact top-k: the first refresh (same starting weights)
    sees the same candidates either way."""
    runs = {}
    for search in ("exact", "ann"):
        if search == "ann":
            pytest.importorskip("usearch")
        runs[search] = train_retriever(
            toy.path,
            tmp_path / search,
            RetrieverConfig(
                passage_max_length=64,
                negatives="dynamic",
                dynamic=DynamicConfig.plain(range_max=12, search=search),
                schedule=Schedule(batch_size=4, epochs=1, lr=1e-4, seed=7),
            ),
        )["negatives"]
    for dyn in runs.values():
        removed = dyn["removed"]
        assert removed["positive"] > 0 and dyn["refreshes"] == 3  # 10 queries, batches of 4
        assert removed["duplicate"] == removed["verdict"] == removed["margin"] == 0
        assert removed["judge"] == 0
    assert runs["ann"]["log"][0] == runs["exact"]["log"][0]


def _train_cmd(coll: Path, out: Path, *extra: str) -> list[str]:
    """test_train's command (batch 2, 2 epochs, seed 5) with dynamic negatives."""
    return static_cmd(
        coll,
        out,
        "--negatives",
        "dynamic",
        "--range-max",
        "12",
        "--refresh-steps",
        "2",
        "--index-refresh-steps",
        "3",
        *extra,
    )


def test_killed_dynamic_run_resumes_to_the_same_weights(toy: Collection, tmp_path: Path) -> None:
    """Re-mined every second step, the corpus re-embedded every third (ANCE), the judge in the
    loop: kill -9 after step 4's checkpoint, rerun, and the weights equal an uninterrupted run's."""
    from safetensors.numpy import load_file

    ex = toy.examples
    pos = ex["positives"].to_pylist()
    qids = ex["qid"].to_pylist()
    pairs = [(qids[i], p) for i in range(len(qids)) for p in pos[(i + 1) % len(qids)]]
    qrels = _qrels(toy, pairs, tmp_path / "q.tsv")
    judge = tmp_path / "judge.toml"
    judge.write_text(
        f'[[judge.stages]]\nname = "qrels"\nmodel = "qrels"\nprompt = ""\n'
        f'backend = "qrels"\nqrels = "{qrels}"\n'
    )
    extra = ("--judge", str(judge))
    ref = subprocess.run(
        _train_cmd(toy.path, tmp_path / "ref", *extra, "--judge-cache", str(tmp_path / "c1")),
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    assert "dynamic negatives:" in ref.stdout
    out = tmp_path / "m"
    cmd = _train_cmd(
        toy.path, out, *extra, "--judge-cache", str(tmp_path / "c2"), "--save-steps", "1"
    )
    _kill_at_checkpoint(toy.path, out, 4, cmd)
    marker = out.with_name(out.name + ".checkpoints") / "checkpoints" / "step-4"
    state = json.loads((marker / "state.json").read_text())["negatives"]
    assert state["index_step"] == 3 and state["pools"] and state["refreshes"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "train.json").read_text())
    want = json.loads((tmp_path / "ref" / "train.json").read_text())
    assert got["resumed_from"]
    assert got["negatives"]["log"] == want["negatives"]["log"]
    assert got["negatives"]["index_refreshes"] == want["negatives"]["index_refreshes"] > 0
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
