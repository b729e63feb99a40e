"""trueneg from a notebook or a script, through the public API only: a Hugging Face ``Dataset``
in, dedup, mine, judge with an OpenAI-compatible endpoint, fix, a ``Dataset`` out, a few training
steps. The data is the bundled RLHN sample (FiQA + MS MARCO, 50 queries, real text).

    python examples/quickstart.py --base-url http://localhost:8000/v1 --workdir /tmp/quickstart

(any OpenAI-compatible server: vLLM, llama.cpp; omit --base-url for OpenAI with OPENAI_API_KEY)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets import Dataset

import trueneg
from trueneg.data import rlhn_sample_stage1
from trueneg.judge import RLHN_STAGES, JudgeConfig
from trueneg.train import RetrieverConfig, Schedule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--workdir", type=Path, default=Path("quickstart"))
    ap.add_argument("--train-steps", type=int, default=2)
    args = ap.parse_args()
    w = args.workdir

    # 1. a Dataset in (BGE layout: query, pos, neg)
    rows = []
    for f in rlhn_sample_stage1():
        for line in f.read_bytes().splitlines():
            r = json.loads(line)
            rows.append(
                {
                    "query": r["query"],
                    "pos": [p["text"] for p in r["positive_passages"]],
                    "neg": [p["text"] for p in r["negative_passages"]],
                }
            )
    coll = trueneg.Collection.from_hf(Dataset.from_list(rows), w / "collection", overwrite=True)
    print(coll)

    # 2. dedup: duplicate queries dropped, free false negatives recorded
    d = trueneg.dedup(coll, out=w / "dedup", action="drop", overwrite=True)
    print(f"dedup: {d.report.free_false_negatives} free false negatives")

    # 3. mine new hard negatives (all-MiniLM-L6-v2, exact search, TopK-PercPos margin)
    m = trueneg.mine(d.collection, out=w / "mined", num_negatives=5, overwrite=True)
    print(f"mine: {m.report['negatives']} negatives, {m.report['band']} in the ambiguous band")

    # 4. judge the mined negatives (RLHN's stage-1 prompt) with the endpoint
    j = trueneg.judge(
        m.collection, JudgeConfig(stages=RLHN_STAGES[:1]), base_url=args.base_url, concurrency=4
    )
    print(f"judge: {j.report.false_negatives} false negatives, ${j.report.cost_usd:.4f}")

    # 5. fix: relabel the false negatives as positives (RLHN's best strategy)
    f = trueneg.fix(j.collection, out=w / "relabel", strategy="relabel", overwrite=True)
    print(f"fix: {f.report.moved_to_positives} negatives moved to the positives")

    # 6. a Dataset out: BGE rows (query, pos, neg), every example's own negatives; to_hf("st")
    # gives sentence-transformers columns (anchor, positive, negative_1..n: the fewest any
    # example has)
    out = f.collection.to_hf("bge")
    print(out)

    # 7. a few training steps on the fixed data
    t = trueneg.train_retriever(
        f.collection,
        RetrieverConfig(schedule=Schedule(max_steps=args.train_steps, batch_size=4)),
        out=w / "model",
        overwrite=True,
    )
    print(f"train: {t.report['steps']} steps, last loss {t.report['losses'][-1]:.3f}")


if __name__ == "__main__":
    main()
