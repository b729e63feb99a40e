"""Bi-encoder contrastive training (the paper's recipe, after Tevatron): InfoNCE over each
query's positive, its hard negatives and every other passage of the batch, temperature 0.01,
1 positive + 7 negatives per query, E5-style prefixes, mean pooling. The result is a
sentence-transformers directory (and a plain transformers one): ``SentenceTransformer(out)``
and ``trueneg.embed.Encoder`` both load it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trueneg.exceptions import InputError
from trueneg.train._loop import Schedule, TrainData, fit_and_save, place, require_torch


@dataclass(frozen=True)
class RetrieverConfig:
    #: local transformers / sentence-transformers directory (default: all-MiniLM-L6-v2)
    model: str | None = None
    pooling: str = "auto"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    query_max_length: int = 64
    passage_max_length: int = 350
    temperature: float = 0.01
    #: passages per query: 1 positive + (group_size - 1) hard negatives
    group_size: int = 8
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise InputError("temperature must be > 0")
        if self.group_size < 1:
            raise InputError("group_size must be at least 1")


def _load(cfg: RetrieverConfig) -> tuple[Any, Any, str, Path]:
    from transformers import AutoModel, AutoTokenizer

    from trueneg.embed import default_model_path, resolve_pooling

    path = Path(cfg.model or default_model_path())
    if not path.is_dir():
        raise InputError("model directory not found", path=str(path))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return model, tok, resolve_pooling(path, cfg.pooling), path


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
) -> dict[str, Any]:
    """Train a bi-encoder on a collection (e.g. the output of ``trueneg fix``) and save it to
    ``out`` (checkpoints under ``out.checkpoints`` until it is done). Returns the result dict
    that is also written to ``out/train.json``."""
    torch = require_torch()
    from trueneg.collection import Collection
    from trueneg.embed import pool_hidden

    cfg = config or RetrieverConfig()
    s = cfg.schedule
    out = Path(out)
    if out.exists() and not overwrite and (out / "modules.json").exists():
        raise InputError(f"{out} holds a trained model already (pass --overwrite to replace it)")
    coll = Collection.load(collection)
    data = TrainData(coll, cfg.group_size - 1, s.seed)
    model, tok, pooling, base = _load(cfg)
    device, amp = place(model, s)

    def embed(texts: list[str], max_length: int) -> Any:
        batch = tok(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            hidden = model(**batch).last_hidden_state
        e = pool_hidden(hidden, batch["attention_mask"], pooling).float()
        return torch.nn.functional.normalize(e, dim=-1) if cfg.normalize else e

    def loss_fn(batch: list[tuple[int, int, list[int]]]) -> Any:
        qt = [cfg.query_prefix + data.query_text[data.qids[i]] for i, _, _ in batch]
        pids: list[int] = []
        target = []
        for _, p, negs in batch:
            target.append(len(pids))
            pids.append(p)
            pids.extend(negs)
        pt = [cfg.passage_prefix + data.passage_text[p] for p in pids]
        q = embed(qt, cfg.query_max_length)
        d = embed(pt, cfg.passage_max_length)
        scores = q @ d.T / cfg.temperature
        return torch.nn.functional.cross_entropy(scores, torch.tensor(target, device=device))

    def save(folder: Path) -> None:
        save_sentence_transformers(
            model,
            tok,
            folder,
            pooling=pooling,
            normalize=cfg.normalize,
            max_length=cfg.passage_max_length,
            query_prefix=cfg.query_prefix,
            passage_prefix=cfg.passage_prefix,
        )

    precision = str(amp) if amp is not None else "fp32"
    info = {
        "base_model": str(base),
        "pooling": pooling,
        "device": str(device),
        "precision": precision,
    }
    return fit_and_save(
        "retriever", collection, out, cfg, model, data, loss_fn, save, resume=resume, info=info
    )
