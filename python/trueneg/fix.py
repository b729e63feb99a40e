"""Applying false-negative verdicts: RLHN's three strategies, by passage id.

- ``remove``: drop every example with a false negative.
- ``remove-hn``: drop the false negatives from the negatives.
- ``relabel`` (RLHN): move them to the positives, after the original ones.

With ``max_false_negatives = k``, remove-hn and relabel drop an example with more than k false
negatives (the paper uses k = 7; its code keeps up to 8). Examples of exempt subsets (ArguAna by
default: counter-argument retrieval, never relabelled in the paper) are left as they are. False
negatives are the union of dedup's free ones (a negative duplicating a positive) and the judge's
final verdicts (the deepest stage that read a pair). The kernel runs in Rust over CSR buffers.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from trueneg import _core, judgments
from trueneg._io import prepare_output
from trueneg.collection import (
    EXAMPLE_SCHEMA,
    Collection,
    refresh_extras,
)
from trueneg.exceptions import InputError

STRATEGIES = ("remove", "remove-hn", "relabel")
DEFAULT_EXEMPT = r"arguana"


def false_negative_pairs(t: pa.Table) -> pa.Table:
    """(example, pid, stage, reason) of every false negative: dedup's flags plus each pair's final
    judge verdict."""
    if len(t) == 0:
        return t
    is_dedup = pc.equal(t["stage"], "dedup")
    dedup = t.filter(pc.and_(is_dedup, t["flagged"]))
    judged = judgments.final_flags(t.filter(pc.invert(is_dedup)))
    judged = judged.filter(judged["flagged"]) if len(judged) else judged
    return pa.concat_tables([dedup, judged]) if len(judged) else dedup


def ambiguous_pairs(t: pa.Table) -> pa.Table:
    """(example, pid, ...) of the negatives a judge's final verdict calls "ambiguous" (ARHN's
    rule F: ranked below the positive, yet with an answer snippet): dropped from the negatives by
    every strategy, never moved to the positives. A pair that is also a false negative (dedup) is
    left to the strategy."""
    if len(t) == 0:
        return t
    judged = judgments.final_flags(t.filter(pc.invert(pc.equal(t["stage"], "dedup"))))
    if len(judged) == 0:
        return judged
    amb = judged.filter(pc.equal(pc.fill_null(judged["label"], ""), "ambiguous"))
    fn = false_negative_pairs(t)
    if len(amb) == 0 or len(fn) == 0:
        return amb
    taken = set(judgments._pair_keys(fn).tolist())
    keys = judgments._pair_keys(amb).tolist()
    return amb.filter(pa.array([k not in taken for k in keys], pa.bool_()))


@dataclass
class FixReport:
    strategy: str
    max_false_negatives: int | None
    exempt_subsets: list[str]
    examples_before: int
    examples_after: int
    false_negatives: int
    examples_with_false_negatives: int
    moved_to_positives: int
    dropped_examples: int
    dropped_for_threshold: int
    #: negatives dropped as ambiguous (ARHN rule F) from the examples kept, whatever the strategy
    dropped_ambiguous: int = 0
    per_subset: list[dict[str, Any]] = field(default_factory=list)
    #: per-example fields made true again on the changed examples: {"rewritten"|"dropped":
    #: {field: rows}} (RLHN's id lists rewritten; its LLM response dropped)
    example_fields: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _csr(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks()
    off = arr.offsets.to_numpy().astype(np.int64)
    vals = arr.values.to_numpy().astype(np.uint32)
    return off - off[0], vals[off[0] : off[-1]] if len(off) else vals


def apply_strategy(
    coll: Collection,
    pairs: pa.Table,
    strategy: str,
    *,
    max_false_negatives: int | None = 7,
    exempt: str | None = DEFAULT_EXEMPT,
    ambiguous: pa.Table | None = None,
) -> tuple[pa.Table, FixReport]:
    """The new examples table and a report; ``pairs`` are (example, pid) false negatives;
    ``ambiguous`` (example, pid) negatives to drop from the negatives whatever the strategy
    (ARHN's rule F; examples of exempt subsets keep theirs)."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    ex = coll.examples
    n = len(ex)
    pos_off, pos = _csr(ex["positives"])
    neg_off, neg = _csr(ex["negatives"])
    if len(pairs):
        e = pairs["example"].to_numpy().astype(np.int64)
        order = np.argsort(e, kind="stable")
        fn_pid = pairs["pid"].to_numpy().astype(np.uint32)[order]
        fn_off = np.concatenate([[0], np.cumsum(np.bincount(e, minlength=n))]).astype(np.int64)
    else:
        fn_pid, fn_off = np.zeros(0, np.uint32), np.zeros(n + 1, np.int64)
    # subsets as dictionary codes: no per-row Python strings
    enc = pc.dictionary_encode(coll.queries["subset"].combine_chunks())
    q_codes = enc.indices.to_numpy(zero_copy_only=False)
    codes = q_codes[ex["qid"].to_numpy()] if n else np.zeros(0, np.int64)
    dict_names = enc.dictionary.to_pylist()
    names = sorted(dict_names[c] for c in np.unique(codes))
    exempt_names = (
        [s for s in names if exempt and re.search(exempt, s, re.IGNORECASE)]
        if strategy != "remove"
        else []
    )
    exempt_codes = [dict_names.index(s) for s in exempt_names]
    exempt_mask = np.isin(codes, exempt_codes) if exempt_codes else np.zeros(n, bool)
    has_scores = ex["pos_scores"].null_count < n or ex["neg_scores"].null_count < n
    neg_map: np.ndarray | None = None  # kept negative -> its place in the input
    n_amb = np.zeros(n, np.int64)
    if ambiguous is not None and len(ambiguous):
        neg_ex = np.repeat(np.arange(n, dtype=np.int64), np.diff(neg_off))
        drop = np.isin((neg_ex << 32) | neg.astype(np.int64), judgments._pair_keys(ambiguous))
        drop &= ~exempt_mask[neg_ex]
        n_amb = np.bincount(neg_ex[drop], minlength=n)
        neg_map = np.flatnonzero(~drop)
        neg = neg[~drop]
        neg_off = np.concatenate([[0], np.cumsum(np.diff(neg_off) - n_amb)]).astype(np.int64)
    keep, n_fn, (p_off, p_pids, p_src), (n_off, n_pids, n_src) = _core.apply_fix(
        pos_off,
        pos,
        neg_off,
        neg,
        fn_off,
        fn_pid,
        exempt_mask,
        strategy,
        max_false_negatives,
        has_scores,
    )
    if neg_map is not None and has_scores:
        n_pos = len(pos)

        def to_input(src: np.ndarray) -> np.ndarray:
            src = src.astype(np.int64)
            at_neg = src >= n_pos
            src[at_neg] = n_pos + neg_map[src[at_neg] - n_pos]
            return src

        p_src, n_src = to_input(p_src), to_input(n_src)
    scores = _gather_scores(ex, p_off, p_src, n_off, n_src, keep)
    kept = np.flatnonzero(keep)
    take = pa.array(kept)
    new = pa.Table.from_arrays(
        [
            ex["qid"].take(take),
            pa.ListArray.from_arrays(
                pa.array(p_off.astype(np.int32)), pa.array(p_pids, pa.uint32())
            ),
            pa.ListArray.from_arrays(
                pa.array(n_off.astype(np.int32)), pa.array(n_pids, pa.uint32())
            ),
            scores[0],
            scores[1],
            ex["extra"].take(take),
            ex["source"].take(take),
            ex["line"].take(take),
        ],
        schema=EXAMPLE_SCHEMA,
    )
    old_pos_n, old_neg_n = np.diff(pos_off)[kept], (np.diff(neg_off) + n_amb)[kept]
    changed = (np.diff(p_off) != old_pos_n) | (np.diff(n_off) != old_neg_n)
    new, fields = refresh_extras(coll, new, changed)
    counted = ~exempt_mask
    over = (
        (n_fn > max_false_negatives) & counted
        if max_false_negatives is not None and strategy != "remove"
        else np.zeros(n, bool)
    )
    per_subset = []
    for s in names:
        m = codes == dict_names.index(s)
        per_subset.append(
            {
                "subset": s,
                "examples_before": int(m.sum()),
                "examples_after": int((m & keep).sum()),
                "false_negatives": int(n_fn[m].sum()),
                "examples_with_false_negatives": int((n_fn[m] > 0).sum()),
                "dropped_ambiguous": int(n_amb[m & keep].sum()),
                "false_negative_rate": float((n_fn[m] > 0).mean()) if m.any() else 0.0,
                "exempt": s in exempt_names,
            }
        )
    moved = int((np.diff(p_off) - np.diff(pos_off)[kept]).sum()) if strategy == "relabel" else 0
    report = FixReport(
        strategy=strategy,
        max_false_negatives=max_false_negatives,
        exempt_subsets=exempt_names,
        examples_before=n,
        examples_after=int(keep.sum()),
        false_negatives=int(n_fn.sum()),
        examples_with_false_negatives=int((n_fn > 0).sum()),
        moved_to_positives=moved,
        dropped_examples=int((~keep).sum()),
        dropped_for_threshold=int(over.sum()),
        dropped_ambiguous=int(n_amb[keep].sum()),
        per_subset=per_subset,
        example_fields=fields,
    )
    return new, report


def _gather_scores(
    ex: pa.Table,
    p_off: np.ndarray,
    p_src: np.ndarray,
    n_off: np.ndarray,
    n_src: np.ndarray,
    keep: np.ndarray,
) -> tuple[pa.Array, pa.Array]:
    """Scores follow their passages (a moved negative keeps its score; NaN where the input had
    none); a side without scores in the input stays null."""
    ps, ns = ex["pos_scores"].combine_chunks(), ex["neg_scores"].combine_chunks()
    kept = np.flatnonzero(keep)
    m = len(kept)
    if ps.null_count == len(ps) and ns.null_count == len(ns):
        return pa.nulls(m, pa.list_(pa.float64())), pa.nulls(m, pa.list_(pa.float64()))
    pos_len = pc.list_value_length(ex["positives"].combine_chunks()).to_numpy(zero_copy_only=False)
    neg_len = pc.list_value_length(ex["negatives"].combine_chunks()).to_numpy(zero_copy_only=False)
    allv = np.concatenate([_flat_scores(ps, pos_len), _flat_scores(ns, neg_len)])
    p_has = ps.is_valid().to_numpy(zero_copy_only=False)[kept]
    n_has = ns.is_valid().to_numpy(zero_copy_only=False)[kept]

    def lists(off: np.ndarray, src: np.ndarray, has: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(
            pa.array(off.astype(np.int32)), pa.array(allv[src], pa.float64()), mask=pa.array(~has)
        )

    return lists(p_off, p_src, p_has), lists(n_off, n_src, n_has)


def _flat_scores(col: pa.Array, lengths: np.ndarray) -> np.ndarray:
    """Scores flattened to line up with the flattened passages (NaN for rows without scores)."""
    out = np.full(int(lengths.sum()), np.nan)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    if not valid.any():
        return out
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    off = col.offsets.to_numpy()
    vals = col.values.to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(valid)
    src = np.concatenate([np.arange(off[i], off[i + 1]) for i in idx])
    dst = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in idx])
    out[dst] = vals[src]
    return out


