"""The GPU checks of issues 4 and 7 in one prepared run (≤ 10 minutes on one H100):

1. embedding throughput (passages/s) of ``trueneg.embed.Encoder`` vs sentence-transformers
   ``encode`` on the same model (all-MiniLM-L6-v2) and the same texts, bf16 autocast for trueneg,
   ST's default (fp32) and ST in bf16 as well;
2. retriever training with bf16 autocast + TF32: examples/s, and nDCG@10 on held-out Cranfield
   queries before and after (noisy and relabel-fixed training data, as in
   scripts/experiment_false_negatives.py, with more epochs).

    python scripts/gpu_check.py                 # on the GPU machine, prints JSON lines
    python scripts/gpu_check.py --small         # a CPU smoke run of the same code

Writes the results to ``$OUT/gpu_check.json`` when ``OUT`` is set (the device tool's folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def embed_throughput(n: int, batch: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from trueneg.embed import Encoder, EncoderConfig, default_model_path

    lines = (ROOT / "tests/data/beir-msmarco-dl19-5k/corpus.jsonl").read_bytes().splitlines()
    texts = [orjson.loads(x)["text"] for x in lines]
    texts = (texts * (n // len(texts) + 1))[:n]
    texts = [f"{i} {t}" for i, t in enumerate(texts)]  # distinct texts, no cache effects
    out = {"texts": n, "device": "cuda" if torch.cuda.is_available() else "cpu"}
    enc = Encoder(EncoderConfig(max_length=256, batch_size=batch))
    enc.encode(texts[:batch])  # warm-up
    t = time.perf_counter()
    a = enc.encode(texts)
    out["trueneg_per_s"] = n / (time.perf_counter() - t)
    out["trueneg_dtype"] = str(enc.dtype)
    st = SentenceTransformer(default_model_path(), device=out["device"])
    st.max_seq_length = 256
    st.encode(texts[:batch], batch_size=batch)
    t = time.perf_counter()
    b = st.encode(texts, batch_size=batch, normalize_embeddings=True)
    out["st_fp32_per_s"] = n / (time.perf_counter() - t)
    if out["device"] == "cuda":
        st16 = SentenceTransformer(
            default_model_path(), device="cuda", model_kwargs={"torch_dtype": torch.bfloat16}
        )
        st16.max_seq_length = 256
        st16.encode(texts[:batch], batch_size=batch)
        t = time.perf_counter()
        st16.encode(texts, batch_size=batch)
        out["st_bf16_per_s"] = n / (time.perf_counter() - t)
    out["cosine_trueneg_vs_st"] = float(np.mean(np.sum(a * b, axis=1)))
    return out


def train_check(epochs: int, batch: int, max_length: int) -> dict:
    from experiment_false_negatives import noisy_collection, split

    from trueneg.embed import Encoder, EncoderConfig
    from trueneg.evaluate import evaluate_beir
    from trueneg.fix import fix_collection
    from trueneg.train import RetrieverConfig, train_retriever
    from trueneg.train._loop import Schedule

    data = ROOT / "tests/data/beir-cranfield"
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        enc = Encoder(EncoderConfig(max_length=max_length))
        train, test_dir = split(data, work, 0.4, 1)
        coll, n_fn, n_neg = noisy_collection(data, train, enc, work, 7)
        fix_collection(coll.path, work / "relabel", "relabel", max_false_negatives=None)
        out["false_negatives"] = f"{n_fn}/{n_neg}"
        out["before"] = evaluate_beir([test_dir], enc)["datasets"][test_dir.name]["retrieval"][
            "nDCG@10"
        ]
        for name, path in (("noisy", coll.path), ("relabel", work / "relabel")):
            cfg = RetrieverConfig(
                passage_max_length=max_length,
                temperature=0.05,
                schedule=Schedule(epochs=epochs, batch_size=batch, lr=3e-5, seed=1),
            )
            r = train_retriever(path, work / f"m-{name}", cfg)
            m = Encoder(EncoderConfig(model=str(work / f"m-{name}"), max_length=max_length))
            out[name] = {
                "examples_per_s": r["examples_per_s"],
                "precision": r["precision"],
                "device": r["device"],
                "steps": r["steps"],
                "nDCG@10": evaluate_beir([test_dir], m)["datasets"][test_dir.name]["retrieval"][
                    "nDCG@10"
                ],
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--small", action="store_true", help="CPU smoke run: tiny sizes")
    a = ap.parse_args()
    os.environ.setdefault("TRUENEG_DISABLE_PROGRESS_BARS", "1")
    res = {
        "embed": embed_throughput(256 if a.small else 50_000, 32 if a.small else 512),
        "train": train_check(1 if a.small else 10, 8 if a.small else 64, 64 if a.small else 256),
    }
    print(json.dumps(res, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
