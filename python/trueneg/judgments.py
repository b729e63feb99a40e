"""Judgment rows: one verdict about one (example, passage) pair from one stage.

Dedup writes its "free" false negatives here (a negative that duplicates one of its own query's
positives needs no LLM call); the judge stages append theirs; the fix stage reads them all.
Labels follow the stage (``false_negative`` for dedup; RLHN ``better`` / ``worse`` / ``not_relevant``);
the status (ok, parse_error, refusal, length, content_filter, api_error) is never folded into a label.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

JUDGMENT_SCHEMA = pa.schema(
    [
        ("example", pa.int64()),  # row of examples.parquet
        ("qid", pa.uint32()),
        ("pid", pa.uint32()),
        ("stage", pa.string()),
        ("label", pa.string()),
        ("status", pa.string()),
        ("model", pa.string()),
        ("reason", pa.string()),
        ("similarity", pa.float32()),
    ]
)

FILE = "judgments.parquet"


def empty() -> pa.Table:
    return JUDGMENT_SCHEMA.empty_table()


def load(collection_dir: str | Path) -> pa.Table:
    """The judgments of a collection (an empty table when it has none)."""
    f = Path(collection_dir) / FILE
    if not f.is_file():
        return empty()
    return pq.read_table(f)
