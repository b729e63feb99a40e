"""Cross-encoder reranker: fine-tuned on the same groups (listwise softmax over 1 positive + n
negatives, or pointwise BCE), saved as a transformers sequence-classification directory that
sentence-transformers' ``CrossEncoder`` also loads; ``Reranker.score`` is the scoring API the
judge's local scorer stage and ``trueneg eval --reranker`` use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trueneg._io import prepare_output
from trueneg.exceptions import InputError
from trueneg.models import load_cross_encoder
from trueneg.train._loop import Schedule, TrainData, fit_and_save, place, require_torch


@dataclass(frozen=True)
class RerankerConfig:
    #: local directory: a cross-encoder, or any encoder (a fresh 1-logit head is added)
    model: str | None = None
    max_length: int = 350
    #: listwise (softmax over the group, target the positive) or bce (pointwise)
    loss: str = "listwise"
    group_size: int = 8
    schedule: Schedule = field(default_factory=lambda: Schedule(batch_size=8))

    def __post_init__(self) -> None:
        if self.loss not in ("listwise", "bce"):
            raise InputError(f"loss must be listwise or bce, got {self.loss!r}")
        if self.group_size < 2:
            raise InputError("group_size must be at least 2 (a positive and a negative)")


def train_reranker(
    collection: str | Path,
    out: str | Path,
    config: RerankerConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = True,
) -> dict[str, Any]:
    """Fine-tune a cross-encoder on a collection's groups; saves to ``out`` with ``train.json``."""
    torch = require_torch()
    from trueneg.collection import Collection
    from trueneg.models import default_model_path

    cfg = config or RerankerConfig()
    s = cfg.schedule
    out = Path(out)
    prepare_output(out, [collection, cfg.model], overwrite=overwrite)
    coll = Collection.load(collection)
    data = TrainData(coll, cfg.group_size - 1, s.seed)
    base = Path(cfg.model or default_model_path())
    model, tok = load_cross_encoder(base)
    device, amp, _ = place(model, s, sequences=s.batch_size * cfg.group_size, tokens=cfg.max_length)

    def loss_fn(batch: list[tuple[int, int, list[int]]]) -> Any:
        qs: list[str] = []
        ps: list[str] = []
        sizes: list[int] = []
        for i, p, negs in batch:
            q = data.query_text[data.qids[i]]
            group = [p, *negs]
            qs.extend([q] * len(group))
            ps.extend(data.passage_text[x] for x in group)
            sizes.append(len(group))
        enc = tok(
            qs,
            ps,
            padding=True,
            truncation="longest_first",
            max_length=cfg.max_length,
            return_tensors="pt",
        ).to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(**enc).logits.float().view(-1)
        if cfg.loss == "bce":
            labels = torch.cat(
                [torch.tensor([1.0] + [0.0] * (n - 1), device=device) for n in sizes]
            )
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        # listwise: softmax within each group (padded with -inf), the positive first
        width = max(sizes)
        mat = torch.full((len(sizes), width), float("-inf"), device=device)
        o = 0
        for r, n in enumerate(sizes):
            mat[r, :n] = logits[o : o + n]
            o += n
        return torch.nn.functional.cross_entropy(
            mat, torch.zeros(len(sizes), dtype=torch.long, device=device)
        )

    def save(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)

    precision = str(amp) if amp is not None else "fp32"
    info = {"base_model": str(base), "device": str(device), "precision": precision}
    return fit_and_save(
        "reranker", collection, out, cfg, model, data, loss_fn, save, resume=resume, info=info
    )
