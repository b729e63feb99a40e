"""Per-example fields a format carries beyond the schema (``extra`` JSON), kept true when a
stage changes an example's lists."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from trueneg.collection.reader import Collection

#: per-example id lists rewritten from the example's current lists when a stage changes them
ID_LIST_FIELDS = {"positive_passage_ids": "positives", "negative_passage_ids": "negatives"}
#: per-example fields that describe the old lists (an LLM's verdict on them, their file order):
#: dropped when a stage changes the lists
VERDICT_FIELDS = frozenset(
    {"response", "finish_reason", "qrels_lines", "prompt", "label", "labels"}
)
_DESCRIBES_LISTS = re.compile(
    r"(^|_)(pos|neg|positives?|negatives?|passages?|hard_?negatives?|scores?)(_|$)", re.IGNORECASE
)


def refresh_extras(
    coll: Collection, table: pa.Table, changed: np.ndarray, docids: list[str | None] | None = None
) -> tuple[pa.Table, dict[str, dict[str, int]]]:
    """Per-example fields of the rows whose positives or negatives a stage changed, made true
    again: id lists (RLHN's ``negative_passage_ids``, ``positive_passage_ids``) rewritten from the
    new lists (docids), fields that describe the old lists (the LLM's ``response`` and
    ``finish_reason``, other ``*neg*``/``*pos*``/``*passages*`` fields) dropped. Returns the table
    and ``{"rewritten": {field: rows}, "dropped": {field: rows}}`` for the manifest. ``docids``:
    the passages' docids when the table refers to passages ``coll`` does not have yet."""
    note: dict[str, dict[str, int]] = {"rewritten": {}, "dropped": {}}
    rows = np.flatnonzero(np.asarray(changed, bool))
    if not len(rows) or table["extra"].null_count == len(table):
        return table, note
    extra = table["extra"].to_pylist()
    if docids is None:
        docids = coll.passages["docid"].to_pylist()
    lists = {k: table[k].to_pylist() for k in ("positives", "negatives")}
    for i in rows.tolist():
        if not extra[i]:
            continue
        d = orjson.loads(extra[i])
        out: dict[str, Any] = {}
        for k, v in d.items():
            src = ID_LIST_FIELDS.get(k)
            if src is not None:
                ids = [docids[p] for p in lists[src][i]]
                if all(x is not None for x in ids):
                    out[k] = ids
                    note["rewritten"][k] = note["rewritten"].get(k, 0) + 1
                    continue
            if src is not None or k in VERDICT_FIELDS or _DESCRIBES_LISTS.search(k):
                note["dropped"][k] = note["dropped"].get(k, 0) + 1
                continue
            out[k] = v
        extra[i] = orjson.dumps(out).decode() if out else None
    cols = {n: table[n] for n in table.column_names}
    cols["extra"] = pa.array(extra, pa.string())
    return pa.table(cols, schema=table.schema), note


def parse_extra(s: str | None) -> dict[str, Any]:
    return orjson.loads(s) if s else {}
