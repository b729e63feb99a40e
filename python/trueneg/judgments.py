"""Judgment rows: one verdict about one (example, passage) pair from one stage.

Dedup writes its "free" false negatives here (a negative that duplicates one of its own query's
positives needs no LLM call); the judge stages append theirs; the fix stage reads them all.
Labels follow the stage (``false_negative`` for dedup; RLHN ``better`` / ``worse`` / ``not_relevant``);
the status (ok, parse_error, refusal, length, content_filter, api_error) is never folded into a label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

JUDGMENT_SCHEMA = pa.schema(
    [
        ("example", pa.int64()),  # row of examples.parquet
        ("qid", pa.uint32()),
        ("pid", pa.uint32()),
        ("stage", pa.string()),
        ("stage_index", pa.int16()),  # 0 = dedup, 1.. = judge stages in cascade order
        ("label", pa.string()),
        ("flagged", pa.bool_()),  # a false negative by this stage's flag rule
        ("status", pa.string()),
        ("model", pa.string()),
        ("prompt", pa.string()),
        ("request_key", pa.string()),
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


def table(columns: dict[str, object]) -> pa.Table:
    """A judgment table from a dict of columns; missing columns are nulls."""
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    arrays = []
    for f in JUDGMENT_SCHEMA:
        v = columns.get(f.name)
        arrays.append(pa.nulls(n, f.type) if v is None else pa.array(v, f.type))
    return pa.Table.from_arrays(arrays, schema=JUDGMENT_SCHEMA)


def final_flags(t: pa.Table) -> pa.Table:
    """For each (example, pid), the row of the deepest stage that judged it with a readable answer:
    the verdict the fix stage applies. Dedup rows (stage 0) stand unless a judge stage overrules."""
    if len(t) == 0:
        return t
    ok = t.filter(
        pa.compute.or_(pa.compute.equal(t["stage"], "dedup"), pa.compute.is_valid(t["label"]))
    )
    if len(ok) == 0:
        return ok
    order = ok.sort_by(
        [("example", "ascending"), ("pid", "ascending"), ("stage_index", "descending")]
    )
    ex = order["example"].to_numpy()
    pid = order["pid"].to_numpy()
    first = np.concatenate([[True], (ex[1:] != ex[:-1]) | (pid[1:] != pid[:-1])])
    return order.filter(pa.array(first))
