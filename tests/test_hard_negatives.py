"""``trueneg.mine_hard_negatives`` against sentence-transformers' own ``mine_hard_negatives``, run
side by side on real text (CISI, Cranfield, MS MARCO DL19 from tests/data): every output format,
several parameter sets, with and without a corpus, multi-positive anchors, random sampling under
one seed; the model as a ``SentenceTransformer`` object and as a folder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("datasets")
st_util = pytest.importorskip("sentence_transformers.util")

from datasets import Dataset  # noqa: E402

import trueneg  # noqa: E402
from trueneg.evaluate import read_qrels  # noqa: E402
from trueneg.models import default_model_path  # noqa: E402

DATA = Path(__file__).parent / "data"
FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
SETTINGS: list[dict[str, Any]] = [
    {},
    {"relative_margin": 0.05, "num_negatives": 5},
    {"range_min": 2, "range_max": 30, "max_score": 0.9, "num_negatives": 4},
    {"absolute_margin": 0.02, "min_score": 0.1, "num_negatives": 3, "output_scores": True},
]


def _beir_pairs(name: str, queries: int, per_query: int, docs: int) -> tuple[Dataset, list[str]]:
    d = DATA / name
    text = {}
    for line in (d / "corpus.jsonl").read_bytes().splitlines():
        r = json.loads(line)
        text[r["_id"]] = (r.get("title", "") + " " + r["text"]).strip()
    qs = {
        json.loads(x)["_id"]: json.loads(x)["text"]
        for x in (d / "queries.jsonl").read_bytes().splitlines()
    }
    pairs = [
        (qs[q], text[doc])
        for q, judged in list(read_qrels(d).items())[:queries]
        for doc, g in list(judged.items())[:per_query]
        if g > 0 and doc in text
    ]
    ds = Dataset.from_dict({"query": [a for a, _ in pairs], "answer": [b for _, b in pairs]})
    corpus = list(dict.fromkeys([b for _, b in pairs] + list(text.values())[:docs]))
    return ds, corpus


@pytest.fixture(scope="module")
def st_model() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu")


@pytest.fixture(scope="module")
def sets() -> dict[str, tuple[Dataset, list[str]]]:
    return {
        "cisi": _beir_pairs("beir-cisi", 25, 3, 300),  # 3 positives per anchor
        "cranfield": _beir_pairs("beir-cranfield", 25, 2, 300),
        "dl19": _beir_pairs("beir-msmarco-dl19-5k", 10, 4, 300),
    }


def _same(a: Dataset, b: Dataset) -> float:
    assert a.column_names == b.column_names
    assert len(a) == len(b)
    ra, rb = a.to_list(), b.to_list()
    for x, y in zip(ra, rb, strict=True):
        for k in ("scores", "score"):
            if k in x:  # scores agree to float precision, not bit for bit
                assert x.pop(k) == pytest.approx(y.pop(k), abs=1e-4)
    return sum(x == y for x, y in zip(ra, rb, strict=True)) / max(1, len(ra))


@pytest.mark.parametrize("name", ["cisi", "cranfield", "dl19"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_same_rows_as_sentence_transformers(
    name: str, fmt: str, st_model: Any, sets: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ds, corpus = sets[name]
    cache = tmp_path_factory.getbasetemp() / f"emb-{name}"
    for kw in SETTINGS:
        for with_corpus in (True, False):
            c = corpus if with_corpus else None
            ref = st_util.mine_hard_negatives(
                ds, st_model, corpus=c, output_format=fmt, verbose=False,
                cache_folder=str(cache / "st"), **kw,
            )  # fmt: skip
            got = trueneg.mine_hard_negatives(
                ds, st_model, corpus=c, output_format=fmt, verbose=False,
                cache_folder=str(cache / "tn"), **kw,
            )  # fmt: skip
            assert _same(ref, got) >= 0.995, (name, fmt, kw, with_corpus)


def test_random_sampling_follows_pythons_seed(st_model: Any, sets: dict) -> None:
    ds, corpus = sets["cisi"]
    kw = {"corpus": corpus, "num_negatives": 3, "range_max": 20, "sampling_strategy": "random",
          "verbose": False}  # fmt: skip
    random.seed(7)
    ref = st_util.mine_hard_negatives(ds, st_model, **kw)
    random.seed(7)
    got = trueneg.mine_hard_negatives(ds, st_model, **kw)
    assert _same(ref, got) >= 0.995
    random.seed(8)
    other = trueneg.mine_hard_negatives(ds, st_model, **kw)
    assert other.to_list() != got.to_list()


def test_a_model_folder_embeds_with_truenegs_encoder(st_model: Any, sets: dict) -> None:
    ds, corpus = sets["cranfield"]
    ref = st_util.mine_hard_negatives(ds, st_model, corpus=corpus, num_negatives=5, verbose=False)
    got = trueneg.mine_hard_negatives(
        ds, str(default_model_path()), corpus=corpus, num_negatives=5, verbose=False, dtype="fp32"
    )
    assert _same(ref, got) >= 0.995


def test_report_and_near_duplicates(st_model: Any, sets: dict) -> None:
    ds, corpus = sets["dl19"]
    near_copy = corpus[0].replace(".", " .") + " (copy)"  # a near duplicate of a positive
    big = [*corpus, near_copy]
    plain = trueneg.mine_hard_negatives(ds, st_model, corpus=big, num_negatives=5, verbose=False)
    assert near_copy in plain["negative"]  # the positive's copy is mined as a "negative"
    out, rep = trueneg.mine_hard_negatives(
        ds, st_model, corpus=big, num_negatives=5, verbose=False, return_report=True,
        exclude_near_duplicates=True,
    )  # fmt: skip
    assert near_copy not in out["negative"] and rep.near_duplicates_excluded >= 1
    assert rep.queries == len(set(ds["query"])) and rep.rows == len(out)
    _, rep = trueneg.mine_hard_negatives(
        ds, st_model, corpus=big, relative_margin=0.05, num_negatives=5, verbose=False,
        return_report=True,
    )  # fmt: skip
    assert rep.skipped["relative_margin"] > 0 and 0 < rep.skip_rate["relative_margin"] < 1
    assert len(rep.negatives_found) == rep.queries


def test_the_same_errors(st_model: Any, sets: dict) -> None:
    ds, _ = sets["cisi"]
    for kw, msg in (
        ({"num_negatives": 0}, "num_negatives must be at least 1"),
        ({"range_min": 5, "range_max": 5}, "range_min must be smaller than range_max"),
        ({"range_min": 0, "range_max": 2, "num_negatives": 3}, "Cannot mine 3 negatives"),
        ({"output_format": "pairs"}, "Invalid output_format"),
    ):
        with pytest.raises(ValueError, match=msg):
            st_util.mine_hard_negatives(ds, st_model, verbose=False, **kw)
        with pytest.raises(trueneg.InputError, match=msg):
            trueneg.mine_hard_negatives(ds, st_model, verbose=False, **kw)


def test_judge_removes_or_relabels_the_false_negatives(
    st_model: Any, sets: dict, tmp_path: Path
) -> None:
    """``judge=``: the test server flags the first document of every call (the query's top
    candidate): with "remove" each row's negatives are the unjudged run's 2nd..(k+1)th candidates;
    with "relabel" the flagged candidate is one more positive of its query (one more row each);
    a second call is answered from the cache and pays nothing."""
    from dataclasses import replace

    from trueneg.judge import RLHN_STAGES, JudgeConfig

    from .fake_openai import EMPTY_VERDICT, FakeOpenAI, State

    ds, corpus = sets["cisi"]
    kw = {"corpus": corpus, "output_format": "n-tuple", "verbose": False}
    four = trueneg.mine_hard_negatives(ds, st_model, num_negatives=4, **kw)
    st = State()
    st.default_answer = EMPTY_VERDICT.replace(
        "Preferred over ground truth: []", "Preferred over ground truth: [Doc (1)]"
    )
    cache = tmp_path / "judge.sqlite"
    with FakeOpenAI(st) as srv:
        cfg = replace(JudgeConfig(stages=RLHN_STAGES[:1]), base_url=srv.base_url)
        out, rep = trueneg.mine_hard_negatives(
            ds, st_model, num_negatives=3, judge=cfg, judge_cache=cache, return_report=True, **kw
        )
        queries = len(set(ds["query"]))
        assert sum(st.paid.values()) == queries  # one call per query: 6 candidates, one prompt
        assert rep.false_negatives == queries and rep.judged_pairs == 6 * queries
        negs = [f"negative_{i}" for i in range(1, 5)]
        assert out.column_names == four.column_names[:-1] and len(out) == len(four)
        for a, b in zip(out.to_list(), four.to_list(), strict=True):
            assert a["query"] == b["query"] and a["answer"] == b["answer"]
            assert [a[n] for n in negs[:3]] == [b[n] for n in negs[1:]]
        flagged = {r["query"]: r["negative_1"] for r in four.to_list()}

        paid = sum(st.paid.values())
        rel, rep2 = trueneg.mine_hard_negatives(
            ds, st_model, num_negatives=3, judge=cfg, judge_cache=cache, judge_action="relabel",
            return_report=True, **kw,
        )  # fmt: skip
        assert sum(st.paid.values()) == paid  # every answer came from the cache
    assert rep2.false_negatives == queries and len(rel) == len(out) + queries
    for q, fn in flagged.items():
        rows = [r for r in rel.to_list() if r["query"] == q]
        assert fn in [r["answer"] for r in rows]  # now a positive of its query
        assert all(fn not in [r[n] for n in negs[:3]] for r in rows)


def test_a_query_in_the_corpus_is_not_its_own_negative(st_model: Any, sets: dict) -> None:
    """sentence-transformers 6.3 keeps a query's own text out of its negatives (one extra
    candidate is fetched for it); so does trueneg, with the same rows."""
    ds, corpus = sets["cranfield"]
    queries = list(dict.fromkeys(ds["query"]))
    big = [*queries[:5], *corpus]  # the queries' own texts rank first for them
    kw = {"corpus": big, "num_negatives": 4, "output_format": "n-tuple", "verbose": False}
    ref = st_util.mine_hard_negatives(ds, st_model, **kw)
    got = trueneg.mine_hard_negatives(ds, st_model, **kw)
    assert _same(ref, got) >= 0.995
    for r in got.to_list():
        assert r["query"] not in [r[f"negative_{i}"] for i in range(1, 5)]
