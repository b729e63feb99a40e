"""Static int8 (NNCF post-training quantisation) of all-MiniLM-L6-v2 under OpenVINO, against the
bf16 OpenVINO model trueneg runs: passages/s on 2,000 DL19 passages, cosine to
sentence-transformers' fp32 embeddings, and the share of mined negatives that stay the same (the
agreement measures of issue 15). Not a dependency of trueneg: needs ``pip install nncf``.

    python benches/embed_static_int8.py [--keep-bf16 REGEX ...]

``--keep-bf16`` leaves the matching layers unquantised, e.g. ``'.*layer\\.\\d\\.output\\.dense.*'``
(the six FFN output projections). Stop 28 on the 2-core Zen 4: bf16 171-174 passages/s; int8 257
(cosine mean 0.9978, 95.1% identical); FFN outputs in bf16 220 (0.9991, 96.6%).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N = 2000


def batches(tok: Any, texts: list[str], bs: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Length-sorted padded batches: (row indices, model inputs)."""
    ids = tok(texts, truncation=True, max_length=256, return_attention_mask=False)["input_ids"]
    lens = np.array([len(i) for i in ids])
    order = np.argsort(-lens, kind="stable")
    for s in range(0, len(texts), bs):
        idx = order[s : s + bs]
        w = int(lens[idx[0]])
        t = np.zeros((len(idx), w), np.int64)
        m = np.zeros((len(idx), w), np.int64)
        for r, i in enumerate(idx):
            t[r, : lens[i]] = ids[i]
            m[r, : lens[i]] = 1
        yield idx, {"input_ids": t, "attention_mask": m}


def reference(n: int, extra: int) -> tuple[list[str], list[str], str, np.ndarray, Any]:
    """``n`` DL19 passages to time, ``extra`` others, the model folder, sentence-transformers'
    fp32 embeddings of the ``n`` (the reference) and trueneg's fp32 PyTorch ``Encoder`` (its
    tokenizer and transformers model are what the other backends are built from)."""
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, str(ROOT / "benches"))
    from compare import dl19_passages
    from trueneg.models import Encoder, EncoderConfig, default_model_path

    rows = dl19_passages(n + extra)
    path = default_model_path()
    ref = SentenceTransformer(str(path), device="cpu").encode(rows[:n], normalize_embeddings=True)
    enc = Encoder(EncoderConfig(model=path, dtype="fp32", backend="torch"))
    return rows[:n], rows[n:], path, ref, enc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-bf16", nargs="*", default=[], help="layer name patterns kept in bf16")
    args = ap.parse_args()
    import nncf
    import openvino as ov

    texts, other, _, ref, enc = reference(N, 1000)
    from compare import _same_negatives

    tok = enc.tokenizer
    ex = tok(["hello world"] * 2, return_tensors="pt", padding=True)
    fp32 = ov.convert_model(
        enc.model,
        example_input={"input_ids": ex["input_ids"], "attention_mask": ex["attention_mask"]},
    )
    calib = [x for _, x in batches(tok, other[:512], 8)]
    kw: dict[str, Any] = {}
    if args.keep_bf16:
        kw["ignored_scope"] = nncf.IgnoredScope(patterns=args.keep_bf16, validate=False)
    int8 = nncf.quantize(
        fp32,
        nncf.Dataset(calib),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calib),
        **kw,
    )
    core = ov.Core()
    for name, model in (("bf16", fp32), ("int8", int8)):
        cm = core.compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "THROUGHPUT"}
        )
        queue = ov.AsyncInferQueue(cm, int(cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        out = np.empty((N, 384), np.float32)

        def pool(req: Any, data: tuple[np.ndarray, np.ndarray], out: np.ndarray = out) -> None:
            idx, m = data
            h = req.get_output_tensor(0).data
            e = (h * m[:, :, None]).sum(1) / m.sum(1, keepdims=True)
            out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)

        queue.set_callback(pool)

        def run(tx: list[str], q: Any = queue) -> None:
            for idx, x in batches(tok, tx, 64):
                q.start_async(x, (idx, x["attention_mask"]))
            q.wait_all()

        run(other[:N])  # warm-up (fills `out` with other rows, overwritten below)
        t = time.perf_counter()
        run(texts)
        dt = time.perf_counter() - t
        cos = (out * ref).sum(1)
        print(
            f"{name}: {N / dt:.1f} passages/s, cosine to ST fp32 mean {cos.mean():.6f} "
            f"min {cos.min():.6f}, {_same_negatives(out, ref):.2%} of mined negatives identical"
        )


if __name__ == "__main__":
    main()
