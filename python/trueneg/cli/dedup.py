"""``trueneg dedup``: exact and near-duplicate queries and passages, leakage, free false negatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import app


@app.command()
def dedup(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write a new collection here: the action applied, free false negatives in judgments.parquet, the report in dedup.json.",
        ),
    ] = None,
    action: Annotated[
        str,
        typer.Option(
            help="report: change nothing; drop: keep the first example of each duplicate-query cluster; merge: one example per cluster with the positives and negatives unioned."
        ),
    ] = "report",
    against: Annotated[
        list[Path] | None,
        typer.Option(
            help="A BEIR evaluation folder to check for leakage (training queries/passages that duplicate its queries/corpus). Repeatable."
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            help="Jaccard similarity at which two texts count as near duplicates (picks bands x rows unless given)."
        ),
    ] = 0.8,
    bands: Annotated[
        int | None, typer.Option(help="LSH bands (with --rows; bands x rows <= --num-perm).")
    ] = None,
    rows: Annotated[int | None, typer.Option(help="LSH rows per band (with --bands).")] = None,
    num_perm: Annotated[int, typer.Option(help="MinHash permutations.")] = 128,
    recall: Annotated[
        float,
        typer.Option(
            help="Without --bands/--rows: pick bands x rows so a pair at the threshold becomes a candidate with at least this probability, with the fewest false candidates."
        ),
    ] = 0.95,
    unit: Annotated[
        str,
        typer.Option(
            help="Shingle unit: auto (char n-grams for queries, word n-grams for passages), word, char."
        ),
    ] = "auto",
    ngram: Annotated[int, typer.Option(help="Shingle size n.")] = 5,
    verify: Annotated[
        str,
        typer.Option(
            help="Confirm LSH candidates: minhash (signature estimate >= threshold), jaccard (exact, slower), none (every candidate)."
        ),
    ] = "minhash",
    normalize: Annotated[
        bool, typer.Option(help="NFKC, lower case and collapsed whitespace before hashing.")
    ] = True,
    seed: Annotated[int, typer.Option(help="MinHash seed (signatures are stable for a seed).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Find duplicate queries and passages (exact after normalisation, and near by MinHash LSH),
    leakage into evaluation sets, and negatives that duplicate their own query's positives (false
    negatives found with no LLM call)."""
    from trueneg.collection import Collection
    from trueneg.dedup import DedupConfig, dedup_collection

    cfg = DedupConfig(
        threshold=threshold,
        num_perm=num_perm,
        bands=bands,
        rows=rows,
        unit=unit,
        ngram=ngram,
        verify=verify,
        nfkc=normalize,
        lowercase=normalize,
        whitespace=normalize,
        seed=seed,
        target_recall=recall,
    )
    coll = Collection.load(collection)
    r = dedup_collection(
        coll, cfg, against=against or [], action=action, out=out, overwrite=overwrite
    )
    if as_json:
        typer.echo(json.dumps(r.as_dict(), indent=2, default=str))
        return
    typer.echo(
        f"LSH {r.bands} bands x {r.rows} rows ({r.bands * r.rows} of {num_perm} permutations), "
        f"verify={verify}, threshold={threshold}"
    )
    at = dict(r.s_curve)
    recall = 1 - (1 - threshold**r.rows) ** r.bands
    typer.echo(f"recall at the threshold (J={threshold}): {recall:.2f}")
    typer.echo("S-curve  J: " + "  ".join(f"{j:.2f}" for j in at))
    typer.echo("         P: " + "  ".join(f"{p:.2f}" for p in at.values()))
    for kind, s in (("queries", r.queries), ("passages", r.passages)):
        extra = (
            f" ({s['within_subset_duplicates']} within a subset, {s['cross_subset_duplicates']} across)"
            if kind == "queries"
            else ""
        )
        typer.echo(
            f"{kind}: {s['texts']:,} texts, {s['duplicate_texts']:,} duplicates{extra} "
            f"({s['exact_duplicate_texts']:,} exact) in {s['clusters_with_duplicates']:,} clusters"
        )
    typer.echo(
        f"free false negatives: {r.free_false_negatives:,} negatives in "
        f"{r.free_false_negative_examples:,} examples duplicate a positive of their own query"
    )
    for i, smp in enumerate(r.samples, 1):
        typer.echo(
            f"  {i}. query: {_clip(smp['query'])}\n"
            f"     positive: {_clip(smp['positive'])}\n"
            f"     negative: {_clip(smp['negative'])} (similarity {smp['similarity']:.3f})"
        )
    if r.free_false_negatives > len(r.samples):
        typer.echo(f"  ... and {r.free_false_negatives - len(r.samples):,} more")
    for lk in r.leakage:
        typer.echo(
            f"leakage vs {lk.against}: {lk.train_queries_leaked:,} training queries match its "
            f"{lk.eval_queries:,} queries; {lk.train_passages_leaked:,} training passages match "
            f"its {lk.eval_passages:,} passages"
        )
    if action != "report":
        typer.echo(f"{action}: {r.examples_before:,} -> {r.examples_after:,} examples")
    if out is not None:
        typer.echo(f"wrote {out}")
    typer.echo(f"({r.seconds:.1f} s)")


def _clip(text: str, n: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"
