"""Per-subset statistics, pinned on the real sample and on constructed overlaps."""

from __future__ import annotations

from pathlib import Path

from trueneg import ingest
from trueneg.stats import collection_stats, format_table


def test_rlhn_sample_stats(rlhn_dir: Path, tmp_path: Path) -> None:
    coll = ingest(sorted(rlhn_dir.glob("*stage_1*.jsonl")), tmp_path / "c")
    by = {r.subset: r for r in collection_stats(coll)}
    assert by["fiqa"].examples == 25 and by["fiqa"].negatives_per_example == 15.0
    assert by["fiqa"].positives_per_example == 74 / 25
    assert by["msmarco_passage"].unique_passages == 650
    assert by["ALL"].unique_passages == 1094 and by["ALL"].shared_with_other_subsets == 0
    assert "msmarco_passage" in format_table(list(by.values()))


def test_shared_and_duplicate_passages(data_dir: Path, tmp_path: Path) -> None:
    # llara's file repeats 10 of embedder_retrieval_msmarco's queries with overlapping passages
    a = data_dir / "flagembedding-examples" / "embedder_retrieval_msmarco.jsonl"
    b = data_dir / "flagembedding-examples" / "llara_toy_finetune_data.jsonl"
    coll = ingest([a, b], tmp_path / "c")
    by = {r.subset: r for r in collection_stats(coll)}
    sa = set(ingest([a], tmp_path / "a").passages["text"].to_pylist())
    sb = set(ingest([b], tmp_path / "b").passages["text"].to_pylist())
    assert by["embedder_retrieval_msmarco"].shared_with_other_subsets == len(sa & sb) > 0
    assert by["ALL"].shared_with_other_subsets == len(sa & sb)


def test_duplicate_texts_under_different_docids(rlhn_dir: Path, tmp_path: Path) -> None:
    # export the sample to tevatron with one passage's docid changed in another query: same text, 2 ids
    import orjson

    rows = [
        orjson.loads(x)
        for x in (rlhn_dir / "fiqa.stage_1.gpt-4o-mini.jsonl").read_bytes().splitlines()
    ]
    dup = dict(
        rows[0]["positive_passages"][0], docid="copy-of-" + rows[0]["positive_passages"][0]["docid"]
    )
    rows[1]["negative_passages"].append(dup)
    src = tmp_path / "fiqa.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    coll = ingest([src], tmp_path / "c")
    by = {r.subset: r for r in collection_stats(coll)}
    assert by["fiqa"].duplicate_texts == 2
    assert by["fiqa"].unique_passages == 445
