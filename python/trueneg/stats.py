"""Per-subset statistics of a collection: sizes, positives and negatives per query, shared passages."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trueneg.collection import Collection


@dataclass
class SubsetStats:
    subset: str
    examples: int
    queries: int
    positives_per_example: float
    negatives_per_example: float
    unique_passages: int
    shared_with_other_subsets: int
    duplicate_texts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _content_groups(coll: Collection) -> np.ndarray:
    """For each pid, how many pids share its exact title+text."""
    h = coll.passages["content_hash"].combine_chunks()
    if len(h) == 0:
        return np.zeros(0, np.int64)
    raw = np.frombuffer(h.buffers()[1], dtype=np.uint8)[h.offset * 16 : (h.offset + len(h)) * 16]
    pairs = raw.view(np.uint64).reshape(-1, 2)
    _, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()]


def collection_stats(coll: Collection) -> list[SubsetStats]:
    """One row per subset plus a final ``ALL`` row."""
    ex = coll.examples
    n_ex = len(ex)
    qids = ex["qid"].to_numpy()
    q_subset = coll.queries["subset"].combine_chunks()
    ex_subset = q_subset.take(pa.array(qids)) if n_ex else pa.array([], pa.string())
    if isinstance(ex_subset, pa.ChunkedArray):
        ex_subset = ex_subset.combine_chunks()
    enc = pc.dictionary_encode(ex_subset) if n_ex else None
    names = enc.dictionary.to_pylist() if enc is not None else []
    codes = enc.indices.to_numpy() if enc is not None else np.zeros(0, np.int64)
    pos = ex["positives"].combine_chunks() if n_ex else None
    neg = ex["negatives"].combine_chunks() if n_ex else None
    pos_len = np.diff(pos.offsets.to_numpy()) if pos is not None else np.zeros(0, np.int64)
    neg_len = np.diff(neg.offsets.to_numpy()) if neg is not None else np.zeros(0, np.int64)
    pids = (
        np.concatenate([pos.values.to_numpy(), neg.values.to_numpy()]).astype(np.int64)
        if pos is not None and neg is not None
        else np.zeros(0, np.int64)
    )
    sub_of_pid_use = np.concatenate([np.repeat(codes, pos_len), np.repeat(codes, neg_len)]).astype(
        np.int64
    )
    n_p = max(len(coll.passages), 1)
    pairs = np.unique(sub_of_pid_use * n_p + pids)
    pair_sub, pair_pid = pairs // n_p, pairs % n_p
    subsets_per_pid = np.bincount(pair_pid, minlength=n_p)
    dup_group = _content_groups(coll)
    out = []
    for s, name in enumerate(names):
        m = codes == s
        mine = pair_pid[pair_sub == s]
        out.append(
            SubsetStats(
                subset=name,
                examples=int(m.sum()),
                queries=len(np.unique(qids[m])),
                positives_per_example=float(pos_len[m].mean()) if m.any() else 0.0,
                negatives_per_example=float(neg_len[m].mean()) if m.any() else 0.0,
                unique_passages=len(mine),
                shared_with_other_subsets=int((subsets_per_pid[mine] > 1).sum()),
                duplicate_texts=int((dup_group[mine] > 1).sum()) if len(dup_group) else 0,
            )
        )
    all_pids = np.unique(pids)
    out.append(
        SubsetStats(
            subset="ALL",
            examples=n_ex,
            queries=len(np.unique(qids)),
            positives_per_example=float(pos_len.mean()) if n_ex else 0.0,
            negatives_per_example=float(neg_len.mean()) if n_ex else 0.0,
            unique_passages=len(all_pids),
            shared_with_other_subsets=int((subsets_per_pid[all_pids] > 1).sum())
            if len(all_pids)
            else 0,
            duplicate_texts=int((dup_group[all_pids] > 1).sum())
            if len(dup_group) and len(all_pids)
            else 0,
        )
    )
    return out


def format_table(rows: list[SubsetStats]) -> str:
    head = [
        "subset",
        "examples",
        "queries",
        "pos/ex",
        "neg/ex",
        "passages",
        "cross-subset",
        "dup texts",
    ]
    body = [
        [
            r.subset,
            f"{r.examples:,}",
            f"{r.queries:,}",
            f"{r.positives_per_example:.2f}",
            f"{r.negatives_per_example:.2f}",
            f"{r.unique_passages:,}",
            f"{r.shared_with_other_subsets:,}",
            f"{r.duplicate_texts:,}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(b, widths, strict=True))
            )
        )
    return "\n".join(lines)
