"""Dynamic hard negatives: each query's negatives re-mined from the model being trained, as STAR /
ADORE do (Zhan et al., SIGIR 2021, arXiv 2104.08051; code: github.com/jingtaozhan/DRhard), with
the false-negative filters of static mining applied on every refresh.

ADORE freezes the passage index and re-retrieves each query's top 200 with the current query
encoder at every step. Here the passage index is frozen by default too (the starting model's
passage embeddings, or a ``.npy`` the user gives, memory-mapped read-only and never written), and
a query's negatives are re-mined whenever it comes up in a batch and its last mining is
``refresh_steps`` optimiser steps old or more: its current embedding is searched against the
index with the Rust exact kernel, and the candidates pass, in this order,

1. **positive masking**: every positive of the query, over all its examples (ADORE's only filter);
2. **duplicates**: passages in the same dedup cluster as a positive (``near``: MinHash clusters
   of :func:`trueneg.dedup.find_duplicates` at its defaults; ``exact``: the same title and text);
3. **judge verdicts**: pairs the collection's judgments flag as false negatives (``trueneg judge``,
   dedup's free false negatives), and any pair flagged earlier in this run;
4. **margin**: the positive-aware selection of ``trueneg mine`` (score bounds, a relative or
   absolute margin below the query's lowest positive score; NV-Retriever's TopK-PercPos at 0.05);
5. **in-loop judge** (optional): the survivors among the top ``range_max`` that no verdict covers
   are judged by a judge config (any cascade: LLM, local scorer, qrels) with its answer cache and
   budget; flagged pairs are removed and remembered.

The negatives of a row are then a seeded random sample (or the top) of the pool. Each refresh is
logged with what every filter removed. With ``index_refresh_steps`` the corpus is re-embedded
by the current model every N steps (ANCE-style) into a new file of the work folder; the frozen
index is still never written. Checkpoints carry the pools, the verdicts found in the loop, the
refresh log and the index in use, so a killed run resumes to the same weights."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trueneg.exceptions import InputError
from trueneg.mine import SelectionConfig

#: the filters, in the order they apply; counts are kept per refresh under these names
FILTERS = ("positive", "duplicate", "verdict", "margin", "judge")


@dataclass(frozen=True)
class DynamicConfig(SelectionConfig):
    """Settings of ``negatives = "dynamic"`` (see the module doc). The selection settings are
    ``trueneg mine``'s (:class:`trueneg.mine.SelectionConfig`, same names and defaults) but for
    ``sampling``, random here (a seeded sample of the pool for each row, as STAR); ``range_max``
    is the number of candidates kept per query after the filters (ADORE: 200); ``search = "ann"``
    builds the usearch HNSW once per index, in memory."""

    sampling: str = "random"
    #: a query's negatives are re-mined when it comes up and its last mining is this many
    #: optimiser steps old (1: every time, as ADORE)
    refresh_steps: int = 1
    #: re-embed the corpus with the current model every N steps (ANCE); 0: the index stays frozen
    index_refresh_steps: int = 0
    #: a ``.npy`` of passage embeddings in pid order to search (memory-mapped read-only, never
    #: written); None: the starting model's, embedded once into the work folder
    index: str | None = None
    #: positives' near duplicates masked: near (MinHash clusters), exact (same text), off
    duplicates: str = "near"
    #: drop the pairs the collection's judgments flag as false negatives
    verdicts: bool = True
    #: a JudgeConfig run on the new pairs of each refresh; None: no judge in the loop
    judge: Any = None
    #: the in-loop judge's answer cache (SQLite); None: OUT.judge-cache.sqlite beside the model
    judge_cache: str | None = None

    def __post_init__(self) -> None:
        from trueneg.config import at_least, one_of

        super().__post_init__()
        at_least("refresh_steps", self.refresh_steps, 1)
        at_least("index_refresh_steps", self.index_refresh_steps, 0)
        one_of("duplicates", self.duplicates, ("near", "exact", "off"))
        if self.index_refresh_steps and self.index is not None:
            raise InputError("a given index is frozen: index_refresh_steps needs index = None")

    @classmethod
    def plain(cls, **kw: Any) -> DynamicConfig:
        """ADORE's filtering: positives masked, nothing else."""
        return cls(duplicates="off", relative_margin=None, verdicts=False, **kw)


