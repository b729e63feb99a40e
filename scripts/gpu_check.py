"""The GPU checks of issues 4 and 7 in one prepared run (≤ 10 minutes on one H100):

1. embedding throughput (passages/s) of ``trueneg.models.Encoder`` vs sentence-transformers
   ``encode`` on the same model (all-MiniLM-L6-v2) and the same texts, bf16 autocast for trueneg,
   ST's default (fp32) and ST in bf16 as well;
2. retriever training with bf16 autocast + TF32: ``trueneg.experiment`` on Cranfield (noisy,
   relabel and the step-matched control, the qrels oracle as judge), 3 seeds.

    python scripts/gpu_check.py                 # on the GPU machine, prints JSON lines
    python scripts/gpu_check.py --small         # a CPU smoke run of the same code

Writes the results to ``$OUT/gpu_check.json`` when ``OUT`` is set (the device tool's folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def embed_throughput(n: int, batch: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from trueneg.models import Encoder, EncoderConfig, default_model_path

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


def train_check(small: bool) -> dict:
    """``trueneg.experiment`` on Cranfield (noisy vs relabel, qrels oracle), bf16 autocast on the
    GPU: training throughput and the paired nDCG@10 delta."""
    from dataclasses import replace

    from trueneg.experiment import ExperimentConfig, _default_recipe, run_experiment

    recipe = _default_recipe()
    if small:
        recipe = replace(recipe, schedule=replace(recipe.schedule, max_steps=2))
    cfg = ExperimentConfig(
        seeds=(0,) if small else (0, 1, 2),
        labelled_positives=1,
        conditions=("zero-shot", "noisy", "relabel", "relabel-matched"),
        max_train_queries=8 if small else None,
        recipe=recipe,
        eval_precision="auto",
    )
    r = run_experiment(ROOT / "tests/data/beir-cranfield", cfg)
    return {"conditions": r["conditions"], "paired": r["paired"], "seconds": r["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--small", action="store_true", help="CPU smoke run: tiny sizes")
    a = ap.parse_args()
    os.environ.setdefault("TRUENEG_DISABLE_PROGRESS_BARS", "1")
    res = {
        "embed": embed_throughput(256 if a.small else 50_000, 32 if a.small else 512),
        "train": train_check(a.small),
    }
    print(json.dumps(res, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
