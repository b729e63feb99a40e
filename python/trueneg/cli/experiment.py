"""``trueneg experiment``: train on noisy and fixed data, evaluate, compare (paired, seeded)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from trueneg.cli import app


def _generate_config(path: Path | None) -> Any:
    if path is None:
        return None
    from trueneg.generate import GenerateConfig

    return GenerateConfig.from_toml(path)


def judge_preset(judge: str, threshold: int) -> Any:
    """``qrels`` (None: the oracle), ``local`` (the zero-cost embedding scorer as the judge:
    negatives scoring within 5% of the lowest labelled positive are flagged), or a judge TOML."""
    from trueneg.judge import JudgeConfig, Stage

    if judge == "qrels":
        return None
    if judge == "local":
        return JudgeConfig(
            stages=(Stage("local", "default", "", backend="local", local_flags=True),)
        )
    return JudgeConfig.from_toml(judge)


@app.command()
def experiment(
    datasets: Annotated[
        list[Path],
        typer.Argument(help="BEIR-format folders (corpus.jsonl, queries.jsonl, qrels/)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Result JSON (a .md table and a .png beside it).")
    ],
    seeds: Annotated[list[int], typer.Option(help="Seeds (repeat the option or list them).")] = [  # noqa: B006
        0,
        1,
        2,
    ],
    judge: Annotated[
        str,
        typer.Option(
            help="qrels (the human labels: a perfect judge), local (the embedding scorer, zero cost), or a judge TOML."
        ),
    ] = "qrels",
    positives: Annotated[
        int, typer.Option("--positives", "-k", help="K: labelled positives per train query.")
    ] = 4,
    labelled: Annotated[
        str, typer.Option(help="random (a seeded K of the relevant) or best (the K best graded).")
    ] = "random",
    mine_depth: Annotated[
        int, typer.Option(help="Negatives: the zero-shot model's top N, positives masked.")
    ] = 30,
    threshold: Annotated[int, typer.Option(help="qrels grade that counts as relevant.")] = 1,
    test_share: Annotated[float, typer.Option(help="Share of judged queries held out.")] = 0.5,
    conditions: Annotated[
        str,
        typer.Option(
            help="Comma-separated: zero-shot, noisy, remove, remove-hn, relabel, relabel-matched "
            "(and remove-hn+syneg, relabel+syneg with --generate; added by default then; "
            "dynamic, dynamic-filtered)."
        ),
    ] = "zero-shot,noisy,remove,remove-hn,relabel,relabel-matched",
    generate: Annotated[
        Path | None,
        typer.Option(
            help="A [generate] TOML (SyNeg): adds remove-hn+syneg and relabel+syneg, the fixed "
            "sets with generated negatives mixed in and refilling short examples."
        ),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            help="Add dynamic (negatives re-mined from the model being trained, positives masked: "
            "ADORE) and dynamic-filtered (relabel's data; duplicates, verdicts and the judge in "
            "the loop, no margin, as the static mining) beside the static conditions."
        ),
    ] = False,
    max_false_negatives: Annotated[
        int | None, typer.Option(help="fix's k: drop examples with more false negatives (off).")
    ] = None,
    max_train_queries: Annotated[int | None, typer.Option(help="Cap (quick checks).")] = None,
    max_test_queries: Annotated[int | None, typer.Option(help="Cap (quick checks).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model to fine-tune (default: all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 1,
    max_steps: Annotated[
        int | None, typer.Option(help="Training steps (overrides epochs).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per batch.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-5,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (scale 20).")] = 0.05,
    group_size: Annotated[int, typer.Option(help="1 positive + N-1 negatives per row.")] = 8,
    max_length: Annotated[
        int, typer.Option(help="Query and passage tokens in training (eval: the model's).")
    ] = 128,
    dropout: Annotated[
        float, typer.Option(help="Dropout while training (0: ~1.45x faster on CPU).")
    ] = 0.0,
    precision: Annotated[str, typer.Option(help="Training precision: auto, fp32, bf16.")] = "auto",
    eval_precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 where the CPU has it, ~2x faster, the same for every condition) or fp32."
        ),
    ] = "auto",
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep collections and per-run results here (a rerun resumes)."),
    ] = None,
) -> None:
    """Does fixing false negatives help? Per seed: split the judged queries, keep K labelled
    positives per train query, mine the zero-shot model's top negatives, judge them (the qrels
    oracle by default), fix, train every condition with the same recipe and evaluate on the
    held-out queries. Prints the table; writes JSON, Markdown and a PNG."""
    from trueneg.experiment import ExperimentConfig, markdown, run_experiment, write_outputs

    base = ExperimentConfig()
    recipe = base.recipe
    recipe = replace(
        recipe,
        model=str(model) if model else None,
        temperature=temperature,
        group_size=group_size,
        dropout=dropout,
        query_max_length=max_length,
        passage_max_length=max_length,
        schedule=replace(
            recipe.schedule,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            precision=precision,
        ),
    )
    cfg = ExperimentConfig(
        seeds=tuple(seeds),
        test_share=test_share,
        labelled_positives=positives,
        labelled=labelled,
        mine_depth=mine_depth,
        relevance_threshold=threshold,
        conditions=tuple(c.strip() for c in conditions.split(",") if c.strip()),
        judge=judge_preset(judge, threshold),
        generate=_generate_config(generate),
        dynamic=dynamic,
        max_false_negatives=max_false_negatives,
        max_train_queries=max_train_queries,
        max_test_queries=max_test_queries,
        recipe=recipe,
        eval_precision=eval_precision,
    )
    from trueneg._io import check_output

    check_output(out, [*datasets, workdir])
    if workdir is not None:
        check_output(workdir, datasets)
    results = {}
    for i, ds in enumerate(datasets):
        wd = None if workdir is None else (workdir / ds.name if len(datasets) > 1 else workdir)
        r = run_experiment(ds, cfg, workdir=wd, say=lambda s: typer.echo(s, err=True))
        results[r["dataset"] if r["dataset"] not in results else f"{r['dataset']}-{i}"] = r
        typer.echo(markdown(r))
    result = next(iter(results.values())) if len(results) == 1 else {"datasets": results}
    written = write_outputs(result, out)
    typer.echo("wrote " + ", ".join(str(p) for p in written))
