"""Tevatron legacy / RLHN rows, JSON Lines or Parquet (the HF ``rlhn/*`` files)::

    {query_id, query, positive_passages: [{docid, title, text}], negative_passages: [...], subset?}

Any other field (RLHN's ``positive_passage_ids``, ``response``, ``finish_reason`` ...) is kept per
example; any other passage field is kept per passage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trueneg._io import atomic_file, dumps_line, type_name
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder, parse_extra
from trueneg.formats._common import (
    PassageLookup,
    Where,
    checked_rows,
    default_subset,
    extras,
    is_parquet,
    iter_examples,
    nonempty,
    req_list,
    req_str,
)

NAME = "tevatron"
KNOWN = frozenset({"query_id", "query", "positive_passages", "negative_passages", "subset"})
PASSAGE_KNOWN = frozenset({"docid", "title", "text"})


def _passages(
    row: dict[str, Any], key: str, where: Where
) -> list[tuple[str | None, str | None, str, dict[str, Any] | None]]:
    out: list[tuple[str | None, str | None, str, dict[str, Any] | None]] = []
    for i, p in enumerate(req_list(row, key, where, what="passage objects")):
        f = f"{key}[{i}]"
        if not isinstance(p, dict):
            raise where.error(
                f"expected a passage object {{docid, title, text}}, got {type_name(p)}", f
            )
        if "docid" not in p:
            raise where.error("missing", f"{f}.docid")
        docid = p["docid"]
        if not isinstance(docid, str):
            raise where.error(f"expected a string, got {type_name(docid)}", f"{f}.docid")
        if "text" not in p:
            raise where.error("missing", f"{f}.text")
        if not isinstance(p["text"], str):
            raise where.error(f"expected a string, got {type_name(p['text'])}", f"{f}.text")
        title = p.get("title")
        if title is not None and not isinstance(title, str):
            raise where.error(f"expected a string, got {type_name(title)}", f"{f}.title")
        out.append((docid, title, p["text"], extras(p, PASSAGE_KNOWN)))
    return out


def _parse(where: Where, row: dict[str, Any]) -> tuple[Any, ...]:
    qid = req_str(row, "query_id", where)
    query = req_str(row, "query", where)
    pos = nonempty(_passages(row, "positive_passages", where), where, "positive_passages")
    neg = _passages(row, "negative_passages", where)
    sub = row.get("subset")
    if sub is not None and not isinstance(sub, str):
        raise where.error(f"expected a string, got {type_name(sub)}", "subset")
    return qid, query, pos, neg, sub, extras(row, KNOWN)


def read(
    builder: CollectionBuilder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    subset: str | None = None,
) -> None:
    has_subset = False
    with progress(desc="ingest tevatron", unit=" rows") as bar:
        for path in paths:
            file_subset = subset or default_subset(path)
            src = builder.add_source(path, file_subset)
            for where, (qid, query, pos, neg, sub, extra) in checked_rows(
                builder, path, bar, _parse
            ):
                has_subset = has_subset or sub is not None
                builder.add_example(
                    query=query,
                    query_id=qid,
                    subset=sub if sub is not None else file_subset,
                    positives=pos,
                    negatives=neg,
                    extra=extra,
                    source=src,
                    line=where.line,
                )
    builder.options["subset_field"] = has_subset


def _passage_obj(
    p: tuple[str | None, str | None, str, str | None], synthetic: str
) -> dict[str, Any]:
    docid, title, text, extra = p
    d: dict[str, Any] = {
        "docid": docid if docid is not None else synthetic,
        "title": title if title is not None else "",
        "text": text,
    }
    d.update(parse_extra(extra))
    return d


def iter_output_rows(coll: Collection) -> Any:
    subset_field = bool(coll.options.get("subset_field", coll.source_format != "tevatron"))
    lookup = PassageLookup(coll)
    for ex in iter_examples(coll):
        pos_ids = lookup.synthetic_docids(np.asarray(ex.pos_pids)) if ex.pos_pids else []
        neg_ids = lookup.synthetic_docids(np.asarray(ex.neg_pids)) if ex.neg_pids else []
        row: dict[str, Any] = {
            "query_id": ex.query_id if ex.query_id is not None else f"q{ex.qid}",
            "query": ex.query,
            "positive_passages": [
                _passage_obj(p, s) for p, s in zip(ex.positives, pos_ids, strict=True)
            ],
            "negative_passages": [
                _passage_obj(p, s) for p, s in zip(ex.negatives, neg_ids, strict=True)
            ],
        }
        if subset_field:
            row["subset"] = ex.subset
        row.update(ex.extra)
        yield row


def write(coll: Collection, out: str | os.PathLike[str], chunk_rows: int = 10_000) -> None:
    """JSON Lines, or Parquet when ``out`` ends in .parquet (written in row groups, streaming)."""
    with (
        progress(total=len(coll), desc="export tevatron", unit=" rows") as bar,
        atomic_file(out) as f,
    ):
        if not is_parquet(out):
            for row in iter_output_rows(coll):
                f.write(dumps_line(row))
                bar.update()
            return
        write_parquet_rows(f, iter_output_rows(coll), chunk_rows, bar)


def write_parquet_rows(f: Any, rows: Any, chunk_rows: int, bar: Any) -> None:
    """Stream dict rows into a Parquet file, the schema taken from the first chunk."""
    writer: pq.ParquetWriter | None = None
    chunk: list[dict[str, Any]] = []

    def emit() -> None:
        nonlocal writer
        if writer is None:
            t = pa.Table.from_pylist(chunk)
            writer = pq.ParquetWriter(f, t.schema, compression="zstd")
        else:
            t = pa.Table.from_pylist(chunk, schema=writer.schema)
        writer.write_table(t)
        bar.update(len(chunk))
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            emit()
    if chunk:
        emit()
    if writer is not None:
        writer.close()
