"""Fix strategies pinned on the real RLHN sample (hand-checked against its verdicts), thresholds,
exemptions, free false negatives, shuffled ids, scores following their passages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from trueneg import Collection, _core, export_collection, ingest, judgments
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.dedup import dedup_collection
from trueneg.exceptions import InputError
from trueneg.fix import apply_strategy, false_negative_pairs, fix_collection
from trueneg.judge import Cache, judge_collection
from trueneg.judge.cascade import RLHN_STAGES
from trueneg.judge.importers import import_rlhn

from .helpers import write_lines


def _judged(tmp_path: Path, files: list[Path] | None = None, subset: str | None = None) -> Path:
    c = tmp_path / "c"
    ingest(files or rlhn_sample_stage1(), c, subset=subset)
    with Cache(c / "judge-cache.sqlite") as cache:
        import_rlhn(cache, rlhn_sample_stage1(), RLHN_STAGES[0])
        import_rlhn(cache, sorted(RLHN_SAMPLE_DIR.glob("*stage_2*")), RLHN_STAGES[1])
    judge_collection(c, offline=True)
    return c


def _row(qid: str) -> dict:
    for f in rlhn_sample_stage1():
        for line in f.read_bytes().splitlines():
            r = orjson.loads(line)
            if r["query_id"] == qid:
                return r
    raise KeyError(qid)


def _stage2(qid: str) -> dict:
    for f in sorted(RLHN_SAMPLE_DIR.glob("*stage_2*")):
        for line in f.read_bytes().splitlines():
            r = orjson.loads(line)
            if r["query_id"] == qid:
                return r
    raise KeyError(qid)


def _expected_fn_docids(qid: str) -> list[str]:
    """Hand-reading of the recorded GPT-4o verdict: docs in <better> and <worse>, by position."""
    import re

    r = _stage2(qid)
    verdict = r["response"].split("<verdict>")[-1]
    nums = [int(x) for x in re.findall(r"Doc \((\d+)\)", verdict)]
    return [r["negative_passage_ids"][k - 1] for k in dict.fromkeys(nums)]


def test_strategies_on_the_real_sample(tmp_path: Path) -> None:
    c = _judged(tmp_path)
    coll = Collection.load(c)
    qids = coll.queries["query_id"].to_pylist()
    docid = coll.passages["docid"].to_pylist()
    ex_q = [qids[q] for q in coll.examples["qid"].to_pylist()]
    # an example stage 2 flagged with a few docs: check the three outputs by docid
    forwarded = (
        (RLHN_SAMPLE_DIR / "query_ids" / "fiqa.stage_1.query_ids.with.false_negatives.txt")
        .read_text()
        .split()
    )
    target = next(q for q in forwarded if 0 < len(_expected_fn_docids(q)) <= 7)
    fn = _expected_fn_docids(target)
    row = _row(target)
    pos_ids = [p["docid"] for p in row["positive_passages"]]
    neg_ids = [p["docid"] for p in row["negative_passages"]]
    i = ex_q.index(target)

    remove = fix_collection(c, tmp_path / "remove", "remove")
    rh = fix_collection(c, tmp_path / "rh", "remove-hn")
    rl = fix_collection(c, tmp_path / "rl", "relabel")
    assert (remove.examples_after, rh.examples_after, rl.examples_after) == (22, 49, 49)
    assert remove.false_negatives == rh.false_negatives == rl.false_negatives == 76
    assert (
        rl.moved_to_positives == 76 - 9 and rl.dropped_for_threshold == 1
    )  # one MS MARCO query has 9 (> 7)

    def lists(path: Path, q: str) -> tuple[list[str], list[str]] | None:
        x = Collection.load(path)
        xq = [qids[k] for k in x.examples["qid"].to_pylist()]
        if q not in xq:
            return None
        j = xq.index(q)
        return (
            [docid[p] for p in x.examples["positives"][j].as_py()],
            [docid[p] for p in x.examples["negatives"][j].as_py()],
        )

    assert lists(tmp_path / "remove", target) is None
    assert lists(tmp_path / "rh", target) == (pos_ids, [d for d in neg_ids if d not in fn])
    assert lists(tmp_path / "rl", target) == (
        pos_ids + [d for d in neg_ids if d in fn],
        [d for d in neg_ids if d not in fn],
    )
    # an example no stage flagged is unchanged under every strategy
    clean = next(q for q in ex_q if q not in forwarded and not q.startswith("msmarco") and _row(q))
    for p in ("remove", "rh", "rl"):
        assert lists(tmp_path / p, clean) == (
            [d["docid"] for d in _row(clean)["positive_passages"]],
            [d["docid"] for d in _row(clean)["negative_passages"]],
        )
    assert i >= 0


def test_threshold_k_and_reference_k8(tmp_path: Path) -> None:
    c = _judged(tmp_path)
    counts = np.bincount(false_negative_pairs(judgments.load(c))["example"].to_numpy())
    assert counts.max() == 9
    r8 = fix_collection(c, tmp_path / "k8", "relabel", max_false_negatives=8)
    assert r8.dropped_for_threshold == int((counts > 8).sum()) == 1
    r3 = fix_collection(c, tmp_path / "k3", "remove-hn", max_false_negatives=3)
    assert r3.dropped_for_threshold == int((counts > 3).sum())
    rn = fix_collection(c, tmp_path / "kn", "relabel", max_false_negatives=None)
    assert rn.examples_after == 50 and rn.moved_to_positives == 76


def test_exempt_subset_is_left_alone(tmp_path: Path) -> None:
    # the FiQA file ingested under the name "arguana": never relabelled, as in the paper
    files = [RLHN_SAMPLE_DIR / "fiqa.stage_1.gpt-4o-mini.jsonl"]
    c = tmp_path / "c"
    rows = [orjson.loads(x) for x in files[0].read_bytes().splitlines()]
    for r in rows:
        r["subset"] = "arguana"
    src = write_lines(tmp_path / "arguana.jsonl", [orjson.dumps(r) for r in rows])
    ingest([src], c)
    with Cache(c / "judge-cache.sqlite") as cache:
        import_rlhn(cache, files, RLHN_STAGES[0])
        import_rlhn(cache, [RLHN_SAMPLE_DIR / "fiqa.stage_2.gpt-4o.jsonl"], RLHN_STAGES[1])
    judge_collection(c, offline=True)
    r = fix_collection(c, tmp_path / "rl", "relabel")
    assert r.exempt_subsets == ["arguana"] and r.moved_to_positives == 0 and r.examples_after == 25
    before = Collection.load(c).examples
    after = Collection.load(tmp_path / "rl").examples
    assert after["positives"].equals(before["positives"]) and after["negatives"].equals(
        before["negatives"]
    )
    r2 = fix_collection(c, tmp_path / "rl2", "relabel", exempt=None)
    assert r2.moved_to_positives == 23  # 2 + 21 FiQA stage-2 documents
    assert (
        fix_collection(c, tmp_path / "rm", "remove").exempt_subsets == []
    )  # remove ignores exemptions


def test_free_false_negatives_count_and_ids_not_positions(tmp_path: Path) -> None:
    rows = [
        orjson.loads(x)
        for x in (RLHN_SAMPLE_DIR / "fiqa.stage_1.gpt-4o-mini.jsonl").read_bytes().splitlines()
    ]
    p0 = rows[0]["positive_passages"][0]
    rows[0]["negative_passages"].insert(3, {**p0, "docid": "copy-of-positive"})
    rng = np.random.default_rng(1)
    for r in rows:  # shuffle the negatives: fixing goes by passage id, never by position
        order = rng.permutation(len(r["negative_passages"]))
        r["negative_passages"] = [r["negative_passages"][k] for k in order]
    src = write_lines(tmp_path / "fiqa.jsonl", [orjson.dumps(r) for r in rows])
    ingest([src], tmp_path / "c")
    dedup_collection(Collection.load(tmp_path / "c"), out=tmp_path / "d")
    r = fix_collection(tmp_path / "d", tmp_path / "rl", "relabel")
    assert r.false_negatives == 1 and r.moved_to_positives == 1
    out = Collection.load(tmp_path / "rl")
    docid = out.passages["docid"].to_pylist()
    assert [docid[p] for p in out.examples["positives"][0].as_py()][-1] == "copy-of-positive"
    assert "copy-of-positive" not in [docid[p] for p in out.examples["negatives"][0].as_py()]


def test_scores_follow_their_passages(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "flagembedding-examples" / "embedder_retrieval_msmarco.jsonl"
    coll = ingest([src], tmp_path / "c")
    neg0 = coll.examples["negatives"][0].as_py()
    scores0 = coll.examples["neg_scores"][0].as_py()
    pairs = judgments.table(
        {
            "example": [0, 0],
            "pid": [neg0[2], neg0[5]],
            "stage": ["x", "x"],
            "stage_index": [1, 1],
            "label": ["better", "worse"],
            "flagged": [True, True],
        }
    )
    new, rep = apply_strategy(coll, pairs, "relabel")
    assert rep.moved_to_positives == 2
    assert new["pos_scores"][0].as_py() == [
        coll.examples["pos_scores"][0].as_py()[0],
        scores0[2],
        scores0[5],
    ]
    assert new["neg_scores"][0].as_py() == [s for k, s in enumerate(scores0) if k not in (2, 5)]
    # and the BGE export carries them
    x = tmp_path / "x"
    from trueneg.collection import CollectionBuilder  # noqa: F401

    (tmp_path / "x").mkdir()
    import shutil

    for f in ("passages", "queries", "manifest"):
        shutil.copy(coll.path / (f + (".json" if f == "manifest" else ".parquet")), x)
    import pyarrow.parquet as pq

    pq.write_table(new, x / "examples.parquet")
    export_collection(Collection.load(x), "bge", tmp_path / "o.jsonl")
    first = orjson.loads((tmp_path / "o.jsonl").read_bytes().splitlines()[0])
    assert len(first["pos"]) == 3 and len(first["pos_scores"]) == 3


def test_kernel_checks_and_bad_strategy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="strategy must be"):
        _core.apply_fix(
            np.array([0, 1]),
            np.array([1], np.uint32),
            np.array([0, 0]),
            np.zeros(0, np.uint32),
            np.array([0, 0]),
            np.zeros(0, np.uint32),
            np.array([False]),
            "drop",
        )
    c = _judged(tmp_path)
    with pytest.raises(InputError, match="strategy must be one of"):
        fix_collection(c, tmp_path / "o", "burn")
    pa.array([1])  # keep pyarrow import used
