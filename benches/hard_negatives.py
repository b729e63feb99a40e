"""trueneg.mine_hard_negatives vs sentence-transformers' mine_hard_negatives, same data, model and
parameters, side by side: the whole call (embedding included) and search + selection on cached
embeddings (both read their embedding cache). Data: the MS MARCO DL19 slice in tests/data (5,000
passages; anchors and positives: its judged pairs with grade >= 2, or with --self-pairs each
passage's first 12 words and the passage).

    python benches/hard_negatives.py [--repeats 3] [--self-pairs]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "beir-msmarco-dl19-5k"


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name")
        )
    except Exception:
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--self-pairs",
        action="store_true",
        help="anchors = the first 12 words of each passage, positive = the passage (5,000 pairs, "
        "a pairs-to-triplets job like natural-questions) instead of DL19's judged pairs",
    )
    args = ap.parse_args()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives as st_mine

    import trueneg
    from trueneg.evaluate import read_qrels
    from trueneg.models import default_model_path

    text = {}
    for line in (DATA / "corpus.jsonl").read_bytes().splitlines():
        r = json.loads(line)
        text[r["_id"]] = (r.get("title", "") + " " + r["text"]).strip()
    qs = {
        json.loads(x)["_id"]: json.loads(x)["text"]
        for x in (DATA / "queries.jsonl").read_bytes().splitlines()
    }
    if args.self_pairs:
        pairs = [(" ".join(t.split()[:12]), t) for t in text.values()]
    else:
        pairs = [
            (qs[q], text[d])
            for q, j in read_qrels(DATA).items()
            for d, g in j.items()
            if g >= 2 and d in text
        ]
    ds = Dataset.from_dict({"query": [a for a, _ in pairs], "answer": [b for _, b in pairs]})
    corpus = list(text.values())
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    kw = {"corpus": corpus, "relative_margin": 0.05, "num_negatives": 5, "verbose": False}
    rows = []

    def best(fn) -> float:
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts)

    with tempfile.TemporaryDirectory() as tmp:
        st_c, tn_c = f"{tmp}/st", f"{tmp}/tn"
        t0 = time.perf_counter()
        st_mine(ds, model, cache_folder=st_c, **kw)
        st_whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        trueneg.mine_hard_negatives(ds, model, cache_folder=tn_c, **kw)
        tn_whole_st_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        trueneg.mine_hard_negatives(ds, str(default_model_path()), **kw)
        tn_whole_folder = time.perf_counter() - t0
        st_sel = best(lambda: st_mine(ds, model, cache_folder=st_c, **kw))
        tn_sel = best(lambda: trueneg.mine_hard_negatives(ds, model, cache_folder=tn_c, **kw))
    rows = [
        ("whole call, SentenceTransformer model (same embedding)", st_whole, tn_whole_st_model),
        ("whole call, model folder (trueneg encoder, dtype auto)", st_whole, tn_whole_folder),
        ("search + selection + output (cached embeddings)", st_sel, tn_sel),
    ]
    print(
        f"CPU: {cpu()}; {len(ds):,} pairs, {len(set(ds['query']))} queries, {len(corpus):,} passages"
    )
    print("| step | sentence-transformers s | trueneg s | ratio |\n|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
