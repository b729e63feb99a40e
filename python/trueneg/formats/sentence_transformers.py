"""sentence-transformers datasets: pairs, triplets and n-tuples, JSON Lines or Parquet.

Columns are taken by name: the anchor is ``anchor`` (or ``query``/``question``/``sentence1``), the
positive ``positive`` (or ``pos``/``answer``/``sentence2``) and every other column, in order, is a
negative (``negative``, ``negative_1`` ... ``negative_n``). Files without those names are read by
position: first column anchor, second positive, the rest negatives. Column names are kept in the
manifest so export writes the same ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from trueneg._io import atomic_file, dumps_line, type_name
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import InputError
from trueneg.formats._common import (
    Where,
    checked_rows,
    default_subset,
    is_parquet,
    iter_examples,
    iter_rows,
)
from trueneg.formats.tevatron import write_parquet_rows

logger = logging.getLogger(__name__)

NAME = "st"
ANCHORS = ("anchor", "query", "question", "sentence1")
POSITIVES = ("positive", "pos", "answer", "sentence2")


def _columns(path: str | os.PathLike[str]) -> list[str]:
    if is_parquet(path):
        return list(pq.read_schema(path).names)
    for _, row, err in iter_rows(path):
        if err is not None:
            raise err
        if not isinstance(row, dict):
            raise InputError(
                f"expected a JSON object, got {type_name(row)}", path=str(path), line=1
            )
        return list(row)
    raise InputError("no rows", path=str(path))


def roles(columns: list[str]) -> tuple[str, str, list[str]]:
    if len(columns) < 2:
        raise InputError(f"a sentence-transformers dataset needs at least 2 columns, got {columns}")
    anchor = next((c for c in ANCHORS if c in columns), columns[0])
    rest = [c for c in columns if c != anchor]
    positive = next((c for c in POSITIVES if c in rest), rest[0])
    return anchor, positive, [c for c in rest if c != positive]


def read(
    builder: CollectionBuilder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    subset: str | None = None,
) -> None:
    layout: list[str] | None = None
    with progress(desc="ingest sentence-transformers", unit=" rows") as bar:
        for path in paths:
            cols = _columns(path)
            if layout is None:
                layout = cols
            elif cols != layout:
                raise InputError(
                    f"columns {cols} differ from the first file's {layout}", path=str(path)
                )
            anchor, positive, negatives = roles(cols)
            sub = subset or default_subset(path)
            src = builder.add_source(path, sub)
            for where, row in checked_rows(builder, path, bar, _checker(cols)):
                builder.add_example(
                    query=row[anchor],
                    subset=sub,
                    positives=[(None, None, row[positive], None)],
                    negatives=[(None, None, row[c], None) for c in negatives],
                    source=src,
                    line=where.line,
                )
    builder.options["columns"] = layout
    builder.options["roles"] = dict(
        zip(("anchor", "positive"), roles(layout or ["anchor", "positive"])[:2], strict=True)
    )


def _checker(cols: list[str]) -> Any:
    def check(where: Where, row: dict[str, Any]) -> dict[str, Any]:
        if list(row) != cols:
            missing = [c for c in cols if c not in row]
            raise where.error(
                f"columns {list(row)} differ from the file's {cols}",
                missing[0] if missing else None,
            )
        for c in cols:
            if not isinstance(row[c], str):
                raise where.error(f"expected a string, got {type_name(row[c])}", c)
        return row

    return check


def _layout(coll: Collection) -> tuple[str, str, list[str]]:
    cols = coll.options.get("columns") if coll.source_format == NAME else None
    if cols:
        return roles(list(cols))
    # n-tuples have a fixed width: the smallest negative count of any example
    lens = pc.list_value_length(coll.examples["negatives"]).to_numpy(zero_copy_only=False)
    n = int(lens.min()) if len(lens) else 0
    if len(lens) and int(lens.max()) > n:
        logger.warning(
            "sentence-transformers export keeps %d negatives per row; %d negatives of "
            "longer examples are left out",
            n,
            int((lens - n).sum()),
        )
    if n == 0:
        return "anchor", "positive", []
    if n == 1:
        return "anchor", "positive", ["negative"]
    return "anchor", "positive", [f"negative_{i}" for i in range(1, n + 1)]


def iter_output_rows(coll: Collection) -> Any:
    anchor, positive, negatives = _layout(coll)
    order = coll.options.get("columns") or [anchor, positive, *negatives]
    for ex in iter_examples(coll):
        if len(ex.negatives) < len(negatives):
            raise InputError(
                f"example at {coll.source_path(ex.source)}:{ex.line} has {len(ex.negatives)} "
                f"negatives; this n-tuple layout needs {len(negatives)}"
            )
        for p in ex.positives:  # one row per positive: ST rows hold exactly one
            vals = {anchor: ex.query, positive: p[2]}
            vals.update({c: n[2] for c, n in zip(negatives, ex.negatives, strict=False)})
            yield {c: vals[c] for c in order}


def write(coll: Collection, out: str | os.PathLike[str]) -> None:
    with (
        progress(total=len(coll), desc="export sentence-transformers") as bar,
        atomic_file(out) as f,
    ):
        if is_parquet(out):
            write_parquet_rows(f, iter_output_rows(coll), 10_000, bar)
        else:
            for row in iter_output_rows(coll):
                f.write(dumps_line(row))
                bar.update()
