"""Hugging Face ``datasets`` in and out: every row format trueneg reads, from a ``Dataset`` and from a
``save_to_disk`` folder, gives the collection the same file gives; ``to_hf`` gives the rows
``trueneg export`` writes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

pytest.importorskip("datasets")

from datasets import Dataset, DatasetDict

from trueneg import Collection, InputError, ingest
from trueneg.data import rlhn_sample_stage1
from trueneg.formats import export_collection

DATA = Path(__file__).parent / "data"
BGE = DATA / "flagembedding-examples" / "toy_finetune_data.jsonl"


def _rows(f: Path) -> list[dict]:
    return [orjson.loads(x) for x in f.read_bytes().splitlines() if x.strip()]


def _lists(c: Collection) -> tuple:
    pt = c.passages["text"].to_pylist()
    qt = c.queries["text"].to_pylist()
    return tuple(
        (qt[q], [pt[p] for p in pos], [pt[p] for p in neg])
        for q, pos, neg in zip(
            c.examples["qid"].to_pylist(),
            c.examples["positives"].to_pylist(),
            c.examples["negatives"].to_pylist(),
            strict=True,
        )
    )


@pytest.mark.parametrize(
    ("source", "fmt"),
    [(BGE, "bge"), (rlhn_sample_stage1()[0], "tevatron")],
    ids=["bge", "tevatron"],
)
def test_a_dataset_ingests_like_its_file(source: Path, fmt: str, tmp_path: Path) -> None:
    from_file = ingest([source], tmp_path / "f", format=fmt)
    ds = Dataset.from_list(_rows(source))
    from_ds = Collection.from_hf(ds, tmp_path / "d")  # format from the columns
    assert from_ds.source_format == fmt
    assert _lists(from_ds) == _lists(from_file)
    src = from_ds.manifest["source"]["files"][0]
    assert src["path"] == "<datasets.Dataset>" and src["rows"] == len(ds)
    assert "Collection(" in repr(from_ds) and f"{len(ds):,} examples" in repr(from_ds)


def test_sentence_transformers_triplets_round_trip(tmp_path: Path) -> None:
    texts = [
        orjson.loads(x)["text"]
        for x in (DATA / "beir-cisi" / "corpus.jsonl").read_bytes().splitlines()[:6]
    ]
    ds = Dataset.from_dict(
        {"anchor": ["q1", "q2", "q3"], "positive": texts[:3], "negative": texts[3:6]}
    )
    c = Collection.from_hf(ds, tmp_path / "c")
    back = c.to_hf("st")
    assert back.column_names == ["anchor", "positive", "negative"]
    assert back.to_list() == ds.to_list()
    assert c.to_pandas("st").shape == (3, 3)


def test_to_hf_is_what_export_writes(tmp_path: Path) -> None:
    c = ingest(rlhn_sample_stage1(), tmp_path / "c")
    export_collection(c, "tevatron", tmp_path / "x.jsonl")
    assert c.to_hf("tevatron").to_list() == _rows(tmp_path / "x.jsonl")
    assert c.to_arrow("bge").num_rows == len(c)


def test_ingest_reads_a_save_to_disk_folder(tmp_path: Path) -> None:
    Dataset.from_list(_rows(BGE)).save_to_disk(str(tmp_path / "saved"))
    c = ingest([tmp_path / "saved"], tmp_path / "c")
    assert _lists(c) == _lists(ingest([BGE], tmp_path / "f"))
    assert c.manifest["source"]["files"][0]["path"] == str(tmp_path / "saved")


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    ds = Dataset.from_list(_rows(BGE))
    with pytest.raises(InputError, match="a DatasetDict holds several splits"):
        Collection.from_hf(DatasetDict({"train": ds}), tmp_path / "c")
    with pytest.raises(InputError, match="expected a datasets.Dataset, got list"):
        Collection.from_hf(_rows(BGE), tmp_path / "c")
    c = Collection.from_hf(ds, tmp_path / "c")
    with pytest.raises(InputError, match="the beir format is a folder, not rows"):
        c.to_hf("beir")
