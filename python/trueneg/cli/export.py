"""``trueneg export``: a collection -> an external format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def export(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="bge | tevatron (rlhn) | tevatron-v2 | st | beir. A .parquet --out writes Parquet (tevatron, st).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file (a folder for beir and tevatron-v2).")
    ],
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out if it exists (a folder only if trueneg wrote it).")
    ] = False,
) -> None:
    """Write a collection back out in an external format."""
    from trueneg.collection import Collection
    from trueneg.formats import export_collection

    coll = Collection.load(collection)
    export_collection(coll, format, out, overwrite=overwrite)
    typer.echo(f"wrote {out} ({format}, {len(coll):,} examples)")
