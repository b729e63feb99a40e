"""Exact and near-duplicate detection over collections: queries, passages, leakage into an
evaluation set, and "free" false negatives (a negative that duplicates one of its own query's
positives), with the Rust kernels (normalisation, shingling, MinHash, LSH, union-find).

Near duplicates are found by MinHash LSH: ``bands x rows`` permutations; a pair at Jaccard ``J``
becomes a candidate with probability ``1 - (1 - J**rows) ** bands`` (the S-curve). Candidates are
then verified (estimated Jaccard over the whole signature, or exact Jaccard of the shingle sets)
against the threshold. Clusters keep their smallest index as the survivor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from trueneg import _core, judgments
from trueneg._io import prepare_output
from trueneg._progress import progress
from trueneg.collection import (
    EXAMPLE_SCHEMA,
    Collection,
    arrow_indices,
    refresh_extras,
    string_array,
    string_buffers,
)
from trueneg.exceptions import InputError
from trueneg.formats.beir import load_beir
from trueneg.texts import passage_texts

logger = logging.getLogger(__name__)

ACTIONS = ("report", "drop", "merge")


# ---------------------------------------------------------------------------------------------
# LSH parameters


def s_curve(bands: int, rows: int, j: float | np.ndarray) -> float | np.ndarray:
    """Probability that a pair at Jaccard ``j`` becomes a candidate under ``bands x rows``."""
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


def optimal_params(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive and false-negative areas under the
    S-curve around ``threshold`` (the rule datasketch uses)."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    lo = np.linspace(0.0, threshold, 201)
    hi = np.linspace(threshold, 1.0, 201)
    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(s_curve(b, r, lo), lo)
            fn = np.trapezoid(1.0 - s_curve(b, r, hi), hi)
            err = fp * fp_weight + fn * fn_weight
            if err < best_err:
                best, best_err = (b, r), err
    return best


def params_for_recall(threshold: float, num_perm: int, recall: float = 0.95) -> tuple[int, int]:
    """(bands, rows) whose S-curve makes a pair at ``threshold`` a candidate with probability at
    least ``recall``, choosing among those the one with the fewest false candidates (smallest area
    under the S-curve below the threshold). Candidates are verified afterwards, so false
    candidates cost time, missed pairs cost duplicates: the default favours recall."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    lo = np.linspace(0.0, threshold, 201)
    best: tuple[int, int] | None = None
    best_fp = float("inf")
    fallback, fallback_p = (1, 1), -1.0
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = float(s_curve(b, r, threshold))
            if p > fallback_p or (p == fallback_p and b * r < fallback[0] * fallback[1]):
                fallback, fallback_p = (b, r), p
            if p < recall:
                continue
            fp = float(np.trapezoid(s_curve(b, r, lo), lo))
            if fp < best_fp - 1e-12:
                best, best_fp = (b, r), fp
    return best or fallback


