"""``trueneg stats``: per-subset counts of a collection (or of the bundled RLHN sample)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def stats(
    collection: Annotated[
        Path | None,
        typer.Argument(
            help="Collection directory, or a training file in any supported format. Default: the bundled RLHN sample (FiQA + MS MARCO, 50 queries)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per subset: examples, queries, positives and negatives per example, unique passages,
    passages shared with other subsets, and passages whose exact text appears under another id."""
    from trueneg.collection import Collection
    from trueneg.data import rlhn_sample_stage1
    from trueneg.formats import ingest
    from trueneg.stats import collection_stats, format_table

    with tempfile.TemporaryDirectory(prefix="trueneg-stats-") as tmp:
        if collection is None:
            coll = ingest(rlhn_sample_stage1(), Path(tmp) / "c", format="tevatron")
            label = "bundled RLHN sample (rlhn-test-50, stage 1)"
        elif (collection / "manifest.json").is_file():
            coll = Collection.load(collection)
            label = str(collection)
        else:
            coll = ingest([collection], Path(tmp) / "c")
            label = str(collection)
        rows = collection_stats(coll)
    if as_json:
        typer.echo(
            json.dumps({"collection": label, "subsets": [r.as_dict() for r in rows]}, indent=2)
        )
    else:
        typer.echo(f"{label}\n")
        typer.echo(format_table(rows))
