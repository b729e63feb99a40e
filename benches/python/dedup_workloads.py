"""Dedup benchmark workloads; run as ``python dedup_workloads.py SIDE N`` in a fresh process.

Synthetic ~100-word texts (Zipf vocabulary of 20k words, fixed seed) with 10% planted near
copies (3% of words replaced). All sides: word 5-gram shingles, 128 permutations, LSH 16 bands x 8
rows, text in, duplicate flags out (imports done before the clock starts). Prints one JSON line: seconds, peak RSS, recall of the planted pairs.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

NUM_PERM, BANDS, ROWS, NGRAM = 128, 16, 8, 5


def make_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = (1 / ranks) / (1 / ranks).sum()
    n_copies = n // 10
    n_orig = n - n_copies
    toks = rng.choice(len(vocab), size=(n_orig, 100), p=p)
    texts = [" ".join(vocab[t]) for t in toks]
    origs = rng.choice(n_orig, size=n_copies, replace=False)
    for o in origs:
        t = toks[o].copy()
        pos = rng.choice(100, size=3, replace=False)
        t[pos] = rng.choice(len(vocab), size=3, p=p)
        texts.append(" ".join(vocab[t]))
    pairs = np.stack([origs, np.arange(n_orig, n)], axis=1)
    return texts, pairs


def shingle(text: str) -> list[str]:
    w = text.split()
    return [" ".join(w[i : i + NGRAM]) for i in range(len(w) - NGRAM + 1)]


def run_trueneg(texts: list[str], pairs: np.ndarray) -> float:
    from trueneg.dedup import DedupConfig, find_duplicates

    d = find_duplicates(
        texts,
        DedupConfig(
            bands=BANDS, rows=ROWS, num_perm=NUM_PERM, unit="word", ngram=NGRAM, verify="none"
        ),
    )
    return float((d.root[pairs[:, 0]] == d.root[pairs[:, 1]]).mean())


def run_rensa(texts: list[str], pairs: np.ndarray) -> float:
    from rensa import RMinHash, RMinHashLSH

    sets = [shingle(t) for t in texts]
    m = RMinHash.digest_matrix_from_token_sets(sets, NUM_PERM, 42)
    lsh = RMinHashLSH(0.8, NUM_PERM, BANDS)
    flags = np.asarray(lsh.insert_matrix_and_query_duplicate_flags(m), bool)
    return float((flags[pairs[:, 0]] & flags[pairs[:, 1]]).mean())


def run_datasketch(texts: list[str], pairs: np.ndarray) -> float:
    from datasketch import MinHash, MinHashLSH

    sets = [[s.encode() for s in shingle(t)] for t in texts]
    mhs = MinHash.bulk(sets, num_perm=NUM_PERM)
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    with lsh.insertion_session() as sess:
        for i, m in enumerate(mhs):
            sess.insert(i, m)
    hit = [int(o) in set(lsh.query(mhs[int(c)])) for o, c in pairs]
    return float(np.mean(hit))


SIDES = {"trueneg": run_trueneg, "rensa": run_rensa, "datasketch": run_datasketch}
IMPORTS = {"trueneg": "trueneg.dedup", "rensa": "rensa", "datasketch": "datasketch"}

if __name__ == "__main__":
    side, n = sys.argv[1], int(sys.argv[2])
    texts, pairs = make_texts(n)
    __import__(IMPORTS[side])  # imports are not part of the timed work, for every side
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    recall = SIDES[side](texts, pairs)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "side": side,
                "n": n,
                "seconds": dt,
                "recall": recall,
                "peak_rss_mb": peak,
                "rss_over_input_mb": peak - base,
            }
        )
    )
