"""``trueneg score-negatives``: the ECI of hard-negative sets, before any training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command("score-negatives")
def score_negatives(
    collections: Annotated[
        list[Path], typer.Argument(help="Collections (e.g. a judged one and its fixed versions).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the summaries as JSON here.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Frozen encoder (default: all-MiniLM-L6-v2).")
    ] = None,
    delta: Annotated[
        float, typer.Option(help="Safety band: unsafe above (1 - delta) x the weakest positive.")
    ] = 0.05,
    in_batch: Annotated[
        int, typer.Option(help="Other examples whose positives make the in-batch baseline.")
    ] = 16,
    query_prefix: Annotated[str, typer.Option(help="e.g. 'query: ' for E5 models.")] = "",
    passage_prefix: Annotated[str, typer.Option(help="e.g. 'passage: ' for E5 models.")] = "",
) -> None:
    """Effective Contrastive Information of each collection's hard negatives (information
    capacity x the harmonic mean of hardness and safety; see trueneg.score), per collection and
    subset, from a frozen encoder's embeddings. No training."""
    from trueneg._io import atomic_file, check_output
    from trueneg.models import Encoder, EncoderConfig
    from trueneg.score import ScoreConfig, score_collections

    cfg = ScoreConfig(delta=delta, in_batch=in_batch)
    if out is not None:
        check_output(out, collections)
    enc = Encoder(
        EncoderConfig(
            model=str(model) if model else None,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
        )
    )
    res = score_collections(collections, cfg, encoder=enc)
    typer.echo(
        "| collection | examples | negatives | IC | signal | safety | DE | ECI | unsafe | "
        "above positive |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in res:
        typer.echo(
            f"| {r.collection} | {r.examples:,} | {r.negatives:,} | "
            f"{r.information_capacity:.3f} | {r.signal:.3f} | {r.safety:.3f} | "
            f"{r.efficiency:.3f} | {r.eci:.3f} | {r.unsafe_share:.1%} | "
            f"{r.above_positive_share:.1%} |"
        )
    if out is not None:
        with atomic_file(out, "w") as f:
            json.dump(
                {
                    "settings": {
                        "delta": delta,
                        "in_batch": in_batch,
                        "model": str(model or "default"),
                    },
                    "collections": [r.as_dict() for r in res],
                },
                f,
                indent=2,
            )
        typer.echo(f"wrote {out}")
