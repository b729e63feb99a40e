"""One definition of a passage's text: what training, mining, the local scorer, dedup and
evaluation embed is BEIR's ``(title + " " + text).strip()``, on real CISI passages."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa

from trueneg import ingest
from trueneg.texts import passage_text, passage_texts


def test_rule_and_vectorised_form_agree(data_dir: Path) -> None:
    rows = [
        orjson.loads(x)
        for x in (data_dir / "beir-cisi" / "corpus.jsonl").read_bytes().splitlines()[:50]
    ]
    titles = [r.get("title") for r in rows] + [None, "", "  T  "]
    texts = [r["text"] for r in rows] + [" plain ", "no title", "x "]
    want = [(t + " " + x).strip() if t else x.strip() for t, x in zip(titles, texts, strict=True)]
    assert passage_texts((titles, texts)) == want
    assert [passage_text(t, x) for t, x in zip(titles, texts, strict=True)] == want
    assert passage_text("A", "b", sep="\n") == "A\nb"
    table = pa.table({"title": pa.array(titles, pa.string()), "text": texts})
    assert passage_texts(table) == want
    assert all(
        w.startswith(r["title"].strip()) for w, r in zip(want, rows, strict=False) if r.get("title")
    )


def test_every_stage_reads_the_same_text(data_dir: Path, tmp_path: Path) -> None:
    """A BEIR folder ingested as a collection: training rows, evaluation and dedup see the same
    passage strings, titles included."""
    from trueneg.evaluate import load_beir

    coll = ingest([data_dir / "beir-cisi"], tmp_path / "c")
    beir = load_beir(data_dir / "beir-cisi")
    by_id = dict(zip(beir.doc_ids, beir.doc_texts, strict=True))
    ours = passage_texts(coll.passages)
    docids = coll.passages["docid"].to_pylist()
    assert all(ours[i] == by_id[d] for i, d in enumerate(docids))
    assert sum(1 for i, d in enumerate(docids) if ours[i] != coll.passages["text"][i].as_py()) > 100
    from trueneg.train._loop import TrainData

    data = TrainData(coll, 7, seed=0)
    assert data.passage_text == ours