def passage_clusters(coll: Any, how: str) -> np.ndarray | None:
    """Cluster root per passage (pid order) for the duplicate filter, or None (off)."""
    from trueneg.mine import exact_copies

    if how == "off":
        return None
    if how == "exact":
        return exact_copies(coll)
    from trueneg.dedup import find_duplicates
    from trueneg.texts import passage_texts

    near = find_duplicates(passage_texts(coll.passages), kind="passage", desc="dedup passages")
    root = np.minimum(near.root, exact_copies(coll).astype(np.int64))
    return np.asarray(root, np.uint32)


def collection_verdicts(coll: Any) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(flagged, cleared) (qid, pid) pairs of the collection's judgments, as ``trueneg fix``
    reads them (the deepest stage that labelled each pair, dedup's free false negatives)."""
    from trueneg import judgments

    t = judgments.final_flags(judgments.load(coll.path))
    if len(t) == 0:
        return set(), set()
    qid, pid = t["qid"].to_pylist(), t["pid"].to_pylist()
    flag, label = t["flagged"].to_pylist(), t["label"].to_pylist()
    flagged = {(q, p) for q, p, f in zip(qid, pid, flag, strict=True) if f}
    cleared = {
        (q, p)
        for q, p, f, lab in zip(qid, pid, flag, label, strict=True)
        if not f and lab is not None
    }
    return flagged, cleared


def open_index(path: str | Path, n_passages: int) -> np.ndarray:
    """A frozen index: the ``.npy`` memory-mapped read-only (a write raises), checked to hold
    one row per passage."""
    try:
        index: np.ndarray = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the index: {e}", path=str(path)) from None
    if (
        index.ndim != 2
        or index.shape[0] != n_passages
        or index.dtype not in (np.float32, np.float16)
    ):
        raise InputError(
            f"the index must be a float32 or float16 (passages, dim) array with {n_passages} "
            f"rows, got {index.dtype} {index.shape}",
            path=str(path),
        )
    return index


#: passages embedded per chunk when an index is written (rows go straight to the file)
INDEX_CHUNK = 8192


def write_index(
    path: Path, texts: Sequence[str], embed: Callable[[Sequence[str], str], np.ndarray]
) -> None:
    """Embed ``texts`` as passages into a float16 ``.npy`` at ``path``, a chunk at a time into
    a memory-mapped file renamed into place when whole (the search kernel reads float16 rows
    exactly, widened to float32; half the memory and disk of float32)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    out = None
    for a in range(0, len(texts), INDEX_CHUNK):
        e = embed(texts[a : a + INDEX_CHUNK], "passage")
        if out is None:
            out = np.lib.format.open_memmap(tmp, "w+", np.float16, (len(texts), e.shape[1]))
        out[a : a + len(e)] = e
    if out is None:
        raise InputError("the collection has no passages")
    out.flush()
    del out
    os.replace(tmp, path)


class DynamicNegatives:
    """The negatives of each training row, re-mined from the model being trained (see the module
    doc). ``embed(texts, kind)`` embeds with the current weights (no gradients, eval mode);
    ``work`` holds the generated index files."""

    def __init__(
        self,
        cfg: DynamicConfig,
        coll: Any,
        data: Any,
        num_negatives: int,
        seed: int,
        work: Path,
        embed: Callable[[Sequence[str], str], np.ndarray],
        *,
        judge_cache: Path,
    ) -> None:
        self.cfg, self.coll, self.data = cfg, coll, data
        self.num_negatives, self.seed, self.work = num_negatives, seed, work
        self.embed = embed
        self.judge_cache = judge_cache
        self.n_passages = len(data.passage_text)
        self.cluster = passage_clusters(coll, cfg.duplicates)
        self.flagged, self.cleared = collection_verdicts(coll) if cfg.verdicts else (set(), set())
        self.flagged_by: dict[int, set[int]] = {}
        for q, p in self.flagged:
            self.flagged_by.setdefault(q, set()).add(p)
        # what the run found and decided so far (checkpointed)
        self.pools: dict[int, tuple[int, list[int]]] = {}
        self.loop_flagged: set[tuple[int, int]] = set()
        self.loop_cleared: set[tuple[int, int]] = set()
        self.refreshes: list[dict[str, Any]] = []
        self.index_file: str | None = None
        self.index_step = 0
        self.judge_cost = 0.0
        self._index: np.ndarray | None = None
        self._checkpointed_index: str | None = None
        self._ann: Any = None
        self._ann_cfg: Any = None

    # -- the index ---------------------------------------------------------------------------

    def _generated(self, step: int) -> Path:
        return self.work / "index" / f"index-step-{step}.npy"

    def index(self) -> np.ndarray:
        if self._index is not None:
            return self._index
        if self.index_file is None:
            if self.cfg.index is not None:
                self.index_file = str(Path(self.cfg.index).resolve())
            else:
                path = self._generated(0)
                if not path.is_file():
                    write_index(path, self.data.passage_text, self.embed)
                self.index_file = str(path)
        self._index = open_index(self.index_file, self.n_passages)
        return self._index

    def _ann_index(self, index: np.ndarray) -> Any:
        """The HNSW graph of the index in use, built on first use (again after a refresh)."""
        from trueneg.mine import AnnConfig, ann_index

        if self._ann is None or self._ann[0] != self.index_file:
            self._ann_cfg = AnnConfig(**(self.cfg.ann or {}))
            self._ann = (self.index_file, ann_index(index, self._ann_cfg))
        return self._ann[1]

    def _maybe_refresh_index(self, step: int) -> None:
        every = self.cfg.index_refresh_steps
        if not every or step == 0 or step % every or self.index_step == step:
            return
        path = self._generated(step)
        write_index(path, self.data.passage_text, self.embed)
        self.index_file, self.index_step, self._index = str(path), step, None
        # older generations go, except the one the last checkpoint refers to (a run killed
        # before its next checkpoint resumes from that one)
        for f in work_index_files(self.work):
            if str(f) not in (self.index_file, self._checkpointed_index):
                f.unlink(missing_ok=True)

    # -- a refresh ---------------------------------------------------------------------------

    def prepare(self, batch: list[tuple[int, int, list[int]]], step: int) -> list[Any]:
        """The batch with every row's negatives taken from its query's (re-mined) pool."""
        self._maybe_refresh_index(step)
        qids = [int(self.data.qids[i]) for i, _, _ in batch]
        stale = [
            q
            for q in dict.fromkeys(qids)
            if q not in self.pools or step - self.pools[q][0] >= self.cfg.refresh_steps
        ]
        if stale:
            self._refresh(stale, step)
        out = []
        for (i, pos, _), q in zip(batch, qids, strict=True):
            pool = self.pools[q][1]
            n = self.num_negatives
            if self.cfg.sampling == "random" and len(pool) > n:
                pick = np.random.default_rng([self.seed, step, q, i]).choice(
                    len(pool), n, replace=False
                )
                negs = [pool[j] for j in sorted(pick.tolist())]
            else:
                negs = pool[:n]
            out.append((i, pos, negs))
        return out

    def _refresh(self, qids: list[int], step: int) -> None:
        from trueneg.mine import (
            ann_search,
            exact_topk,
            flat_positives,
            select_candidates,
        )

        cfg = self.cfg
        index = self.index()
        qe = np.ascontiguousarray(
            self.embed([self.data.query_text[q] for q in qids], "query"), np.float32
        )
        positives = [sorted(self.data.known_positives[q]) for q in qids]
        banned = [self.flagged_by.get(q, set()) for q in qids]
        k = min(
            self.n_passages,
            cfg.range_max
            + max(len(p) for p in positives)
            + max(len(b) for b in banned)
            + (1 if self.cluster is not None else 0) * 16,
        )
        if cfg.search == "ann":
            ids, scores = ann_search(self._ann_index(index), qe, index, k, self._ann_cfg)
        else:
            ids, scores = exact_topk(qe, index, k)
        pos_off, flat = flat_positives(positives, self.n_passages)
        removed = dict.fromkeys(FILTERS, 0)
        kept_ids = np.full_like(ids, -1)
        kept_sc = np.zeros_like(scores)
        for r in range(len(qids)):
            row, sc = ids[r], scores[r]
            valid = row >= 0  # ANN may return fewer than k
            is_pos = np.isin(row, positives[r])
            is_dup = np.zeros(len(row), bool)
            if self.cluster is not None:
                roots = self.cluster[np.asarray(positives[r], np.int64)]
                is_dup = np.isin(self.cluster[np.maximum(row, 0)], roots) & ~is_pos & valid
            is_judged = np.fromiter((int(p) in banned[r] for p in row), bool, len(row))
            is_judged &= ~is_pos & ~is_dup
            removed["positive"] += int(is_pos.sum())
            removed["duplicate"] += int(is_dup.sum())
            removed["verdict"] += int(is_judged.sum())
            keep = ~is_judged
            kept_ids[r, : keep.sum()] = row[keep]
            kept_sc[r, : keep.sum()] = sc[keep]
        sel = select_candidates(
            kept_ids,
            kept_sc,
            qe,
            index,
            pos_off,
            flat,
            num_negatives=cfg.range_max,
            cluster=self.cluster,
            range_min=cfg.range_min,
            range_max=cfg.range_max,
            max_score=cfg.max_score,
            min_score=cfg.min_score,
            absolute_margin=cfg.absolute_margin,
            relative_margin=cfg.relative_margin,
            sampling="top",
            seed=0,
        )
        # what the score bounds and margins dropped, counted by the selection itself (over all
        # the candidates the verdicts left, positives and their duplicates aside)
        assert sel.out_of_bounds is not None
        removed["margin"] = int(sel.out_of_bounds.sum())
        pools = {q: sel.negatives(r) for r, q in enumerate(qids)}
        asked = unlabelled = 0
        if cfg.judge is not None:
            asked, unlabelled, dropped = self._judge(pools, step)
            removed["judge"] = dropped
        for q, pool in pools.items():
            self.pools[q] = (step, pool)
        self.refreshes.append(
            {
                "step": step,
                "queries": len(qids),
                "candidates": int((ids >= 0).sum()),
                "removed": removed,
                "judge_asked": asked,
                "judge_unlabelled": unlabelled,
                "pool": sum(len(p) for p in pools.values()),
                "short_queries": sum(len(p) < self.num_negatives for p in pools.values()),
            }
        )

    def _judge(self, pools: dict[int, list[int]], step: int) -> tuple[int, int, int]:
        """Judge the pools' pairs no verdict covers; remove the flagged ones from the pools.
        Returns (pairs asked, pairs left without a label, pairs removed). A pair left without
        a label by a failed call stays in the pool, and is asked again when it comes up in a
        later refresh (the cache answers what was answered)."""
        known = self.flagged | self.cleared | self.loop_flagged | self.loop_cleared
        new = {q: [p for p in pool if (q, p) not in known] for q, pool in pools.items()}
        new = {q: ps for q, ps in new.items() if ps}
        if not new:
            return 0, 0, 0
        flagged, cleared, cost = judge_pairs(
            self.coll, self.data, new, self.cfg.judge, self.judge_cache, self.work / "judge"
        )
        self.judge_cost += cost
        self.loop_flagged |= flagged
        for q, p in flagged:
            self.flagged_by.setdefault(q, set()).add(p)
        self.loop_cleared |= cleared
        asked = sum(len(ps) for ps in new.values())
        unlabelled = asked - len(flagged) - len(cleared)
        dropped = 0
        for q in new:
            before = len(pools[q])
            pools[q] = [p for p in pools[q] if (q, p) not in flagged]
            dropped += before - len(pools[q])
        return asked, unlabelled, dropped

    # -- checkpoints and the result ----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a checkpoint carries (called as one is written)."""
        self._checkpointed_index = self.index_file
        return {
            "pools": {str(q): [s, p] for q, (s, p) in self.pools.items()},
            "loop_flagged": sorted(self.loop_flagged),
            "loop_cleared": sorted(self.loop_cleared),
            "refreshes": self.refreshes,
            "index_file": self.index_file,
            "index_step": self.index_step,
            "judge_cost": self.judge_cost,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """The checkpoint's part; None (a fresh start) removes index files of an earlier run."""
        if not state:
            shutil.rmtree(self.work / "index", ignore_errors=True)
            return
        self.pools = {int(q): (int(s), list(p)) for q, (s, p) in state["pools"].items()}
        self.loop_flagged = {(int(q), int(p)) for q, p in state["loop_flagged"]}
        for q, p in self.loop_flagged:
            self.flagged_by.setdefault(q, set()).add(p)
        self.loop_cleared = {(int(q), int(p)) for q, p in state["loop_cleared"]}
        self.refreshes = list(state["refreshes"])
        self.index_file, self.index_step = state["index_file"], int(state["index_step"])
        self.judge_cost = float(state["judge_cost"])
        self._index = None
        self._checkpointed_index = self.index_file
        if self.index_file and not Path(self.index_file).is_file():
            raise InputError(
                "the checkpoint's index is gone; remove the checkpoints or pass resume=False",
                path=self.index_file,
            )

    def postfix(self) -> dict[str, str]:
        if not self.refreshes:
            return {}
        last = self.refreshes[-1]["removed"]
        return {"removed": " ".join(f"{f} {last[f]}" for f in FILTERS if last[f])}

    def summary(self) -> dict[str, Any]:
        totals = {f: sum(r["removed"][f] for r in self.refreshes) for f in FILTERS}
        return {
            "refreshes": len(self.refreshes),
            "removed": totals,
            "candidates": sum(r["candidates"] for r in self.refreshes),
            "judge_asked": sum(r["judge_asked"] for r in self.refreshes),
            "judge_unlabelled": sum(r["judge_unlabelled"] for r in self.refreshes),
            "judge_cost_usd": self.judge_cost,
            "short_queries": sum(r["short_queries"] for r in self.refreshes),
            "index": self.index_file if self.cfg.index is not None else "starting model",
            "index_refreshes": self.index_step and self.index_step // self.cfg.index_refresh_steps,
            "log": self.refreshes,
        }


def judge_pairs(
    coll: Any,
    data: Any,
    pairs: dict[int, list[int]],
    judge: Any,
    cache: Path,
    scratch: Path,
) -> tuple[set[tuple[int, int]], set[tuple[int, int]], float]:
    """Judge (query, negatives) pairs with a judge config through the collection machinery: a
    scratch collection (passages and queries linked, one example per query) is judged with the
    answer cache ``cache`` (whose recorded spending the budget counts), then removed. Returns the
    flagged and the cleared pairs (cleared: judged not a false negative, or deferred on by every
    stage, as the qrels do for a pair they do not list; a pair left unlabelled by a failure is in
    neither) and the cost of the call."""
    import pyarrow as pa

    from trueneg import judgments
    from trueneg.collection import EXAMPLE_SCHEMA
    from trueneg.judge import judge_collection

    qids = list(pairs)
    n = len(qids)
    table = pa.Table.from_arrays(
        [
            pa.array(qids, pa.uint32()),
            pa.array([sorted(data.known_positives[q]) for q in qids], pa.list_(pa.uint32())),
            pa.array([pairs[q] for q in qids], pa.list_(pa.uint32())),
            pa.nulls(n, pa.list_(pa.float64())),
            pa.nulls(n, pa.list_(pa.float64())),
            pa.nulls(n, pa.string()),
            pa.array([0] * n, pa.uint16()),
            pa.array(range(1, n + 1), pa.int64()),
        ],
        schema=EXAMPLE_SCHEMA,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    tmp = coll.derive(scratch, table, step="dynamic-negatives", link=True)
    try:
        summary = judge_collection(tmp.path, judge, cache_path=cache)
        raw = judgments.load(tmp.path)
        t = judgments.final_flags(raw)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    flagged, cleared = set(), set()
    for q, p, f, lab in zip(
        t["qid"].to_pylist(),
        t["pid"].to_pylist(),
        t["flagged"].to_pylist(),
        t["label"].to_pylist(),
        strict=True,
    ):
        if f:
            flagged.add((int(q), int(p)))
        elif lab is not None:
            cleared.add((int(q), int(p)))
    # a pair every stage deferred on (the qrels do not judge it) will be deferred on again:
    # it counts as cleared, so it is not asked each refresh
    decided = {
        (int(q), int(p)) for q, p in zip(t["qid"].to_pylist(), t["pid"].to_pylist(), strict=True)
    }
    for q, p in zip(raw["qid"].to_pylist(), raw["pid"].to_pylist(), strict=True):
        if (int(q), int(p)) not in decided:
            cleared.add((int(q), int(p)))
    return flagged, cleared, float(summary.cost_usd or 0.0)


def work_index_files(work: Path) -> list[Path]:
    """The index files a run generated (for tests and clean-up)."""
    d = work / "index"
    return sorted(d.glob("*.npy")) if d.is_dir() else []


__all__ = ["FILTERS", "DynamicConfig", "DynamicNegatives", "judge_pairs", "passage_clusters"]
