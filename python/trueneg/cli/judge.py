"""``trueneg judge``: run the LLM cascade, estimate its cost, import past answers, show status, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app

judge_app = typer.Typer(
    help="LLM judge cascade (RLHN: gpt-4o-mini then gpt-4o by default).", no_args_is_help=True
)
app.add_typer(judge_app, name="judge")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Judge TOML ([judge] settings and [[judge.stages]]); default: RLHN's two stages.",
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Answer cache (SQLite); default: judge-cache.sqlite in the collection. Share one across collections to pay once per identical request."
    ),
]


ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="STAGE=MODEL: the model a stage asks (e.g. --model stage1=qwen2.5-7b-instruct for a "
        "local server); repeatable, one per stage.",
    ),
]


def _config(config: Path | None, models: list[str] | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    import dataclasses

    from trueneg.exceptions import InputError
    from trueneg.judge.config import JudgeConfig, with_overrides

    cfg = JudgeConfig.from_toml(config) if config else JudgeConfig()
    if models:
        names = [s.name for s in cfg.stages]
        chosen: dict[str, str] = {}
        for m in models:
            stage, sep, model = m.partition("=")
            if not sep or not model.strip():
                raise InputError(
                    f"--model takes STAGE=MODEL, got {m!r} (stages: {', '.join(names)})"
                )
            if stage not in names:
                raise InputError(f"--model {m}: no stage {stage!r} (stages: {', '.join(names)})")
            chosen[stage] = model.strip()
        cfg = dataclasses.replace(
            cfg,
            stages=tuple(
                dataclasses.replace(s, model=chosen[s.name]) if s.name in chosen else s
                for s in cfg.stages
            ),
        )
    return with_overrides(cfg, **overrides)


def _print_summary(s, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        typer.echo(json.dumps(s.as_dict(), indent=2, default=str))
        return
    for st in s.stages:
        if s.dry_run:
            typer.echo(
                f"{st.name} ({st.model}): {st.calls:,} calls, {st.prompt_tokens:,} prompt tokens; "
                f"expected ${st.expected_cost_usd:,.2f}, worst case ${st.estimated_cost_usd:,.2f}"
            )
            continue
        typer.echo(
            f"{st.name} ({st.model}): {st.calls:,} calls, {st.cache_hits:,} cached, {st.sent:,} sent, "
            f"{st.failed:,} failed; statuses {st.statuses}; {st.flagged_calls:,} calls flag "
            f"{st.false_negatives:,} false negatives; ${st.cost_usd:,.4f}"
        )
    if s.dry_run:
        typer.echo(
            "(dry run: every call of every stage; expected = expected_completion_tokens of output "
            "per call (ARHN stages: 30 tokens per answer-snippet entry, 4 per ranked candidate), "
            "worst case = the full max_completion_tokens; a stage triggered by the one before runs "
            "only on the calls it passes on)"
        )
        return
    per = f"${s.cost_per_false_negative:,.4f}" if s.cost_per_false_negative is not None else "-"
    typer.echo(
        f"false negatives: {s.false_negatives:,} in {s.examples_with_false_negatives:,} examples; "
        f"cost ${s.cost_usd:,.4f} ({per} per false negative); {s.seconds:.1f} s"
    )


@judge_app.command("run")
def run(
    collection: Annotated[
        Path, typer.Argument(help="Collection directory (judgments are written into it).")
    ],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    cache: CacheOpt = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint (vLLM, llama.cpp server); default: OpenAI."),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable that holds the API key (default OPENAI_API_KEY)."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            help="Stop sending once this many dollars (paid + in flight, worst case) would be exceeded."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Requests in flight (default 16).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute limit.")] = None,
    tpm: Annotated[
        int | None, typer.Option(help="Tokens per minute limit (worst case per request).")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Send nothing: judge from cached/imported answers only.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the cascade: cached answers are reused, only missing requests are sent."""
    from trueneg.judge import judge_collection

    cfg = _config(
        config,
        model,
        base_url=base_url,
        api_key_env=api_key_env,
        budget_usd=budget,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
    )
    _print_summary(judge_collection(collection, cfg, cache_path=cache, offline=offline), as_json)


