"""``trueneg prune``: leave-one-subset-out plan, keep/drop decision, pruned collection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app

prune_app = typer.Typer(
    help="Dataset pruning (RLHN §5.1): leave-one-subset-out runs and decisions.",
    no_args_is_help=True,
)
app.add_typer(prune_app, name="prune")


@prune_app.command("plan")
def plan(
    collection: Annotated[Path, typer.Argument(help="Collection with several subsets.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Plan JSON: the 'all' run and one run per left-out subset."
        ),
    ],
    eval_sets: Annotated[
        list[str] | None,
        typer.Option("--eval", help="BEIR evaluation folders the runs are scored on. Repeatable."),
    ] = None,
) -> None:
    """Write the leave-one-subset-out training runs (executed by prune run)."""
    from trueneg._io import check_output
    from trueneg.collection import Collection
    from trueneg.prune import plan as make_plan
    from trueneg.prune import write_json

    check_output(out, [collection, *(eval_sets or [])])
    p = make_plan(Collection.load(collection), list(eval_sets or []))
    write_json(out, p)
    typer.echo(f"wrote {out}: {len(p['runs'])} runs over {len(p['subsets'])} subsets")


@prune_app.command("decide")
def decide(
    plan_file: Annotated[Path, typer.Argument(help="The plan JSON.")],
    results: Annotated[
        Path, typer.Option(help="JSON: run name -> score (or dataset -> score, averaged).")
    ],
    necessary: Annotated[
        list[str] | None,
        typer.Option(
            help="Subsets kept whatever the results (e.g. those with a BEIR counterpart). Repeatable."
        ),
    ] = None,
    margin: Annotated[
        float, typer.Option(help="Drop only when removal helps by more than this.")
    ] = 0.0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Decision JSON.")] = None,
) -> None:
    """Drop the subsets whose removal raised the average score, except the necessary ones."""
    from trueneg._io import check_output
    from trueneg.prune import decide as do_decide
    from trueneg.prune import write_json

    if out is not None:
        check_output(out, [plan_file, results])
    d = do_decide(
        json.loads(plan_file.read_text()),
        json.loads(results.read_text()),
        list(necessary or []),
        margin,
    )
    for r in d.rows:
        typer.echo(
            f"{r['subset']:24s} without it {r['score_without']:.4f} ({r['delta']:+.4f}) -> {r['decision']}"
            + (" (necessary)" if r["necessary"] else "")
        )
    typer.echo(
        f"keep {len(d.keep)}: {', '.join(d.keep)}\ndrop {len(d.drop)}: {', '.join(d.drop) or '-'}"
    )
    if out:
        write_json(out, d.as_dict())


@prune_app.command("apply")
def apply(
    collection: Annotated[Path, typer.Argument(help="Collection.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pruned collection.")],
    keep: Annotated[list[str] | None, typer.Option(help="Subsets to keep. Repeatable.")] = None,
    decision: Annotated[
        Path | None, typer.Option(help="A decision JSON from 'prune decide' (its keep list).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Write a collection with only the kept subsets."""
    from trueneg.exceptions import InputError
    from trueneg.prune import apply as do_apply

    names = list(keep or [])
    if decision:
        names += json.loads(decision.read_text())["keep"]
    if not names:
        raise InputError("give --keep SUBSET (repeatable) or --decision FILE")
    n = do_apply(collection, out, names, overwrite=overwrite)
    typer.echo(f"wrote {out}: {n:,} examples from {len(names)} subsets")


@prune_app.command("run")
def run(
    plan_file: Annotated[Path, typer.Argument(help="The plan JSON (prune plan --eval ...).")],
    workdir: Annotated[
        Path,
        typer.Option(
            "--workdir", "-w", help="results.json and decision.json go here; a rerun resumes."
        ),
    ],
    necessary: Annotated[
        list[str] | None,
        typer.Option(help="Subsets kept whatever the results. Repeatable."),
    ] = None,
    margin: Annotated[
        float, typer.Option(help="Drop only when removal helps by more than this.")
    ] = 0.0,
    model: Annotated[
        Path | None, typer.Option(help="Model to fine-tune (default: all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per run.")] = 1,
    max_steps: Annotated[int | None, typer.Option(help="Training steps per run.")] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per batch.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-5,
    seed: Annotated[int, typer.Option(help="Training seed (the same for every run).")] = 42,
    eval_precision: Annotated[
        str, typer.Option(help="fp32 (reference numbers) or auto (bf16 where the CPU has it).")
    ] = "fp32",
) -> None:
    """Train and evaluate every run of the plan with the same recipe, then decide (as prune
    decide) and write the decision."""
    from dataclasses import replace

    from trueneg.prune import run_plan
    from trueneg.train.retriever import RetrieverConfig

    base = RetrieverConfig(model=str(model) if model else None)
    recipe = replace(
        base,
        schedule=replace(
            base.schedule,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
        ),
    )
    _, d = run_plan(
        json.loads(plan_file.read_text()),
        workdir,
        recipe,
        necessary=list(necessary or []),
        margin=margin,
        eval_precision=eval_precision,
        say=lambda s: typer.echo(s, err=True),
    )
    for r in d.rows:
        typer.echo(
            f"{r['subset']:24s} without it {r['score_without']:.4f} ({r['delta']:+.4f}) -> {r['decision']}"
        )
    typer.echo(f"keep: {', '.join(d.keep)}; drop: {', '.join(d.drop) or '-'}")
    typer.echo(f"wrote {workdir / 'results.json'}, {workdir / 'decision.json'}")
