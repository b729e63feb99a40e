"""``trueneg mine``: new hard negatives from precomputed embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def mine(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    query_embeddings: Annotated[
        Path,
        typer.Option(help=".npy float (queries, dim), rows in qid order (normalised for cosine)."),
    ],
    passage_embeddings: Annotated[
        Path, typer.Option(help=".npy float (passages, dim), rows in pid order.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New collection.")],
    num_negatives: Annotated[int, typer.Option(help="Negatives per example.")] = 7,
    range_min: Annotated[
        int,
        typer.Option(help="Skip the first candidates after masking positives (rank window start)."),
    ] = 0,
    range_max: Annotated[
        int, typer.Option(help="Look no further than this rank (window end).")
    ] = 100,
    max_score: Annotated[
        float | None, typer.Option(help="Drop candidates scoring above this.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help="Drop candidates scoring below this.")
    ] = None,
    absolute_margin: Annotated[
        float | None, typer.Option(help="Keep s <= p - margin (p: lowest positive score).")
    ] = None,
    relative_margin: Annotated[
        float | None, typer.Option(help="Keep s <= p - |p| * margin; 0.05 = TopK-PercPos.")
    ] = 0.05,
    sampling: Annotated[str, typer.Option(help="top, or random (seeded).")] = "top",
    seed: Annotated[int, typer.Option(help="Seed of random sampling.")] = 0,
    keep_old: Annotated[
        bool,
        typer.Option(
            help="Append the mined negatives after the existing ones instead of replacing them."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Mine hard negatives by exact search over the embeddings (Rust kernel), masking positives."""
    import numpy as np

    from trueneg.mine import mine_collection

    r = mine_collection(
        collection,
        out,
        np.load(query_embeddings),
        np.load(passage_embeddings),
        keep_old=keep_old,
        overwrite=overwrite,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        seed=seed,
    )
    typer.echo(
        f"wrote {out}: {r['negatives']:,} negatives for {r['examples']:,} examples; {r['band']:,} in the "
        f"ambiguous band (band.parquet); {r['short_examples']:,} examples short of {num_negatives}"
    )
