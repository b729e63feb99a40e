"""Bi-encoder contrastive training (after Tevatron and sentence-transformers'
MultipleNegativesRankingLoss): InfoNCE over each query's positive, its hard negatives and every
other passage of the batch (a passage known to be relevant to the query, from any of its
examples, is masked out rather than pushed away), 1 positive + 7 negatives per query, mean
pooling. The temperature defaults to 0.05 (scale 20: how all-MiniLM-L6-v2 and most
sentence-transformers models were trained; the paper's E5 recipe uses 0.01). The result is a
sentence-transformers directory (and a plain transformers one): ``SentenceTransformer(out)``
and ``trueneg.models.Encoder`` both load it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trueneg._io import check_output, prepare_output
from trueneg.exceptions import InputError
from trueneg.train._loop import (
    FIXED_GB,
    Schedule,
    TrainData,
    activation_gb,
    fit_and_save,
    place,
    require_torch,
    setup_device,
    work_dir,
)
from trueneg.train.dynamic import DynamicConfig


@dataclass(frozen=True)
class RetrieverConfig:
    #: local transformers / sentence-transformers directory (default: all-MiniLM-L6-v2)
    model: str | None = None
    pooling: str = "auto"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    #: query and passage tokens in training; None = the model's declared max_seq_length
    #: (all-MiniLM-L6-v2: 256); 64 query tokens (Tevatron's MS MARCO setting) cut most BEIR
    #: queries of CISI or FiQA short
    query_max_length: int | None = None
    passage_max_length: int | None = None
    temperature: float = 0.05
    #: passages per query: 1 positive + (group_size - 1) hard negatives
    group_size: int = 8
    #: "example": one row per example per epoch (positives rotate over epochs); "positive": one
    #: row per positive (relabelled positives add rows), as sentence-transformers' pairs
    rows: str = "example"
    #: dropout probability of every dropout layer while training; None = the model's own (0.1
    #: for MiniLM). 0 trains ~1.45x faster on CPU (dropout masks are a third of a step there)
    dropout: float | None = None
    schedule: Schedule = field(default_factory=Schedule)
    #: "static": the collection's negatives, rotated over epochs; "dynamic": re-mined from the
    #: model being trained (STAR / ADORE), through the false-negative filters of ``dynamic``
    negatives: str = "static"
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise InputError("temperature must be > 0")
        if self.group_size < 1:
            raise InputError("group_size must be at least 1")
        if any(n is not None and n < 1 for n in (self.query_max_length, self.passage_max_length)):
            raise InputError("max lengths must be at least 1")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.negatives not in ("static", "dynamic"):
            raise InputError(f"negatives must be static or dynamic, got {self.negatives!r}")


def _load(cfg: RetrieverConfig, device: Any, precision: str) -> tuple[Any, Any, str, Path]:
    from transformers import AutoTokenizer

    from trueneg.models import default_model_path, load_model, resolve_pooling

    path = Path(cfg.model or default_model_path())
    if not path.is_dir():
        raise InputError("model directory not found", path=str(path))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = load_model(path, device, precision, training=True)
    return model, tok, resolve_pooling(path, cfg.pooling), path


def recipe_encoder(
    recipe: RetrieverConfig, model: str | Path | None = None, **settings: Any
) -> Any:
    """An :class:`trueneg.models.Encoder` that reads texts as ``recipe`` trained them (pooling,
    normalisation, prefixes) for ``model`` (default: the recipe's base model); ``settings`` are
    further ``EncoderConfig`` fields (max_length, dtype, cache_dir, ...)."""
    from trueneg.models import Encoder, EncoderConfig

    return Encoder(
        EncoderConfig(
            model=str(model) if model is not None else recipe.model,
            pooling=recipe.pooling,
            normalize=recipe.normalize,
            query_prefix=recipe.query_prefix,
            passage_prefix=recipe.passage_prefix,
            **settings,
        )
    )


def save_sentence_transformers(
    model: Any,
    tok: Any,
    out: Path,
    *,
    pooling: str,
    normalize: bool,
    max_length: int,
    query_prefix: str = "",
    passage_prefix: str = "",
) -> None:
    """A directory both transformers and sentence-transformers load: weights + tokenizer at the
    top, ``modules.json`` (Transformer, Pooling, optional Normalize) and the pooling config."""
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    dim = int(model.config.hidden_size)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
                "pooling_mode_weightedmean_tokens": False,
                "pooling_mode_lasttoken": pooling == "last",
                "include_prompt": True,
            },
            indent=2,
        )
    )
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False})
    )
    (out / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "prompts": {"query": query_prefix, "document": passage_prefix},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine" if normalize else "dot",
            },
            indent=2,
        )
    )


def train_retriever(
    collection: str | Path,
    out: str | Path,
    config: RetrieverConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = True,
    row_counts: Any = None,
) -> dict[str, Any]:
    """Train a bi-encoder on a collection (e.g. the output of ``trueneg fix``) and save it to
    ``out`` (checkpoints under ``out.checkpoints`` until it is done). ``row_counts`` (one per
    example) fixes how many rows each example gives per epoch (a step-matched control). Returns
    the result dict that is also written to ``out/train.json``."""
    torch = require_torch()
    from trueneg.collection import Collection
    from trueneg.models import declared_max_length, pool_hidden

    cfg = config or RetrieverConfig()
    s = cfg.schedule
    out = Path(out)
    dyn = cfg.dynamic if cfg.negatives == "dynamic" else None
    prepare_output(out, [collection, cfg.model, dyn.index if dyn else None], overwrite=overwrite)
    judge_cache = out.with_name(out.name + ".judge-cache.sqlite")
    if dyn is not None:
        if dyn.judge_cache:
            judge_cache = Path(dyn.judge_cache)
        check_output(judge_cache, [collection, cfg.model, out, dyn.index])
    coll = Collection.load(collection)
    data = TrainData(coll, cfg.group_size - 1, s.seed, rows=cfg.rows, row_counts=row_counts)
    device, amp = setup_device(s)
    model, tok, pooling, base = _load(cfg, device, "bf16" if amp == torch.bfloat16 else "fp32")
    declared = declared_max_length(base)
    passage_len = cfg.passage_max_length or declared or 512
    query_len = cfg.query_max_length or declared or 512
    # a step: every row's group of passages (at most), at the passage length
    # memory: with checkpointing left to auto, a step whose activations would not fit in
    # memory_limit_gb is encoded in checkpointed chunks of sequences (each chunk re-run in the
    # backward pass), so the peak is one chunk's activations, whatever the batch
    _, _, layer_ckpt = place(model, s)
    per_seq = activation_gb(model.config, 1, max(passage_len, query_len))
    room = s.memory_limit_gb - FIXED_GB
    chunk = 0
    if s.gradient_checkpointing is None and per_seq * s.batch_size * cfg.group_size > room:
        chunk = max(1, int(room / per_seq))
    checkpointing: bool | str = f"chunks of {chunk}" if chunk else layer_ckpt
    if cfg.dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.dropout

    def embed(texts: list[str], max_length: int) -> Any:
        batch = tok(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = batch.to(device)

        def encode(*tensors: Any) -> Any:
            inputs = dict(zip(keys, tensors, strict=True))
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                hidden = model(**inputs).last_hidden_state
            return pool_hidden(hidden, inputs["attention_mask"], pooling).float()

        keys = list(batch.keys())
        n = len(texts)
        if chunk and n > chunk and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            parts = [
                checkpoint(encode, *(batch[k][a : a + chunk] for k in keys), use_reentrant=False)
                for a in range(0, n, chunk)
            ]
            e = torch.cat(parts)
        else:
            e = encode(*(batch[k] for k in keys))
        return torch.nn.functional.normalize(e, dim=-1) if cfg.normalize else e

    def loss_fn(batch: list[tuple[int, int, list[int]]]) -> Any:
        qt = [cfg.query_prefix + data.query_text[data.qids[i]] for i, _, _ in batch]
        # every passage of the batch once (rows may share negatives): each row's positive, its
        # negatives and all the others' passages are its candidates
        col = {
            p: c
            for c, p in enumerate(dict.fromkeys(p for _, pos, negs in batch for p in (pos, *negs)))
        }
        pids = list(col)
        target = [col[p] for _, p, _ in batch]
        pt = [cfg.passage_prefix + data.passage_text[p] for p in pids]
        q = embed(qt, query_len)
        d = embed(pt, passage_len)
        scores = q @ d.T / cfg.temperature
        # a passage known to be relevant to a query is not its negative, in-batch or not
        known = [data.known_positives[int(data.qids[i])] for i, _, _ in batch]
        mask = [
            (r, col[p])
            for r, kp in enumerate(known)
            for p in kp
            if p in col and col[p] != target[r]
        ]
        if mask:
            rows_, cols_ = zip(*mask, strict=True)
            scores = scores.index_put(
                (torch.tensor(rows_, device=device), torch.tensor(cols_, device=device)),
                torch.tensor(float("-inf"), device=device),
            )
        return torch.nn.functional.cross_entropy(scores, torch.tensor(target, device=device))

    def embed_frozen(texts: Any, kind: str) -> Any:
        """Embeddings by the current weights, without gradients or dropout, longest first."""
        import numpy as np

        prefix, length = (
            (cfg.query_prefix, query_len) if kind == "query" else (cfg.passage_prefix, passage_len)
        )
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out_ = np.zeros((len(texts), int(model.config.hidden_size)), np.float32)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                for a in range(0, len(texts), 64):
                    rows = order[a : a + 64]
                    e = embed([prefix + texts[i] for i in rows], length)
                    out_[rows] = e.float().cpu().numpy()
        finally:
            model.train(was)
        return out_

    negatives = None
    if dyn is not None:
        from trueneg.train.dynamic import DynamicNegatives

        negatives = DynamicNegatives(
            dyn,
            coll,
            data,
            cfg.group_size - 1,
            s.seed,
            work_dir(out),
            embed_frozen,
            judge_cache=judge_cache,
        )

    def save(folder: Path) -> None:
        save_sentence_transformers(
            model,
            tok,
            folder,
            pooling=pooling,
            normalize=cfg.normalize,
            max_length=declared or passage_len,
            query_prefix=cfg.query_prefix,
            passage_prefix=cfg.passage_prefix,
        )

    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, "fp32")
    info = {
        "base_model": str(base),
        "pooling": pooling,
        "device": str(device),
        "precision": precision,
        "query_max_length": query_len,
        "passage_max_length": passage_len,
        "gradient_checkpointing": checkpointing,
    }
    return fit_and_save(
        "retriever",
        collection,
        out,
        cfg,
        model,
        data,
        loss_fn,
        save,
        resume=resume,
        info=info,
        distinct_passages=False,
        negatives=negatives,
    )
