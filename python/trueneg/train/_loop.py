"""What the retriever and the reranker trainers share: the per-epoch groups (one positive rotated
from several, negatives rotated with a seed, as Tevatron does), batches packed by the Rust ledger
with no query or passage twice, precision and device set-up, the optimiser and schedule, and
checkpoints that a killed run resumes from."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trueneg import _core
from trueneg._io import atomic_file
from trueneg.exceptions import InputError, TruenegError
from trueneg.texts import passage_texts


def require_torch() -> Any:
    try:
        import torch
        import transformers
    except ImportError:
        raise TruenegError(
            "training needs torch and transformers: pip install 'trueneg[train]'"
        ) from None
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # trueneg shows its own bars
    return torch


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings shared by both trainers."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    #: auto = bf16 autocast (+ TF32) on CUDA and on CPUs with AVX512-BF16 / AMX, fp32 elsewhere
    precision: str = "auto"
    #: None (auto): on when the estimated activation memory of a step would pass
    #: ``memory_limit_gb`` (see :func:`activation_gb`); True / False force it
    gradient_checkpointing: bool | None = None
    #: the peak memory training aims to stay under, in GB (decides automatic checkpointing)
    memory_limit_gb: float = 4.0
    #: optimiser steps between checkpoints (0: only at the end of each epoch)
    save_steps: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise InputError("epochs, batch_size and grad_accum must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.lr <= 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.memory_limit_gb <= 0:
            raise InputError(f"memory_limit_gb must be > 0, got {self.memory_limit_gb}")
        if self.save_steps < 0:
            raise InputError(f"save_steps must be >= 0, got {self.save_steps}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise InputError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError("warmup_ratio must be in [0, 1)")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay}")


ROWS = ("example", "positive")


class TrainData:
    """A collection's examples as training rows. ``rows="example"``: one row per example and
    epoch, its positive rotated over the example's positives from epoch to epoch (Tevatron);
    ``rows="positive"``: one row per positive and epoch (sentence-transformers' (anchor,
    positive) pairs), so relabelled positives add rows; ``row_counts`` fixes the rows of each
    example instead (a step-matched control), their positives drawn in turn from a seeded
    permutation of all its positives. Each row's negatives are the next window of a seeded
    permutation of the example's negatives. Every positive of a query, over all its examples, is
    kept out of its negatives (``known_positives``: the loss masks them as in-batch negatives
    too). Examples without a positive are skipped (counted)."""

    def __init__(
        self,
        coll: Any,
        num_negatives: int,
        seed: int,
        *,
        rows: str = "example",
        row_counts: Any = None,
    ) -> None:
        if rows not in ROWS:
            raise InputError(f"rows must be one of {ROWS}, got {rows!r}")
        ex = coll.examples
        self.qids = ex["qid"].to_numpy().astype(np.uint32)
        self.positives: list[list[int]] = ex["positives"].to_pylist()
        self.negatives: list[list[int]] = ex["negatives"].to_pylist()
        self.known_positives: dict[int, set[int]] = {}
        for q, pos in zip(self.qids.tolist(), self.positives, strict=True):
            self.known_positives.setdefault(q, set()).update(pos)
        if row_counts is not None:
            counts = np.asarray(row_counts, np.int64)
            if counts.shape != (len(self.positives),) or (counts < 0).any():
                raise InputError(
                    f"row_counts needs one count >= 0 per example ({len(self.positives)})"
                )
        elif rows == "positive":
            counts = np.asarray([len(p) for p in self.positives], np.int64)
        else:
            counts = np.ones(len(self.positives), np.int64)
        counts[[i for i, p in enumerate(self.positives) if not p]] = 0
        self.skipped = sum(1 for p in self.positives if not p)
        if not counts.any():
            raise InputError(f"{coll.path}: no example has a positive passage")
        self.counts = counts
        #: the example of every row, and the row's number within its example
        self.rows = np.repeat(np.arange(len(counts)), counts)
        self.row_number = np.concatenate([np.arange(c) for c in counts if c]).astype(np.int64)
        self.num_negatives = num_negatives
        self.seed = seed
        self.query_text: list[str] = coll.queries["text"].to_pylist()
        self.passage_text: list[str] = passage_texts(coll.passages)

    def __len__(self) -> int:
        return len(self.rows)

    def group(self, i: int, epoch: int, r: int = 0) -> tuple[int, list[int]]:
        """(positive pid, negative pids) of row ``r`` of example ``i`` in ``epoch``."""
        pos = self.positives[i]
        turn = epoch * int(self.counts[i]) + r
        order = np.random.default_rng([self.seed, i, 1]).permutation(len(pos))
        p = pos[int(order[turn % len(pos)])]
        banned = self.known_positives[int(self.qids[i])]
        negs = [n for n in dict.fromkeys(self.negatives[i]) if n not in banned]
        n = self.num_negatives
        if len(negs) > n:
            perm = np.random.default_rng([self.seed, i]).permutation(len(negs))
            start = (turn * n) % len(negs)
            negs = [negs[perm[(start + j) % len(negs)]] for j in range(n)]
        return p, negs

    def batches(
        self, epoch: int, batch_size: int, *, distinct_passages: bool = True
    ) -> list[list[tuple[int, int, list[int]]]]:
        """The epoch's batches of (example, positive, negatives), packed so that no query
        appears twice in a batch, and (``distinct_passages``) no passage either. The retriever
        lets rows share passages (its loss scores each passage once and masks the known
        positives of every query), so its batches fill up."""
        groups = [
            (int(i), *self.group(int(i), epoch, int(r)))
            for i, r in zip(self.rows, self.row_number, strict=True)
        ]
        ids = [[g[1], *g[2]] if distinct_passages else [] for g in groups]
        off = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
        flat = np.asarray([p for x in ids for p in x], np.uint32)
        qs = self.qids[self.rows]
        offsets, members, _ = _core.pack_batches(
            qs, off, flat, batch_size, seed=self.seed * 1000 + epoch
        )
        return [[groups[m] for m in members[a:b]] for a, b in itertools.pairwise(offsets.tolist())]


def setup_device(s: Schedule) -> tuple[Any, Any]:
    """(device, autocast dtype or None)."""
    torch = require_torch()
    from trueneg.models import pick_device, resolve_precision

    device = pick_device(s.device)
    prec = resolve_precision(device, s.precision)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]
    return device, dtype


def optimizer_and_schedule(model: Any, s: Schedule, total_steps: int) -> tuple[Any, Any]:
    torch = require_torch()
    from transformers import get_linear_schedule_with_warmup

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": s.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=s.lr,
    )
    sched = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        opt, int(s.warmup_ratio * total_steps), total_steps
    )
    return opt, sched


class Checkpoints:
    """``out/checkpoints/step-N``: the model weights, optimiser, schedule and position; the
    newest complete one is resumed from (a checkpoint is renamed into place when whole)."""

    def __init__(self, out: Path, keep: int = 2) -> None:
        self.dir = out / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        done = [p for p in self.dir.glob("step-*") if (p / "state.json").is_file()]
        return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None

    def save(self, model: Any, opt: Any, sched: Any, state: dict[str, Any]) -> None:
        torch = require_torch()
        final = self.dir / f"step-{state['step']}"
        tmp = self.dir / f".step-{state['step']}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng},
            tmp / "optim.pt",
        )
        with atomic_file(tmp / "state.json", "w") as f:
            json.dump(state, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = sorted(
            (p for p in self.dir.glob("step-*") if p != final),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for p in old[: max(0, len(old) - self.keep + 1)]:
            shutil.rmtree(p, ignore_errors=True)

    def load(self, path: Path, model: Any, opt: Any, sched: Any) -> dict[str, Any]:
        torch = require_torch()
        model.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
        o = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(o["optimizer"])
        sched.load_state_dict(o["scheduler"])
        torch.set_rng_state(o["rng"]["cpu"])
        if "cuda" in o["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(o["rng"]["cuda"])
        state: dict[str, Any] = json.loads((path / "state.json").read_text())
        return state


def config_dict(cfg: Any) -> dict[str, Any]:
    return {
        k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in asdict(cfg).items()
    }


def run_training(
    model: Any,
    data: TrainData,
    s: Schedule,
    out: Path,
    loss_fn: Any,
    *,
    desc: str,
    resume: bool = True,
    tag: Any = None,
    distinct_passages: bool = True,
    negatives: Any = None,
) -> dict[str, Any]:
    """The optimisation loop: micro-batches of ``s.batch_size`` examples, ``s.grad_accum`` of them
    per optimiser step, gradient clipping at 1.0, linear warm-up and decay, a checkpoint every
    ``s.save_steps`` steps and at each epoch end. ``s.max_steps``, when set, is the number of
    steps (epochs repeat until it is reached, as in transformers' Trainer). ``loss_fn(batch)``
    returns the mean loss of a micro-batch. ``negatives`` (e.g.
    :class:`trueneg.train.dynamic.DynamicNegatives`) replaces each batch's negatives before the
    loss (``prepare(batch, step)``) and rides in the checkpoints (``state()`` / ``restore()``).
    Returns the step count, the loss of every step, throughput and the peak resident memory."""
    import time

    torch = require_torch()
    from trueneg._progress import progress

    s.check()
    torch.manual_seed(s.seed)
    pack = {"distinct_passages": distinct_passages}
    first = data.batches(0, s.batch_size, **pack)  # reused for epoch 0
    per_epoch = len(first)
    steps_per_epoch = -(-per_epoch // s.grad_accum)
    epochs = s.epochs
    if s.max_steps is not None:
        epochs = -(-s.max_steps // max(1, steps_per_epoch))
    total = steps_per_epoch * epochs if s.max_steps is None else s.max_steps
    opt, sched = optimizer_and_schedule(model, s, max(total, 1))
    ckpt = Checkpoints(out)
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch": 0,
        "losses": [],
        "examples": 0,
        "tag": tag,
    }
    if not resume:
        shutil.rmtree(ckpt.dir, ignore_errors=True)  # a fresh start: old checkpoints go
    last = ckpt.latest() if resume else None
    if last is not None:
        state = ckpt.load(last, model, opt, sched)
        if state.get("tag") != json.loads(json.dumps(tag)):  # compared as stored (JSON)
            raise InputError(
                f"{last} was written by a run with other settings or data; remove {ckpt.dir} "
                "or pass resume=False"
            )
    if negatives is not None:
        negatives.restore(state.get("negatives"))

    def checkpoint() -> None:
        if negatives is not None:
            state["negatives"] = negatives.state()
        ckpt.save(model, opt, sched, state)

    model.train()
    t0, seen0 = time.perf_counter(), state["examples"]
    with progress(total=total, desc=desc, unit=" steps", initial=state["step"]) as bar:
        for epoch in range(state["epoch"], epochs):
            batches = first if epoch == 0 else data.batches(epoch, s.batch_size, **pack)
            start = state["batch"] if epoch == state["epoch"] else 0
            acc: list[float] = []
            for bi in range(start, len(batches)):
                if state["step"] >= total:
                    break
                batch = batches[bi]
                if negatives is not None:
                    batch = negatives.prepare(batch, state["step"])
                loss = loss_fn(batch)
                (loss / s.grad_accum).backward()
                acc.append(float(loss.detach()))
                state["examples"] += len(batches[bi])
                if len(acc) == s.grad_accum or bi == len(batches) - 1:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    state["step"] += 1
                    state["losses"].append(sum(acc) / len(acc))
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{state['losses'][-1]:.4f}",
                        **(negatives.postfix() if negatives is not None else {}),
                    )
                    acc = []
                    state["epoch"], state["batch"] = epoch, bi + 1
                    if s.save_steps and state["step"] % s.save_steps == 0:
                        checkpoint()
            if state["step"] >= total:
                break
            state["epoch"], state["batch"] = epoch + 1, 0
            checkpoint()
    secs = time.perf_counter() - t0
    model.eval()
    extra = {"negatives": negatives.summary()} if negatives is not None else {}
    return {
        **extra,
        "steps": state["step"],
        "epochs": epochs,
        "rows": len(data),
        "losses": state["losses"],
        "examples_per_s": (state["examples"] - seen0) / secs if secs > 0 else 0.0,
        "skipped_examples": data.skipped,
        "resumed_from": str(last) if last else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the OS does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if os.uname().sysname != "Darwin" else kb / 1024 / 1024


#: what a training process holds besides a step's activations (torch and transformers, the model,
#: AdamW's two moments, the texts), in GB, for choosing automatic checkpointing
FIXED_GB = 2.0


def activation_gb(config: Any, sequences: int, tokens: int) -> float:
    """Estimated memory (GB) the backward pass keeps for ``sequences`` x ``tokens`` through a
    BERT-like encoder without checkpointing: per layer and sequence, the attention maps
    (scores, softmax, dropout mask and output: ~11 bytes x heads x tokens^2) and the hidden /
    feed-forward tensors (~48 x hidden and ~10 x intermediate bytes per token). Calibrated on
    MiniLM-L6 with bf16 autocast on CPU (5-7 GB measured for 130 sequences of 128 tokens)."""
    h = int(getattr(config, "num_attention_heads", 12))
    d = int(getattr(config, "hidden_size", 768))
    i = int(getattr(config, "intermediate_size", 4 * d))
    n_layers = int(getattr(config, "num_hidden_layers", 12))
    per = 11 * h * tokens * tokens + 48 * tokens * d + 10 * tokens * i
    return n_layers * per * sequences / 1e9


def place(model: Any, s: Schedule, *, sequences: int = 0, tokens: int = 0) -> tuple[Any, Any, bool]:
    """Moves the model to the schedule's device; per-layer gradient checkpointing when asked, or
    (auto, ``sequences`` > 0) when a step of ``sequences`` x ``tokens`` would keep more
    activations than fit in ``s.memory_limit_gb`` beside :data:`FIXED_GB`. Returns (device,
    autocast dtype or None, whether checkpointing is on)."""
    device, amp = setup_device(s)
    model.to(device)
    on = s.gradient_checkpointing
    if on is None:
        on = sequences > 0 and activation_gb(model.config, sequences, tokens) > (
            s.memory_limit_gb - FIXED_GB
        )
    if on:  # transformers 5 renamed it; older versions have only the first name
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    return device, amp, bool(on)


def work_dir(out: Path) -> Path:
    """Where a training run keeps its checkpoints (and other state) until it is done."""
    return out.with_name(out.name + ".checkpoints")


def fit_and_save(
    kind: str,
    collection: str | Path,
    out: Path,
    cfg: Any,
    model: Any,
    data: TrainData,
    loss_fn: Any,
    save: Any,
    *,
    resume: bool,
    info: dict[str, Any],
    distinct_passages: bool = True,
    negatives: Any = None,
) -> dict[str, Any]:
    """Runs :func:`run_training` with checkpoints in ``OUT.checkpoints`` (tagged with the settings
    and data, so a resume never mixes runs), then writes the model (``save(folder)``) and
    ``train.json`` to ``out`` atomically and drops the checkpoints."""
    import time

    from trueneg._io import atomic_dir

    work = work_dir(out)
    tag = {
        "config": config_dict(cfg),
        "collection": str(Path(collection).resolve()),
        "n": len(data),
    }
    t = time.perf_counter()
    r = run_training(
        model,
        data,
        cfg.schedule,
        work,
        loss_fn,
        desc=f"train {kind}",
        resume=resume,
        tag=tag,
        distinct_passages=distinct_passages,
        negatives=negatives,
    )
    result = {
        "kind": kind,
        "collection": str(collection),
        **info,
        "config": config_dict(cfg),
        "seconds": time.perf_counter() - t,
        **r,
    }
    with atomic_dir(out, overwrite=True) as tmp:
        save(tmp)
        (tmp / "train.json").write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return result