@dataclass(frozen=True)
class DedupConfig:
    """Knobs of duplicate detection (see ``trueneg dedup --help``)."""

    threshold: float = 0.8
    num_perm: int = 128
    bands: int | None = None
    rows: int | None = None
    #: shingle unit: "word", "char", or "auto" (char n-grams for queries, word n-grams for passages)
    unit: str = "auto"
    ngram: int = 5
    #: how candidate pairs are confirmed: "minhash" (signature estimate), "jaccard" (exact), "none"
    verify: str = "minhash"
    nfkc: bool = True
    lowercase: bool = True
    whitespace: bool = True
    #: punctuation and symbols separate words like spaces ("...than" = "... than")
    punctuation: bool = True
    seed: int = 1
    chunk_size: int = 20_000
    #: probability that a pair exactly at the threshold becomes a candidate (picks bands x rows)
    target_recall: float = 0.95

    def __post_init__(self) -> None:
        if self.unit not in ("auto", "word", "char"):
            raise InputError(f"unit must be auto, word or char, got {self.unit!r}")
        if self.verify not in ("none", "minhash", "jaccard"):
            raise InputError(f"verify must be none, minhash or jaccard, got {self.verify!r}")
        if (self.bands is None) != (self.rows is None):
            raise InputError(
                "give both bands=N and rows=N, or neither (then threshold=X picks them)"
            )
        if (
            self.bands is not None
            and self.rows is not None
            and self.bands * self.rows > self.num_perm
        ):
            raise InputError(
                f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"threshold must be in (0, 1], got {self.threshold}")
        from trueneg.config import at_least

        at_least("num_perm", self.num_perm, 1)
        at_least("bands", self.bands, 1, optional=True)
        at_least("rows", self.rows, 1, optional=True)
        at_least("ngram", self.ngram, 1)
        at_least("chunk_size", self.chunk_size, 1)
        if not 0.0 < self.target_recall < 1.0:
            raise InputError(f"target_recall must be in (0, 1), got {self.target_recall}")

    def lsh_params(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return params_for_recall(min(self.threshold, 0.99), self.num_perm, self.target_recall)

    def unit_for(self, kind: str) -> str:
        if self.unit != "auto":
            return self.unit
        return "char" if kind == "query" else "word"

    def normalize_kw(self) -> dict[str, bool]:
        return {
            "nfkc": self.nfkc,
            "lowercase": self.lowercase,
            "whitespace": self.whitespace,
            "punctuation": self.punctuation,
        }


def s_curve_table(
    bands: int, rows: int, points: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
) -> list[tuple[float, float]]:
    return [(j, float(s_curve(bands, rows, j))) for j in points]


# ---------------------------------------------------------------------------------------------
# Duplicates of one list of texts


@dataclass
class Duplicates:
    """Clusters of one list of texts."""

    root: np.ndarray  # smallest index of each text's cluster
    exact_group: np.ndarray  # dense id of each text's exact (normalised) group
    signatures: np.ndarray  # MinHash signatures of each exact group's first text
    edges: np.ndarray  # (m, 2) original indices joined by LSH
    similarity: np.ndarray  # (m,) estimate or exact Jaccard of each edge
    candidate_pairs: int
    bands: int
    rows: int

    @property
    def is_duplicate(self) -> np.ndarray:
        dup: np.ndarray = self.root != np.arange(len(self.root))
        return dup

    def similarity_of(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """MinHash estimate between texts a[i] and b[i] (1.0 for exact duplicates)."""
        sa = self.signatures[self.exact_group[a]]
        sb = self.signatures[self.exact_group[b]]
        sim: np.ndarray = (sa == sb).mean(axis=1).astype(np.float32)
        return sim

    def summary(self) -> dict[str, int]:
        n = len(self.root)
        _, exact_sizes = np.unique(self.exact_group, return_counts=True)
        _, sizes = np.unique(self.root, return_counts=True)
        return {
            "texts": n,
            "exact_duplicate_texts": int((exact_sizes[exact_sizes > 1] - 1).sum()),
            "duplicate_texts": int(self.is_duplicate.sum()),
            "clusters_with_duplicates": int((sizes > 1).sum()),
            "candidate_pairs": int(self.candidate_pairs),
        }


def find_duplicates(
    texts: pa.Array | pa.ChunkedArray | list[str],
    config: DedupConfig | None = None,
    *,
    kind: str = "passage",
    desc: str = "minhash",
) -> Duplicates:
    """Exact (after normalisation) and near-duplicate clusters of ``texts``."""
    cfg = config or DedupConfig()
    arr = string_array(texts)
    n = len(arr)
    bands, rows = cfg.lsh_params()
    unit = cfg.unit_for(kind)
    norm = cfg.normalize_kw()
    if n == 0:
        z = np.zeros(0, np.int64)
        return Duplicates(
            z,
            z,
            np.zeros((0, cfg.num_perm), np.uint32),
            np.zeros((0, 2), np.int64),
            np.zeros(0, np.float32),
            0,
            bands,
            rows,
        )
    exact_keys = _core.normalized_hashes(string_buffers(arr), **norm)
    groups, is_first, _ = _core.Interner().intern(exact_keys)
    reps = np.flatnonzero(is_first)
    rep_texts = arr.take(arrow_indices(reps))
    sigs = np.empty((len(reps), cfg.num_perm), np.uint32)
    with progress(total=len(reps), desc=desc, unit=" texts") as bar:
        for off in range(0, len(reps), cfg.chunk_size):
            part = rep_texts.slice(off, cfg.chunk_size)
            sigs[off : off + len(part)] = _core.minhash_signatures(
                string_buffers(part),
                num_perm=cfg.num_perm,
                seed=cfg.seed,
                unit=unit,
                ngram=cfg.ngram,
                **norm,
            )
            bar.update(len(part))
    rep_root, cand, edges, sims = _core.lsh_clusters(
        sigs,
        bands,
        rows,
        verify=cfg.verify,
        threshold=cfg.threshold,
        texts=string_buffers(rep_texts) if cfg.verify == "jaccard" else None,
        unit=unit,
        ngram=cfg.ngram,
        **norm,
    )
    root = reps[rep_root[groups]]
    return Duplicates(
        root=root.astype(np.int64),
        exact_group=groups.astype(np.int64),
        signatures=sigs,
        edges=reps[edges.astype(np.int64)] if len(edges) else np.zeros((0, 2), np.int64),
        similarity=sims,
        candidate_pairs=int(cand),
        bands=bands,
        rows=rows,
    )


# ---------------------------------------------------------------------------------------------
# Collections


@dataclass
class Leakage:
    against: str
    eval_queries: int
    eval_passages: int
    train_queries_leaked: int
    train_passages_leaked: int
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class DedupReport:
    config: dict[str, Any]
    bands: int
    rows: int
    s_curve: list[tuple[float, float]]
    queries: dict[str, Any]
    passages: dict[str, Any]
    free_false_negatives: int
    free_false_negative_examples: int
    leakage: list[Leakage]
    action: str
    examples_before: int
    examples_after: int
    seconds: float
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["s_curve"] = [{"jaccard": j, "p_candidate": p} for j, p in self.s_curve]
        return d


def _flat_lists(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, example index of each value) of a list<uint32> column."""
    arr = col.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy().astype(np.int64)
    owner = np.repeat(np.arange(len(arr)), np.diff(offsets))
    return values, owner


def free_false_negatives(examples: pa.Table, pdup: Duplicates) -> pa.Table:
    """Judgment rows for every negative that is an exact or near duplicate of a positive of the
    same query, over all its examples (including a passage listed as both)."""
    pos, pos_ex = _flat_lists(examples["positives"])
    neg, neg_ex = _flat_lists(examples["negatives"])
    if len(neg) == 0 or len(pos) == 0:
        return judgments.empty()
    width = np.int64(int(pdup.root.max()) + 1)
    q = examples["qid"].to_numpy().astype(np.int64)
    pos_key = q[pos_ex] * width + pdup.root[pos]
    neg_key = q[neg_ex] * width + pdup.root[neg]
    order = np.argsort(pos_key, kind="stable")
    sorted_keys = pos_key[order]
    hit = np.isin(neg_key, sorted_keys)
    idx = np.flatnonzero(hit)
    if len(idx) == 0:
        return judgments.empty()
    match = pos[order[np.searchsorted(sorted_keys, neg_key[idx])]]
    neg_p = neg[idx]
    exact = pdup.exact_group[neg_p] == pdup.exact_group[match]
    sim = np.where(exact, np.float32(1.0), pdup.similarity_of(neg_p, match))
    qids = examples["qid"].to_numpy()
    reasons = [
        ("exact duplicate of positive pid " if e else "near duplicate of positive pid ") + str(m)
        for e, m in zip(exact.tolist(), match.tolist(), strict=True)
    ]
    n = len(idx)
    return judgments.table(
        {
            "example": neg_ex[idx],
            "qid": qids[neg_ex[idx]],
            "pid": neg_p,
            "stage": ["dedup"] * n,
            "stage_index": [0] * n,
            "label": ["false_negative"] * n,
            "flagged": [True] * n,
            "status": ["ok"] * n,
            "reason": reasons,
            "similarity": sim,
        }
    )


def _leakage(
    train: pa.Array, evals: list[str], cfg: DedupConfig, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which train texts duplicate an eval text; and for each, one eval index it matches."""
    both = pa.concat_arrays([train, pa.array(evals, pa.string())])
    d = find_duplicates(both, cfg, kind=kind, desc=f"leakage {kind}s")
    n = len(train)
    has_eval = np.full(len(both), -1, np.int64)
    eval_idx = np.arange(n, len(both))
    has_eval[d.root[eval_idx]] = eval_idx - n
    match = has_eval[d.root[:n]]
    return match >= 0, match


def _apply_action(coll: Collection, qdup: Duplicates, action: str) -> pa.Table:
    ex = coll.examples
    if action == "report" or len(ex) == 0:
        return ex
    qroot = qdup.root[ex["qid"].to_numpy().astype(np.int64)]
    if action == "drop":
        _, first = np.unique(qroot, return_index=True)
        keep = np.sort(first)
        return ex.take(pa.array(keep))
    # merge: one example per query cluster, at the first example's place, lists unioned
    pos = ex["positives"].to_pylist()
    neg = ex["negatives"].to_pylist()
    order: dict[int, int] = {}
    merged_pos: list[list[int]] = []
    merged_neg: list[list[int]] = []
    first_rows: list[int] = []
    members: list[int] = []
    for i, r in enumerate(qroot.tolist()):
        k = order.get(r)
        if k is None:
            order[r] = len(first_rows)
            first_rows.append(i)
            members.append(1)
            merged_pos.append(list(dict.fromkeys(pos[i])))
            merged_neg.append(list(dict.fromkeys(neg[i])))
        else:
            members[k] += 1
            merged_pos[k] = list(dict.fromkeys([*merged_pos[k], *pos[i]]))
            merged_neg[k] = list(dict.fromkeys([*merged_neg[k], *neg[i]]))
    # in first-appearance order, as the merged rows are
    changed = np.asarray(members) > 1
    merged_neg = [
        [p for p in n if p not in set(ps)] for n, ps in zip(merged_neg, merged_pos, strict=True)
    ]
    base = ex.take(pa.array(first_rows))
    ps = base["pos_scores"].to_pylist()
    ns = base["neg_scores"].to_pylist()
    ps = [None if c else s for s, c in zip(ps, changed, strict=True)]
    ns = [None if c else s for s, c in zip(ns, changed, strict=True)]
    table = pa.Table.from_arrays(
        [
            base["qid"],
            pa.array(merged_pos, pa.list_(pa.uint32())),
            pa.array(merged_neg, pa.list_(pa.uint32())),
            pa.array(ps, pa.list_(pa.float64())),
            pa.array(ns, pa.list_(pa.float64())),
            base["extra"],
            base["source"],
            base["line"],
        ],
        schema=EXAMPLE_SCHEMA,
    )
    return refresh_extras(coll, table, changed)[0]


def dedup_collection(
    coll: Collection,
    config: DedupConfig | None = None,
    *,
    against: Sequence[str | Path] = (),
    action: str = "report",
    out: str | Path | None = None,
    overwrite: bool = False,
    samples: int = 10,
) -> DedupReport:
    """Find duplicate queries and passages, leakage into ``against`` BEIR sets and free false
    negatives; with ``out``, write a new collection with the action applied and the free false
    negatives as judgments (``judgments.parquet``) plus ``dedup.json``."""
    if action not in ACTIONS:
        raise InputError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action != "report" and out is None:
        raise InputError(f"action {action!r} writes a new collection: give out=PATH")
    if out is not None:
        prepare_output(out, [coll.path, *against], overwrite=overwrite)
    cfg = config or DedupConfig()
    t0 = time.perf_counter()
    bands, rows = cfg.lsh_params()
    qtext = coll.queries["text"].combine_chunks()
    qdup = find_duplicates(qtext, cfg, kind="query", desc="minhash queries")
    ptext = pa.array(passage_texts(coll.passages), pa.string())
    pdup = find_duplicates(ptext, cfg, kind="passage", desc="minhash passages")

    subsets = coll.queries["subset"].to_numpy(zero_copy_only=False)
    qdups = np.flatnonzero(qdup.is_duplicate)
    cross = int((subsets[qdups] != subsets[qdup.root[qdups]]).sum()) if len(qdups) else 0
    qsum = {
        **qdup.summary(),
        "cross_subset_duplicates": cross,
        "within_subset_duplicates": len(qdups) - cross,
    }
    psum = pdup.summary()

    new_examples = _apply_action(coll, qdup, action)
    fn = free_false_negatives(new_examples, pdup)

    leaks = []
    for a in against:
        folder = Path(a)
        beir = load_beir(folder, split=None)
        eq, ed, eqids = beir.query_texts, beir.doc_texts, beir.query_ids
        q_leak, q_match = _leakage(qtext, eq, cfg, "query")
        p_leak, _ = _leakage(ptext, ed, cfg, "passage")
        ex_list = [
            {
                "train_query": qtext[int(i)].as_py(),
                "eval_query_id": eqids[int(q_match[i])],
                "eval_query": eq[int(q_match[i])],
            }
            for i in np.flatnonzero(q_leak)[:samples]
        ]
        leaks.append(
            Leakage(str(folder), len(eq), len(ed), int(q_leak.sum()), int(p_leak.sum()), ex_list)
        )

    sample_rows = []
    if len(fn):
        ptext_list = ptext
        for row in fn.slice(0, samples).to_pylist():
            pos_pid = int(row["reason"].rsplit(" ", 1)[1])
            sample_rows.append(
                {
                    "query": qtext[row["qid"]].as_py(),
                    "positive": ptext_list[pos_pid].as_py()[:300],
                    "negative": ptext_list[row["pid"]].as_py()[:300],
                    "reason": row["reason"],
                    "similarity": round(float(row["similarity"]), 3),
                }
            )

    report = DedupReport(
        config=asdict(cfg),
        bands=bands,
        rows=rows,
        s_curve=s_curve_table(bands, rows),
        queries=qsum,
        passages=psum,
        free_false_negatives=len(fn),
        free_false_negative_examples=len(np.unique(fn["example"].to_numpy())) if len(fn) else 0,
        leakage=leaks,
        action=action,
        examples_before=len(coll.examples),
        examples_after=len(new_examples),
        seconds=time.perf_counter() - t0,
        samples=sample_rows,
    )
    if out is not None:
        _write_output(coll, Path(out), new_examples, fn, report, overwrite, against)
    return report


def _write_output(
    coll: Collection,
    out: Path,
    examples: pa.Table,
    fn: pa.Table,
    report: DedupReport,
    overwrite: bool,
    against: Sequence[str | Path] = (),
) -> None:
    old = judgments.load(coll.path)
    if len(old) and examples is not coll.examples:
        logger.warning("earlier judgments refer to the old example rows and are not carried over")
        old = judgments.empty()
    coll.derive(
        out,
        examples,
        step="dedup",
        params={
            "action": report.action,
            "lsh_bands": report.bands,
            "lsh_rows": report.rows,
            "free_false_negatives": report.free_false_negatives,
            "config": report.config,
        },
        tables={"judgments": pa.concat_tables([old, fn])},
        files={
            "dedup.json": orjson.dumps(
                report.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
            )
        },
        overwrite=overwrite,
        inputs=against,
    )
