"""``trueneg run``, ``trueneg fix`` and ``trueneg report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def run(
    pipeline: Annotated[
        Path | None,
        typer.Argument(
            help="Pipeline TOML ([ingest] inputs, [dedup], [judge] + [[judge.stages]] + [[judge.import]], [fix], [export], [report]). Default: the built-in RLHN sample, offline."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Work folder (collections, cache, exports, report). Default: ./trueneg-run, or [pipeline] workdir."
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(help="Delete the work folder first (otherwise finished stages are skipped)."),
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            help="local, or ray: embedding, mining and judge calls as Ray Data map_batches over Parquet shards (needs trueneg[ray]; same results). Default: [pipeline] engine, else local."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)."),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            help="Ray workers per stage (default: one per cluster CPU; 4 for judge calls)."
        ),
    ] = None,
) -> None:
    """Run the pipeline: ingest -> dedup -> judge -> fix (remove, remove-hn, relabel) -> export -> report.
    A second run does no work; an interrupted one resumes."""
    from trueneg.pipeline import PipelineConfig, Runner, clean

    cfg = (
        PipelineConfig.from_toml(pipeline, workdir)
        if pipeline
        else PipelineConfig.default(workdir or "trueneg-run")
    )
    if engine is not None:
        cfg.engine = engine
        cfg.__post_init__()
    if ray_address:
        cfg.ray["address"] = ray_address
    if ray_workers:
        cfg.ray["workers"] = ray_workers
    if fresh:
        clean(cfg.workdir)
    label = (
        str(pipeline)
        if pipeline
        else "built-in default: bundled RLHN sample (FiQA + MS MARCO, 50 queries), recorded answers, offline"
    )
    typer.echo(f"pipeline: {label}\nwork folder: {cfg.workdir}")
    results = Runner(cfg, say=typer.echo).run()
    if all(r.status in ("skipped", "off") for r in results):
        typer.echo("nothing to do: every stage is already done")
    report = cfg.workdir / "report" / "report.html"
    if report.exists():
        typer.echo(f"report: {report}")


@app.command()
def fix(
    collection: Annotated[
        Path, typer.Argument(help="Judged collection (judgments.parquet from dedup and/or judge).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Fixed collection to write.")],
    strategy: Annotated[
        str,
        typer.Option(
            help="remove: drop examples with a false negative; remove-hn: drop the false negatives; relabel: move them to the positives."
        ),
    ] = "relabel",
    max_false_negatives: Annotated[
        int | None,
        typer.Option(
            "--k",
            help="remove-hn/relabel drop an example with more than k false negatives (paper 7, reference code 8).",
        ),
    ] = 7,
    no_threshold: Annotated[
        bool, typer.Option(help="Keep every example however many false negatives it has.")
    ] = False,
    exempt: Annotated[
        str,
        typer.Option(
            help="Regex of subsets left unchanged (ArguAna is never relabelled in the paper); '' for none."
        ),
    ] = "arguana",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Apply the false negatives (dedup's and the judge's) with one strategy."""
    from trueneg.fix import fix_collection

    r = fix_collection(
        collection,
        out,
        strategy,
        max_false_negatives=None if no_threshold else max_false_negatives,
        exempt=exempt or None,
        overwrite=overwrite,
    )
    typer.echo(
        f"{strategy}: {r.examples_before:,} -> {r.examples_after:,} examples; {r.false_negatives:,} false "
        f"negatives in {r.examples_with_false_negatives:,} examples; {r.moved_to_positives:,} moved to "
        f"positives; {r.dropped_for_threshold:,} dropped for more than k; wrote {out}"
    )


@app.command()
def report(
    collection: Annotated[Path, typer.Argument(help="Judged collection.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.html, report.md and the PNGs.")
    ],
    fixed: Annotated[
        list[Path] | None,
        typer.Option(help="Fixed collections to summarise (their fix.json). Repeatable."),
    ] = None,
    experiment: Annotated[
        list[Path] | None,
        typer.Option(help="trueneg experiment result JSON to show (table and plot). Repeatable."),
    ] = None,
    prefilter: Annotated[
        list[Path] | None,
        typer.Option(help="trueneg judge prefilter curve JSON (one per scorer). Repeatable."),
    ] = None,
    eci: Annotated[
        Path | None,
        typer.Option(help="trueneg score-negatives JSON: the ECI of the collections, shown."),
    ] = None,
) -> None:
    """Write the HTML (self-contained) and Markdown report of a judged collection."""
    from trueneg._io import check_output
    from trueneg.collection import Collection
    from trueneg.exceptions import InputError
    from trueneg.report import ReportData, load_json, write_report

    check_output(out, [collection, *(fixed or []), *(experiment or []), *(prefilter or []), eci])
    coll = Collection.load(collection)

    fixes = [load_json(f / "fix.json") for f in fixed or []]
    experiments = []
    for f in experiment or []:
        r = load_json(f)
        if r is None:
            raise InputError("experiment result not found", path=str(f))
        experiments += list(r["datasets"].values()) if "datasets" in r else [r]
    curves = []
    for f in prefilter or []:
        c = load_json(f)
        if c is None:
            raise InputError("prefilter curve not found", path=str(f))
        curves.append(c)
    scores = load_json(eci) if eci is not None else None
    if eci is not None and scores is None:
        raise InputError("ECI scores not found", path=str(eci))
    p = write_report(
        ReportData(
            "trueneg report",
            coll,
            load_json(coll.path / "judge-summary.json"),
            load_json(coll.path / "dedup.json"),
            [f for f in fixes if f],
            experiments=experiments,
            prefilters=curves,
            eci=(scores or {}).get("collections", []),
        ),
        out,
    )
    typer.echo(f"wrote {p}")
