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


def require_torch() -> Any:
    try:
        import torch
        import transformers
    except ImportError:
        raise TruenegError(
            "training needs torch and transformers: pip install 'trueneg[train]'"
        ) from None
    transformers.utils.logging.disable_progress_bar()  # trueneg shows its own bars
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
    #: auto = bf16 autocast + TF32 on CUDA, fp32 on CPU
    precision: str = "auto"
    gradient_checkpointing: bool = False
    #: optimiser steps between checkpoints (0: only at the end of each epoch)
    save_steps: int = 0
    device: str = "auto"

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise InputError("epochs, batch_size and grad_accum must be at least 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise InputError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError("warmup_ratio must be in [0, 1)")


class TrainData:
    """A collection's examples as training groups: per epoch, each example's positive is
    positives[(h + epoch) % len] (h: a seeded per-example offset) and its negatives a window of a
    seeded permutation that moves by ``num_negatives`` each epoch. Examples without a positive
    are skipped (counted)."""

    def __init__(self, coll: Any, num_negatives: int, seed: int) -> None:
        ex = coll.examples
        self.qids = ex["qid"].to_numpy().astype(np.uint32)
        self.positives: list[list[int]] = ex["positives"].to_pylist()
        self.negatives: list[list[int]] = ex["negatives"].to_pylist()
        keep = [i for i, p in enumerate(self.positives) if p]
        self.skipped = len(self.positives) - len(keep)
        if not keep:
            raise InputError(f"{coll.path}: no example has a positive passage")
        self.rows = np.asarray(keep, np.int64)
        self.num_negatives = num_negatives
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.offset = rng.integers(0, 1 << 31, len(self.positives))
        self.query_text: list[str] = coll.queries["text"].to_pylist()
        self.passage_text: list[str] = coll.passages["text"].to_pylist()

    def __len__(self) -> int:
        return len(self.rows)

    def group(self, i: int, epoch: int) -> tuple[int, list[int]]:
        """(positive pid, negative pids) of example ``i`` in ``epoch``."""
        pos = self.positives[i]
        p = pos[(int(self.offset[i]) + epoch) % len(pos)]
        banned = set(pos)
        negs = [n for n in dict.fromkeys(self.negatives[i]) if n not in banned]
        n = self.num_negatives
        if len(negs) > n:
            perm = np.random.default_rng([self.seed, i]).permutation(len(negs))
            start = (epoch * n) % len(negs)
            take = [(start + j) % len(negs) for j in range(n)]
            negs = [negs[perm[t]] for t in take]
        return p, negs

    def batches(self, epoch: int, batch_size: int) -> list[list[tuple[int, int, list[int]]]]:
        """The epoch's batches of (example, positive, negatives), packed so that no query and
        no passage appears twice in a batch."""
        groups = [(int(i), *self.group(int(i), epoch)) for i in self.rows]
        ids = [[g[1], *g[2]] for g in groups]
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
    from trueneg.embed import pick_device

    device = pick_device(s.device)
    prec = s.precision
    if prec == "auto":
        prec = "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]
    return device, dtype


def optimizer_and_schedule(model: Any, s: Schedule, total_steps: int) -> tuple[Any, Any]:
    torch = require_torch()
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": s.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=s.lr,
    )
    sched = get_linear_schedule_with_warmup(opt, int(s.warmup_ratio * total_steps), total_steps)
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
) -> dict[str, Any]:
    """The optimisation loop: micro-batches of ``s.batch_size`` examples, ``s.grad_accum`` of them
    per optimiser step, gradient clipping at 1.0, linear warm-up and decay, a checkpoint every
    ``s.save_steps`` steps and at each epoch end. ``loss_fn(batch)`` returns the mean loss of a
    micro-batch. Returns the step count, the loss of every step and throughput."""
    import time

    torch = require_torch()
    from trueneg._progress import progress

    s.check()
    torch.manual_seed(s.seed)
    first = data.batches(0, s.batch_size)  # reused for epoch 0
    per_epoch = len(first)
    steps_per_epoch = -(-per_epoch // s.grad_accum)
    total = steps_per_epoch * s.epochs
    if s.max_steps is not None:
        total = min(total, s.max_steps)
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
                "or pass --no-resume"
            )
    model.train()
    t0, seen0 = time.perf_counter(), state["examples"]
    with progress(total=total, desc=desc, unit=" steps", initial=state["step"]) as bar:
        for epoch in range(state["epoch"], s.epochs):
            batches = first if epoch == 0 else data.batches(epoch, s.batch_size)
            start = state["batch"] if epoch == state["epoch"] else 0
            acc: list[float] = []
            for bi in range(start, len(batches)):
                if state["step"] >= total:
                    break
                loss = loss_fn(batches[bi])
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
                    bar.set_postfix(loss=f"{state['losses'][-1]:.4f}")
                    acc = []
                    state["epoch"], state["batch"] = epoch, bi + 1
                    if s.save_steps and state["step"] % s.save_steps == 0:
                        ckpt.save(model, opt, sched, state)
            if state["step"] >= total:
                break
            state["epoch"], state["batch"] = epoch + 1, 0
            ckpt.save(model, opt, sched, state)
    secs = time.perf_counter() - t0
    model.eval()
    return {
        "steps": state["step"],
        "losses": state["losses"],
        "examples_per_s": (state["examples"] - seen0) / secs if secs > 0 else 0.0,
        "skipped_examples": data.skipped,
        "resumed_from": str(last) if last else None,
    }


def place(model: Any, s: Schedule) -> tuple[Any, Any]:
    """Moves the model to the schedule's device (gradient checkpointing on request); returns
    (device, autocast dtype or None)."""
    device, amp = setup_device(s)
    model.to(device)
    if s.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return device, amp


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
) -> dict[str, Any]:
    """Runs :func:`run_training` with checkpoints in ``OUT.checkpoints`` (tagged with the settings
    and data, so a resume never mixes runs), then writes the model (``save(folder)``) and
    ``train.json`` to ``out`` atomically and drops the checkpoints."""
    import time

    from trueneg._io import atomic_dir

    work = out.with_name(out.name + ".checkpoints")
    tag = {
        "config": config_dict(cfg),
        "collection": str(Path(collection).resolve()),
        "n": len(data),
    }
    t = time.perf_counter()
    r = run_training(
        model, data, cfg.schedule, work, loss_fn, desc=f"train {kind}", resume=resume, tag=tag
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
