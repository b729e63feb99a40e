"""The collection on disk: loading checks, the fast BGE path against the row-by-row path."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trueneg import Collection, CollectionError, export_collection, ingest

from .helpers import canonical_lines, write_lines


def _small(tmp_path: Path, data_dir: Path) -> Path:
    ingest([data_dir / "flagembedding-examples" / "toy_finetune_data.jsonl"], tmp_path / "c")
    return tmp_path / "c"


def test_load_rejects_broken_collections(tmp_path: Path, data_dir: Path) -> None:
    c = _small(tmp_path, data_dir)
    with pytest.raises(CollectionError, match="no manifest.json"):
        Collection.load(tmp_path)
    m = json.loads((c / "manifest.json").read_text())
    (c / "manifest.json").write_text(json.dumps({**m, "version": 99}))
    with pytest.raises(CollectionError, match="collection version 99 is not supported"):
        Collection.load(c)
    (c / "manifest.json").write_text(json.dumps(m))
    pq.write_table(pa.table({"x": [1]}), c / "queries.parquet")
    with pytest.raises(CollectionError, match="queries.parquet: unexpected schema"):
        Collection.load(c)
    (c / "queries.parquet").unlink()
    with pytest.raises(CollectionError, match="queries.parquet is missing"):
        Collection.load(c)
    (c / "manifest.json").write_text("{not json")
    with pytest.raises(CollectionError, match="unreadable manifest"):
        Collection.load(c)


def test_fast_jsonl_path_equals_row_path(data_dir: Path, tmp_path: Path) -> None:
    # BGE JSON Lines go through the Rust parser; the same rows as Parquet go row by row.
    src = data_dir / "flagembedding-examples" / "embedder_retrieval_msmarco.jsonl"
    rows = [orjson.loads(x) for x in src.read_bytes().splitlines()]
    pq_src = tmp_path / "embedder_retrieval_msmarco.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_src)
    fast = ingest([src], tmp_path / "fast", format="bge")
    slow = ingest([pq_src], tmp_path / "slow", format="bge")
    for name in ("passages", "queries"):
        assert getattr(fast, name).equals(getattr(slow, name)), name
    f, s = fast.examples, slow.examples
    for col in ("qid", "positives", "negatives", "pos_scores", "neg_scores", "line"):
        assert f[col].equals(s[col]), col
    assert [orjson.loads(x) for x in f["extra"].to_pylist()] == [
        orjson.loads(x) for x in s["extra"].to_pylist()
    ]


def test_block_boundaries_do_not_matter(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trueneg.formats import bge

    src = data_dir / "flagembedding-examples" / "embedder_retrieval_nq.jsonl"
    whole = ingest([src], tmp_path / "whole")
    monkeypatch.setattr(bge, "BLOCK_BYTES", 4096)  # cuts inside rows of ~60 KB
    tiny = ingest([src], tmp_path / "tiny", chunk_size=3)
    assert whole.examples["line"].equals(tiny.examples["line"])
    assert whole.passages.equals(tiny.passages)


row_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
bge_rows = st.lists(
    st.fixed_dictionaries(
        {
            "query": row_text,
            "pos": st.lists(row_text, min_size=1, max_size=3),
            "neg": st.lists(row_text, max_size=4),
        },
        optional={
            "prompt": row_text,
            "meta": st.dictionaries(
                st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=2
            ),
        },
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=bge_rows)
def test_any_bge_rows_round_trip(rows: list[dict], tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        src = write_lines(Path(d) / "in.jsonl", [orjson.dumps(r) for r in rows])
        coll = ingest([src], Path(d) / "c", format="bge")
        out = Path(d) / "out.jsonl"
        export_collection(coll, "bge", out)
        assert canonical_lines(out) == canonical_lines(src)
