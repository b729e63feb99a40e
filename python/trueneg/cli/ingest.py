"""``trueneg ingest``: external files -> a collection directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def ingest(
    inputs: Annotated[list[Path], typer.Argument(help="Input files (or one BEIR folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Collection directory to create.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="bge | tevatron (rlhn) | tevatron-v2 | st | beir | auto (from the first row's fields).",
        ),
    ] = "auto",
    subset: Annotated[
        str | None,
        typer.Option(
            help="Subset (source dataset) name for every row; default: the row's 'subset' field, else the file name."
        ),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="Corpus file for tevatron-v2 ({docid, title?, text}).")
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="fail: stop at the first bad row; skip: leave bad rows out and count them.",
        ),
    ] = "fail",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    chunk_size: Annotated[
        int, typer.Option(help="Examples interned per chunk (memory vs. overhead).")
    ] = 50_000,
) -> None:
    """Read training data into a collection (passages interned by content, Parquet + manifest)."""
    from trueneg.exceptions import InputError
    from trueneg.formats import ingest as do_ingest

    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error must be 'fail' or 'skip', got {on_error!r}")
    coll = do_ingest(
        inputs,
        out,
        format=format,
        subset=subset,
        corpus=corpus,
        on_error=on_error,
        overwrite=overwrite,
        chunk_size=chunk_size,
    )
    c = coll.manifest["counts"]
    sk = coll.manifest["skipped"]
    typer.echo(
        f"wrote {out}: {c['examples']:,} examples, {c['queries']:,} queries, {c['passages']:,} "
        f"passages ({coll.source_format})"
    )
    if sk["count"]:
        typer.echo(f"skipped {sk['count']:,} bad rows; first: {sk['first'][0]}", err=True)
