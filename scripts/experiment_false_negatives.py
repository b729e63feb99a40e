"""What false negatives cost, and what fixing them buys, on CPU in minutes (issue 7's experiment).

A BEIR-format set from tests/data is split by query into train and test. Training data: for each
train query, its best-graded relevant passage is the positive and the negatives are MiniLM's top
hard negatives, which include passages the qrels mark relevant: known false negatives. MiniLM is
trained on (a) that noisy data, (b) the data fixed with ``relabel`` and (c) with ``remove-hn``
(trueneg fix, the judge replaced by the qrels as an oracle), and evaluated (nDCG@10 etc.) on the
held-out queries, next to the untrained model.

    python scripts/experiment_false_negatives.py [--dataset tests/data/beir-cranfield] [--seeds 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq

from trueneg import Collection, ingest
from trueneg.embed import Encoder, EncoderConfig
from trueneg.evaluate import evaluate_beir, load_beir
from trueneg.fix import fix_collection
from trueneg.judgments import FILE, table
from trueneg.mine import exact_topk
from trueneg.train import RetrieverConfig, train_retriever
from trueneg.train._loop import Schedule


def split(data_dir: Path, work: Path, test_share: float, seed: int) -> tuple[list[str], Path]:
    """Train query ids, and a BEIR folder holding only the test queries."""
    data = load_beir(data_dir)
    ids = np.array(data.query_ids)
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n_test = int(len(ids) * test_share)
    test, train = set(ids[:n_test].tolist()), ids[n_test:].tolist()
    out = work / f"{data_dir.name}-test"
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / "corpus.jsonl", out / "corpus.jsonl")
    lines = [
        line
        for line in (data_dir / "queries.jsonl").read_bytes().splitlines()
        if line.strip() and orjson.loads(line)["_id"] in test
    ]
    (out / "queries.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{g}" for q, docs in data.qrels.items() if q in test for d, g in docs.items()
    ]
    (out / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return train, out


def noisy_collection(
    data_dir: Path, train: list[str], enc: Encoder, work: Path, n_neg: int
) -> tuple[Collection, int, int]:
    """BGE-format training file: positive = best-graded passage; negatives = the top n_neg by
    MiniLM that are not the positive (relevant ones included: the false negatives). Ingested,
    with the false negatives written as judgments (stage 'qrels-oracle')."""
    data = load_beir(data_dir)
    qtext = dict(zip(data.query_ids, data.query_texts, strict=True))
    keep = [q for q in train if q in qtext]
    qe = enc.encode([qtext[q] for q in keep], "query")
    de = enc.encode(data.doc_texts)
    idx, _ = exact_topk(qe, de, n_neg + 1)
    rows, fns = [], []
    for i, q in enumerate(keep):
        rel = {d: g for d, g in data.qrels[q].items() if g > 0}
        if not rel:
            continue
        pos = max(rel, key=lambda d: (rel[d], d))
        negs = [data.doc_ids[j] for j in idx[i] if data.doc_ids[j] != pos][:n_neg]
        text = dict(zip(data.doc_ids, data.doc_texts, strict=True))
        rows.append({"query": qtext[q], "pos": [text[pos]], "neg": [text[d] for d in negs]})
        fns.append([k for k, d in enumerate(negs) if d in rel])
    f = work / "noisy.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    coll = ingest([f], work / "noisy", overwrite=True)
    ex = coll.examples
    negatives = ex["negatives"].to_pylist()
    example, qid, pid = [], [], []
    for e, (ks, q) in enumerate(zip(fns, ex["qid"].to_pylist(), strict=True)):
        for k in ks:
            example.append(e)
            qid.append(q)
            pid.append(negatives[e][k])
    n = len(example)
    j = table(
        {
            "example": example,
            "qid": qid,
            "pid": pid,
            "stage": ["qrels-oracle"] * n,
            "stage_index": [1] * n,
            "label": ["relevant"] * n,
            "flagged": [True] * n,
            "status": ["ok"] * n,
        }
    )
    pq.write_table(j, coll.path / FILE)
    return coll, n, sum(len(x) for x in negatives)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="tests/data/beir-cranfield")
    ap.add_argument("--test-share", type=float, default=0.4)
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default="experiment-false-negatives.json")
    a = ap.parse_args()
    os.environ.setdefault("TRUENEG_DISABLE_PROGRESS_BARS", "1")
    data_dir = Path(a.dataset)
    results: dict = {"dataset": data_dir.name, "args": vars(a), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        enc = Encoder(EncoderConfig(max_length=a.max_length, cache_dir=str(work / "emb")))
        for seed in a.seeds:
            t0 = time.time()
            train, test_dir = split(data_dir, work, a.test_share, seed)
            coll, n_fn, n_negs = noisy_collection(data_dir, train, enc, work, a.negatives)
            variants = {"noisy": coll.path}
            for strategy in ("relabel", "remove-hn"):
                out = work / strategy
                fix_collection(coll.path, out, strategy, max_false_negatives=None, overwrite=True)
                variants[strategy] = out
            row = {
                "seed": seed,
                "train_queries": len(coll.examples),
                "false_negatives": n_fn,
                "negatives": n_negs,
            }
            base = evaluate_beir([test_dir], enc)["datasets"][test_dir.name]["retrieval"]
            row["untrained"] = base
            for name, path in variants.items():
                cfg = RetrieverConfig(
                    passage_max_length=a.max_length,
                    temperature=a.temperature,
                    group_size=a.negatives + 1,
                    schedule=Schedule(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed),
                )
                train_retriever(path, work / f"model-{name}", cfg, overwrite=True, resume=False)
                m = Encoder(
                    EncoderConfig(model=str(work / f"model-{name}"), max_length=a.max_length)
                )
                row[name] = evaluate_beir([test_dir], m)["datasets"][test_dir.name]["retrieval"]
            row["seconds"] = time.time() - t0
            results["runs"].append(row)
            print(
                f"seed {seed}: {row['train_queries']} train queries, {n_fn}/{n_negs} negatives are "
                f"false negatives; nDCG@10 on {row['untrained']['queries']} test queries: "
                + ", ".join(f"{k} {row[k]['nDCG@10']:.4f}" for k in ("untrained", *variants))
                + f" ({row['seconds']:.0f} s)",
                flush=True,
            )
    names = ["untrained", "noisy", "relabel", "remove-hn"]
    results["mean"] = {
        k: {
            m: float(np.mean([r[k][m] for r in results["runs"]]))
            for m in ("nDCG@10", "Recall@100", "MRR@10")
        }
        for k in names
    }
    Path(a.out).write_text(json.dumps(results, indent=2))
    print("\n| training data | nDCG@10 | Recall@100 | MRR@10 |\n|---|---|---|---|")
    for k in names:
        m = results["mean"][k]
        print(f"| {k} | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} | {m['MRR@10']:.4f} |")


if __name__ == "__main__":
    main()
