"""``trueneg generate``: LLM-written hard negatives (SyNeg) mixed in and refilling short examples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from trueneg.cli import app


@app.command("generate")
def generate(
    collection: Annotated[Path, typer.Argument(help="The collection (e.g. a remove-hn fix).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new collection.")],
    config: Annotated[
        Path | None,
        typer.Option(help="A TOML file with a [generate] table (every knob of GenerateConfig)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The LLM (default gpt-4o-mini).")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="An OpenAI-compatible endpoint (default: OpenAI).")
    ] = None,
    mix_ratio: Annotated[
        float | None,
        typer.Option(help="Share of each example's negatives replaced by generated ones (0.25)."),
    ] = None,
    refill_to: Annotated[
        int | None,
        typer.Option(
            help="Refill examples to this many negatives (default: the median count; 0: none)."
        ),
    ] = None,
    per_call: Annotated[
        int | None, typer.Option(help="Negatives asked for per example (4).")
    ] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Stop sending past this cost.")] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Answer cache (default: judge-cache.sqlite in the collection)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the calls and estimate the cost; send nothing.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use cached answers only; send nothing.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT if it is a collection.")
    ] = False,
) -> None:
    """Ask an LLM for hard negatives of each example (SyNeg's prompt), check them (length,
    near-duplicates, optionally the judge), and write a collection with them mixed in."""
    from trueneg.generate import GenerateConfig, generate_collection

    cfg = GenerateConfig.from_toml(config) if config is not None else GenerateConfig()
    over: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "mix_ratio": mix_ratio,
        "per_call": per_call,
        "budget_usd": budget_usd,
    }
    cfg = replace(cfg, **{k: v for k, v in over.items() if v is not None})
    if refill_to is not None:
        cfg = replace(cfg, refill_to=refill_to)
    r = generate_collection(
        collection,
        out,
        cfg,
        cache_path=cache,
        dry_run=dry_run,
        offline=offline,
        overwrite=overwrite,
    )
    if dry_run:
        typer.echo(
            f"{r.calls:,} calls for {r.examples:,} examples, {r.prompt_tokens:,} input tokens; "
            f"expected ${r.expected_cost_usd:.4f}, at most ${r.estimated_cost_usd:.4f}"
        )
        return
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(r.rejected.items())) or "none"
    typer.echo(
        f"wrote {out}: {r.generated:,} generated ({r.sent:,} calls sent, {r.cache_hits:,} cached, "
        f"${r.cost_usd:.4f}); rejected: {rejected}; used {r.used:,} ({r.mixed:,} mixed in, "
        f"{r.refilled:,} refilling {r.examples_refilled:,} examples to {r.refill_to}; "
        f"{r.examples_still_short:,} still short)"
    )