@dataclass(frozen=True)
class FixConfig:
    """What the fix stage writes: one collection per strategy; ``max_false_negatives`` drops an
    example with more false negatives than this (None: no limit; RLHN: 7) unless its subset
    matches ``exempt`` (a regex; RLHN exempts ArguAna)."""

    strategies: tuple[str, ...] = STRATEGIES
    max_false_negatives: int | None = 7
    exempt: str | None = DEFAULT_EXEMPT

    def __post_init__(self) -> None:
        from trueneg.config import at_least, one_of

        if not self.strategies:
            raise InputError("strategies must name at least one of " + ", ".join(STRATEGIES))
        for s in self.strategies:
            one_of("strategies", s, STRATEGIES)
        at_least("max_false_negatives", self.max_false_negatives, 0, optional=True)
        if self.exempt is not None:
            try:
                re.compile(self.exempt)
            except re.error as e:
                raise InputError(f"exempt is not a valid regular expression ({e})") from None


def check_judged(coll: Collection) -> None:
    """Refuse to fix from judgments that do not reflect the collection's answer cache: answers
    imported (or stored) after the last judge run, or a cache no judge run has read. Fixing then
    would read "no false negatives" where the answers hold some."""
    from trueneg.judge import CACHE_FILE, Cache

    cache = coll.path / CACHE_FILE
    if not cache.is_file():
        return
    with Cache(cache) as c:
        newest = c.newest()
    if newest is None:
        return
    runs = [s for s in coll.manifest.get("steps", []) if s.get("step") == "judge"]
    last = _dt.datetime.fromisoformat(runs[-1]["time"]).timestamp() if runs else None
    if last is None or newest > last + 1.0:
        when = "no judge run has read them" if last is None else "stored after the last judge run"
        raise InputError(
            f"{coll.path} holds judge answers that its judgments do not reflect ({when}): "
            f"run the judge on it first (offline=True reads the cached answers at no cost)"
        )


def fix_collection(
    path: str | Path,
    out: str | Path,
    strategy: str,
    *,
    max_false_negatives: int | None = 7,
    exempt: str | None = DEFAULT_EXEMPT,
    overwrite: bool = False,
) -> FixReport:
    """Write a fixed copy of the collection at ``out`` (passages and queries shared by copy)."""
    coll = Collection.load(path)
    prepare_output(out, [coll.path], overwrite=overwrite)
    check_judged(coll)
    t = judgments.load(coll.path)
    new, report = apply_strategy(
        coll,
        false_negative_pairs(t),
        strategy,
        max_false_negatives=max_false_negatives,
        exempt=exempt,
        ambiguous=ambiguous_pairs(t),
    )
    coll.derive(
        out,
        new,
        step="fix",
        params={
            "strategy": strategy,
            "max_false_negatives": max_false_negatives,
            "exempt": exempt,
            "source": str(coll.path),
            "false_negatives": report.false_negatives,
            "dropped_ambiguous": report.dropped_ambiguous,
            "example_fields": report.example_fields,
        },
        files={"fix.json": orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2)},
        overwrite=overwrite,
    )
    return report
