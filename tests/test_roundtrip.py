"""Read -> collection -> write gives back every field of each format (after canonical JSON)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trueneg import Collection, export_collection, ingest
from trueneg.formats import detect_format

from .helpers import canonical_lines, write_lines

DATA = Path(__file__).parent / "data"
FLAG = sorted((DATA / "flagembedding-examples").glob("*.jsonl"))
BEIR = ["beir-cisi", "beir-cranfield", "beir-msmarco-dl19-5k"]


@pytest.mark.parametrize("path", FLAG, ids=lambda p: p.name)
def test_bge_round_trip(path: Path, tmp_path: Path) -> None:
    assert detect_format(path) == "bge"
    coll = ingest([path], tmp_path / "c")
    out = tmp_path / "out.jsonl"
    export_collection(coll, "bge", out)
    assert canonical_lines(out) == canonical_lines(path)


def _rlhn_files() -> list[Path]:
    from trueneg.data import RLHN_SAMPLE_DIR

    return sorted(RLHN_SAMPLE_DIR.glob("*.jsonl"))


@pytest.mark.parametrize("path", _rlhn_files(), ids=lambda p: p.name)
def test_rlhn_tevatron_round_trip(path: Path, tmp_path: Path) -> None:
    assert detect_format(path) == "tevatron"
    coll = ingest([path], tmp_path / "c")
    out = tmp_path / "out.jsonl"
    export_collection(coll, "rlhn", out)
    assert canonical_lines(out) == canonical_lines(path)
    # the recorded LLM answers travel as per-example fields
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert "response" in first and "negative_passage_ids" in first


def test_rlhn_parquet_round_trip(rlhn_dir: Path, tmp_path: Path) -> None:
    src = rlhn_dir / "msmarco_passage.stage_1.gpt-4o-mini.jsonl"
    rows = [orjson.loads(x) for x in src.read_bytes().splitlines()]
    pq_in = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_in)
    assert detect_format(pq_in) == "tevatron"
    coll = ingest([pq_in], tmp_path / "c")
    out = tmp_path / "out.parquet"
    export_collection(coll, "tevatron", out)
    assert pq.read_table(out).to_pylist() == rows


@pytest.mark.parametrize("name", BEIR)
def test_beir_round_trip(name: str, tmp_path: Path) -> None:
    src = DATA / name
    assert detect_format(src) == "beir"
    coll = ingest([src], tmp_path / "c")
    out = tmp_path / "out"
    export_collection(coll, "beir", out)
    assert canonical_lines(out / "corpus.jsonl") == canonical_lines(src / "corpus.jsonl")
    assert canonical_lines(out / "queries.jsonl") == canonical_lines(src / "queries.jsonl")
    assert (out / "qrels" / "test.tsv").read_bytes() == (src / "qrels" / "test.tsv").read_bytes()


def test_beir_counts_match_source_md(tmp_path: Path) -> None:
    cran = ingest([DATA / "beir-cranfield"], tmp_path / "cran")
    assert len(cran.passages) == 1400 and len(cran.queries) == 225
    cisi = ingest([DATA / "beir-cisi"], tmp_path / "cisi")
    # 112 queries, only 76 judged: the unjudged ones stay in the queries table
    assert len(cisi.queries) == 112 and len(cisi) == 76
    n_qrels = sum(len(x) for x in cisi.examples["positives"].to_pylist())
    assert n_qrels == 3114
    dl19 = ingest([DATA / "beir-msmarco-dl19-5k"], tmp_path / "dl19")
    assert dl19.manifest["source"]["options"]["qrels_header"] == {"test": True}
    grades = [s for x in dl19.examples["pos_scores"].to_pylist() for s in x]
    assert {g: grades.count(g) for g in set(grades)} == {1.0: 1601, 2.0: 1804, 3.0: 697}


def test_beir_headerless_qrels_and_interleaved_scores(tmp_path: Path) -> None:
    src = tmp_path / "mini"
    (src / "qrels").mkdir(parents=True)
    corpus = [
        orjson.loads(x)
        for x in (DATA / "beir-cranfield" / "corpus.jsonl").read_bytes().splitlines()[:5]
    ]
    write_lines(src / "corpus.jsonl", [orjson.dumps(c) for c in corpus])
    write_lines(
        src / "queries.jsonl",
        [
            '{"_id": "1", "text": "what similarity laws must be obeyed"}',
            '{"_id": "2", "text": "unjudged"}',
        ],
    )
    qrels = "1\t1\t2\n1\t2\t0\n1\t3\t1\n2\t4\t0\n1\t5\t3\n"
    (src / "qrels" / "dev.tsv").write_text(qrels)
    coll = ingest([src], tmp_path / "c", format="beir")
    out = tmp_path / "out"
    export_collection(coll, "beir", out)
    assert (out / "qrels" / "dev.tsv").read_text() == qrels


def _tevatron_v2_from_rlhn(rlhn_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        orjson.loads(x)
        for x in (rlhn_dir / "fiqa.stage_1.gpt-4o-mini.jsonl").read_bytes().splitlines()
    ]
    corpus: dict[str, dict[str, str]] = {}
    train = []
    for r in rows:
        for p in r["positive_passages"] + r["negative_passages"]:
            corpus.setdefault(p["docid"], p)
        train.append(
            {
                "query_id": r["query_id"],
                "query_text": r["query"],
                "positive_document_ids": [p["docid"] for p in r["positive_passages"]],
                "negative_document_ids": [p["docid"] for p in r["negative_passages"]],
                "source": "fiqa",
            }
        )
    t = write_lines(tmp_path / "train.jsonl", [orjson.dumps(x) for x in train])
    c = write_lines(tmp_path / "corpus.jsonl", [orjson.dumps(x) for x in corpus.values()])
    return t, c


def test_tevatron_v2_round_trip(rlhn_dir: Path, tmp_path: Path) -> None:
    train, corpus = _tevatron_v2_from_rlhn(rlhn_dir, tmp_path)
    assert detect_format(train) == "tevatron-v2"
    coll = ingest([train], tmp_path / "c", corpus=corpus)
    assert len(coll.passages) == 444
    out = tmp_path / "out"
    export_collection(coll, "tevatron-v2", out)
    assert canonical_lines(out / "train.jsonl") == canonical_lines(train)
    assert canonical_lines(out / "corpus.jsonl") == canonical_lines(corpus)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
@pytest.mark.parametrize("layout", ["pair", "triplet", "ntuple"])
def test_sentence_transformers_round_trip(layout: str, suffix: str, tmp_path: Path) -> None:
    rows = [
        orjson.loads(x)
        for x in (DATA / "flagembedding-examples" / "toy_finetune_data.jsonl")
        .read_bytes()
        .splitlines()
    ]
    out_rows = []
    for r in rows:
        d = {"anchor": r["query"], "positive": r["pos"][0]}
        if layout == "triplet":
            d["negative"] = r["neg"][0]
        elif layout == "ntuple":
            d.update({f"negative_{i + 1}": n for i, n in enumerate(r["neg"][:3])})
        out_rows.append(d)
    src = tmp_path / f"st.{suffix}"
    if suffix == "jsonl":
        write_lines(src, [orjson.dumps(x) for x in out_rows])
    else:
        pq.write_table(pa.Table.from_pylist(out_rows), src)
    assert detect_format(src) == "st"
    coll = ingest([src], tmp_path / "c")
    out = tmp_path / f"out.{suffix}"
    export_collection(coll, "st", out)
    if suffix == "jsonl":
        got = [orjson.loads(x) for x in out.read_bytes().splitlines()]
        assert [list(g) for g in got] == [list(r) for r in out_rows]  # same column order
    else:
        got = pq.read_table(out).to_pylist()
    assert got == out_rows


def test_cross_format_bge_to_tevatron_and_back(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "flagembedding-examples" / "toy_finetune_data_minedHN.jsonl"
    coll = ingest([src], tmp_path / "c")
    tev = tmp_path / "t.jsonl"
    export_collection(coll, "tevatron", tev)
    coll2 = ingest([tev], tmp_path / "c2")
    # the BGE rows had no ids: synthetic docids are stable content hashes
    row = orjson.loads(tev.read_bytes().splitlines()[0])
    assert row["positive_passages"][0]["docid"].startswith("h")
    back = tmp_path / "b.jsonl"
    export_collection(coll2, "bge", back)
    strip = [
        {k: v for k, v in orjson.loads(x).items() if k in ("query", "pos", "neg")}
        for x in src.read_bytes().splitlines()
    ]
    got = [
        {k: v for k, v in orjson.loads(x).items() if k in ("query", "pos", "neg")}
        for x in back.read_bytes().splitlines()
    ]
    assert got == strip


def test_passages_are_interned_once(data_dir: Path, tmp_path: Path) -> None:
    # 10 of llara's 11 queries are also in embedder_retrieval_msmarco: shared passages stored once
    a = data_dir / "flagembedding-examples" / "embedder_retrieval_msmarco.jsonl"
    b = data_dir / "flagembedding-examples" / "llara_toy_finetune_data.jsonl"
    ca = ingest([a], tmp_path / "a")
    cb = ingest([b], tmp_path / "b")
    both = ingest([a, b], tmp_path / "ab")
    texts = set(ca.passages["text"].to_pylist()) | set(cb.passages["text"].to_pylist())
    assert len(both.passages) == len(texts) < len(ca.passages) + len(cb.passages)
    assert sorted(both.queries["subset"].unique().to_pylist()) == [
        "embedder_retrieval_msmarco",
        "llara_toy_finetune_data",
    ]


def test_chunking_does_not_change_the_collection(rlhn_dir: Path, tmp_path: Path) -> None:
    files = sorted(rlhn_dir.glob("*stage_1*.jsonl"))
    big = ingest(files, tmp_path / "big")
    small = ingest(files, tmp_path / "small", chunk_size=3)
    for name in ("passages", "queries", "examples"):
        assert getattr(big, name).equals(getattr(small, name)), name


def test_collection_reload_and_manifest(rlhn_dir: Path, tmp_path: Path) -> None:
    files = sorted(rlhn_dir.glob("*stage_1*.jsonl"))
    coll = ingest(files, tmp_path / "c")
    again = Collection.load(tmp_path / "c")
    assert again.examples.equals(coll.examples)
    m = again.manifest
    assert m["source"]["format"] == "tevatron"
    assert [f["subset"] for f in m["source"]["files"]] == [
        "fiqa.stage_1.gpt-4o-mini",
        "msmarco_passage.stage_1.gpt-4o-mini",
    ]
    assert m["counts"] == {"passages": 1094, "queries": 50, "examples": 50, "docid_conflicts": 0}
    assert m["steps"][0]["step"] == "ingest"
    # the rows' own 'subset' field wins over the file name
    assert sorted(coll.queries["subset"].unique().to_pylist()) == ["fiqa", "msmarco_passage"]
