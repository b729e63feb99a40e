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


#: a stage's row that leaves the verdict to the stage before (qrels: no line for the pair)
DEFERS = ("unjudged",)


def final_flags(t: pa.Table) -> pa.Table:
    """For each (example, pid), the verdict the fix stage applies: the row of the deepest judge
    stage that was asked about it, readable or not. A stage that was asked and failed (an
    unreadable answer, an API error) leaves the pair unlabelled and unflagged with its reason;
    it is never decided by a weaker stage. Only a stage that defers (status "unjudged") leaves
    it to the stage before. Dedup rows (stage 0) stand unless a judge stage gave a label."""
    if len(t) == 0:
        return t
    c = pa.compute
    is_dedup = c.equal(t["stage"], "dedup")
    asked = t.filter(
        c.and_(
            c.invert(is_dedup), c.invert(c.is_in(c.fill_null(t["status"], ""), pa.array(DEFERS)))
        )
    )
    deepest = _first_per_pair(asked)
    dedup = t.filter(is_dedup)
    if len(dedup) == 0:
        return deepest
    labelled = deepest.filter(c.is_valid(deepest["label"]))
    taken = set(_pair_keys(labelled).tolist())
    dedup = _first_per_pair(dedup)
    dk = _pair_keys(dedup)
    dedup = dedup.filter(pa.array([k not in taken for k in dk.tolist()], pa.bool_()))
    dedup_keys = set(_pair_keys(dedup).tolist())
    unlabelled = deepest.filter(c.is_null(deepest["label"]))
    uk = _pair_keys(unlabelled)
    unlabelled = unlabelled.filter(pa.array([k not in dedup_keys for k in uk.tolist()], pa.bool_()))
    return pa.concat_tables([labelled, dedup, unlabelled]).sort_by(
        [("example", "ascending"), ("pid", "ascending")]
    )


def _pair_keys(t: pa.Table) -> np.ndarray:
    keys: np.ndarray = (t["example"].to_numpy().astype(np.int64) << 32) | t[
        "pid"
    ].to_numpy().astype(np.int64)
    return keys


def _first_per_pair(t: pa.Table) -> pa.Table:
    """The deepest stage's row of each (example, pid)."""
    if len(t) == 0:
        return t
    order = t.sort_by(
        [("example", "ascending"), ("pid", "ascending"), ("stage_index", "descending")]
    )
    ex = order["example"].to_numpy()
    pid = order["pid"].to_numpy()
    first = np.concatenate([[True], (ex[1:] != ex[:-1]) | (pid[1:] != pid[:-1])])
    return order.filter(pa.array(first))