@judge_app.command("estimate")
def estimate(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="The endpoint (a local one costs nothing unless priced)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cost before anything is sent: counted o200k_base prompt tokens, the expected and the
    worst-case output (the full max_completion_tokens), the price table."""
    from trueneg.judge import judge_collection

    cfg = _config(config, model, base_url=base_url)
    _print_summary(judge_collection(collection, cfg, dry_run=True), as_json)


@judge_app.command("import")
def import_(
    collection: Annotated[
        Path, typer.Argument(help="Collection directory (its cache receives the answers).")
    ],
    files: Annotated[
        list[Path],
        typer.Argument(help="RLHN judged JSON Lines, or Batch API output files (--batch-output)."),
    ],
    stage: Annotated[
        str, typer.Option(help="Stage whose model and prompt produced the RLHN answers.")
    ] = "stage1",
    batch_output: Annotated[
        bool, typer.Option(help="The files are Batch API output files (custom_id = request key).")
    ] = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Import answers already paid for, so the cascade reuses them."""
    from trueneg.collection import Collection
    from trueneg.exceptions import InputError
    from trueneg.judge import Cache, default_cache
    from trueneg.judge.importers import import_batch_output, import_rlhn

    cfg = _config(config)
    coll = Collection.load(collection)
    with Cache(cache or default_cache(coll)) as c:
        if batch_output:
            st = import_batch_output(c, files, cfg)
        else:
            by_name = {s.name: s for s in cfg.stages}
            if stage not in by_name:
                raise InputError(f"unknown stage {stage!r} (stages: {', '.join(by_name)})")
            st = import_rlhn(c, files, by_name[stage])
    typer.echo(
        f"{st.rows:,} rows: {st.imported:,} answers imported, {st.already:,} already cached, {st.skipped:,} skipped"
        + (
            f", {st.no_answer:,} without an answer (null or not text; left to be asked)"
            if st.no_answer
            else ""
        )
    )


@judge_app.command("status")
def status(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    cache: CacheOpt = None,
) -> None:
    """Cached answers, money spent, and the judgments written so far."""
    import pyarrow.compute as pc

    from trueneg import judgments
    from trueneg.collection import Collection
    from trueneg.judge import Cache, default_cache

    coll = Collection.load(collection)
    with Cache(cache or default_cache(coll)) as c:
        typer.echo(f"cache {c.path}: {c.count():,} answers, ${c.spent():,.4f} spent")
    t = judgments.load(coll.path)
    if len(t) == 0:
        typer.echo("no judgments yet")
        return
    for stage in pc.unique(t["stage"]).to_pylist():
        s = t.filter(pc.equal(t["stage"], stage))
        counts = pc.value_counts(s["status"]).to_pylist()
        typer.echo(
            f"{stage}: {len(s):,} pairs, {pc.sum(s['flagged']).as_py() or 0:,} flagged; "
            + ", ".join(f"{d['values']} {d['counts']:,}" for d in counts)
        )


@judge_app.command("export")
def export(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output: .parquet, or JSON Lines (one judgment per line)."
        ),
    ],
) -> None:
    """Write the judgments (every stage, with docids and query ids) out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trueneg import judgments
    from trueneg._io import atomic_file, check_output, dumps_line
    from trueneg.collection import Collection

    check_output(out, [collection])
    coll = Collection.load(collection)
    t = judgments.load(coll.path)
    docid = (
        coll.passages["docid"]
        .combine_chunks()
        .take(t["pid"].combine_chunks() if len(t) else pa.array([], pa.uint32()))
    )
    qid = (
        coll.queries["query_id"]
        .combine_chunks()
        .take(t["qid"].combine_chunks() if len(t) else pa.array([], pa.uint32()))
    )
    t = t.append_column("docid", docid).append_column("query_id", qid)
    with atomic_file(out) as f:
        if str(out).endswith(".parquet"):
            pq.write_table(t, f)
        else:
            for row in t.to_pylist():
                f.write(dumps_line(row))
    typer.echo(f"wrote {len(t):,} judgments to {out}")


@judge_app.command("prefilter")
def prefilter(
    collection: Annotated[
        Path, typer.Argument(help="A judged collection (its LLM verdicts are the reference).")
    ],
    scorer: Annotated[
        str, typer.Option(help="embedding (bi-encoder cosine) or cross-encoder (its logit).")
    ] = "embedding",
    model: Annotated[
        str,
        typer.Option(
            help="Scorer model folder; 'default' = all-MiniLM-L6-v2 (a cross-encoder needs a folder)."
        ),
    ] = "default",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Curve JSON (for trueneg report --prefilter)."),
    ] = None,
) -> None:
    """How much LLM work a local scorer saves: per margin, the share of the judge's false
    negatives it passes on and the share of calls it saves."""
    from trueneg.judge.prefilter import prefilter_curve

    if out is not None:
        from trueneg._io import check_output

        check_output(out, [collection, None if model == "default" else model])
    c = prefilter_curve(collection, scorer=scorer, model=model)
    typer.echo(
        f"{c['scorer']} scorer against {c['reference_false_negatives']} false negatives in "
        f"{c['calls']} calls\n| margin | false negatives passed | calls sent | saving |\n|---|---|---|---|"
    )
    for r in c["curve"]:
        saving = f"{r['saving']:.2f}x" if r["saving"] else "all"
        typer.echo(f"| {r['margin']:+.2f} | {r['passed']:.1%} | {r['calls']:.1%} | {saving} |")
    b = c["best_at_90"]
    typer.echo(
        f"best margin passing >= 90%: {b['margin']:+.2f} ({b['passed']:.1%} passed, "
        f"{b['calls']:.1%} of calls sent)"
        if b
        else "no margin passes 90% of the false negatives"
    )
    if out is not None:
        from trueneg._io import atomic_file

        with atomic_file(out, "w") as f:
            json.dump(c, f, indent=2)
        typer.echo(f"wrote {out}")
