"""Synthetic BGE JSON Lines for the ingest benchmark: passages drawn from a shared pool (so
interning has work to do), ~25-word texts from a Zipf vocabulary, fixed seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson


def make_bge_jsonl(
    path: Path, n_rows: int, *, n_neg: int = 7, pool: int = 200_000, words: int = 25, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = (1 / ranks) / (1 / ranks).sum()
    toks = rng.choice(len(vocab), size=(pool, words), p=p)
    passages = [" ".join(vocab[t]) for t in toks]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        block = 10_000
        for start in range(0, n_rows, block):
            m = min(block, n_rows - start)
            ids = rng.integers(0, pool, size=(m, 1 + n_neg))
            buf = bytearray()
            for i in range(m):
                row = ids[i]
                buf += orjson.dumps(
                    {
                        "query": f"query {start + i} " + passages[row[0]][:40],
                        "pos": [passages[row[0]]],
                        "neg": [passages[j] for j in row[1:]],
                    }
                )
                buf += b"\n"
            f.write(buf)
    return path
