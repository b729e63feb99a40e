"""Mining masks every positive of a query and exact copies of them: on real CISI, document 1440
is a verbatim copy of document 234 (relevant to query 23) under another id; and two examples of
one query never mine each other's positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

pytest.importorskip("torch")

from trueneg import Collection, ingest
from trueneg.mine import exact_copies, exact_topk, mine_collection, query_positives
from trueneg.models import Encoder, EncoderConfig


@pytest.fixture(scope="module")
def cisi(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Collection, np.ndarray, np.ndarray]:
    coll = ingest([data_dir / "beir-cisi"], tmp_path_factory.mktemp("c") / "c")
    enc = Encoder(EncoderConfig(max_length=48, dtype="fp32"))
    qe, pe = enc.encode_collection(coll)
    return coll, qe, pe


def test_exact_copy_of_a_positive_is_never_mined(cisi: tuple, tmp_path: Path) -> None:
    coll, qe, pe = cisi
    docid = coll.passages["docid"].to_pylist()
    a, b = docid.index("234"), docid.index("1440")
    assert coll.passages["text"][a].as_py() == coll.passages["text"][b].as_py()
    assert exact_copies(coll)[b] == exact_copies(coll)[a]
    qid = coll.queries["query_id"].to_pylist().index("23")
    rows = [i for i, q in enumerate(coll.examples["qid"].to_pylist()) if q == qid]
    assert any(a in coll.examples["positives"][i].as_py() for i in rows)
    # unmasked, the copy is among the query's top candidates
    top, _ = exact_topk(qe[[qid]], pe, 200)
    assert b in top[0].tolist()
    mine_collection(
        coll.path, tmp_path / "m", qe, pe, num_negatives=50, range_max=200, relative_margin=None
    )
    mined = Collection.load(tmp_path / "m")
    positives_of_23 = {p for i in rows for p in coll.examples["positives"][i].as_py()}
    for i in rows:
        negs = set(mined.examples["negatives"][i].as_py())
        assert b not in negs and not negs & positives_of_23


def test_examples_of_one_query_share_their_positives(data_dir: Path, tmp_path: Path) -> None:
    docs = [
        orjson.loads(x)
        for x in (data_dir / "beir-cisi" / "corpus.jsonl").read_bytes().splitlines()[:6]
    ]
    p = [{"docid": d["_id"], "title": d.get("title", ""), "text": d["text"]} for d in docs]
    rows = [
        {
            "query_id": "q",
            "query": "indexing of documents",
            "positive_passages": [p[0]],
            "negative_passages": [p[2]],
        },
        {
            "query_id": "q",
            "query": "indexing of documents",
            "positive_passages": [p[1]],
            "negative_passages": [p[3]],
        },
    ]
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    coll = ingest([f], tmp_path / "c", format="tevatron")
    qids = coll.examples["qid"].to_pylist()
    assert qids[0] == qids[1]
    pos = coll.examples["positives"].to_pylist()
    widened = query_positives(qids, pos)
    assert widened[0] == widened[1] == [pos[0][0], pos[1][0]]
    enc = Encoder(EncoderConfig(max_length=48, dtype="fp32"))
    qe, pe = enc.encode_collection(coll)
    mine_collection(coll.path, tmp_path / "m", qe, pe, num_negatives=5, relative_margin=None)
    for negs in Collection.load(tmp_path / "m").examples["negatives"].to_pylist():
        assert not set(negs) & {pos[0][0], pos[1][0]} and negs


def test_a_mined_collection_scores_its_positives_and_the_report_plots_them(
    tmp_path: Path,
) -> None:
    """Mining stores the positives' scores by the same model (q . p) beside the negatives', so
    the report draws the score distributions of a mined collection."""
    import trueneg
    from trueneg.data import rlhn_sample_stage1

    coll = ingest(rlhn_sample_stage1(), tmp_path / "c")
    rng = np.random.default_rng(0)
    qe = rng.standard_normal((len(coll.queries), 16)).astype(np.float32)
    pe = rng.standard_normal((len(coll.passages), 16)).astype(np.float32)
    m = trueneg.mine(coll, out=tmp_path / "m", query_embeddings=qe, passage_embeddings=pe)
    ex = m.collection.examples
    for qid, pos, sc in zip(
        ex["qid"].to_pylist(),
        ex["positives"].to_pylist(),
        ex["pos_scores"].to_pylist(),
        strict=True,
    ):
        np.testing.assert_allclose(sc, [float(qe[qid] @ pe[p]) for p in pos], atol=1e-5)
    trueneg.report(m.collection, out=tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Score distributions" in md and "no score distribution" not in md
