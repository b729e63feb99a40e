"""ONNX Runtime as an embedding backend (issue 15 asks to look at it beside OpenVINO), measured
against what trueneg runs: all-MiniLM-L6-v2 exported to ONNX (fp32), the same graph with
dynamic int8 quantisation (``onnxruntime.quantization.quantize_dynamic``, int8 weights per
channel), and trueneg's ``Encoder`` (OpenVINO, bf16 where the CPU has it, and forced fp32), in one
process on 1,000 DL19 passages: passages/s, cosine to sentence-transformers' fp32 embeddings and
the share of mined negatives that stay the same. Not a dependency of trueneg: needs
``pip install onnxruntime onnx onnxscript``.

    python benches/embed_onnxruntime.py [--n 1000] [--batch-size 32]

Stop 29 on the 2-core Zen 4 (AVX512-BF16/VNNI): ONNX Runtime fp32 85.8 passages/s, int8 171.5
(cosine mean 0.9943, 92.4% identical negatives); trueneg's OpenVINO fp32 97.8, bf16 179.6 (0.999986,
99.5%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def export(model: Any, tok: Any, out: Path) -> None:
    """The transformers model as ONNX: token ids and mask in, token states out (dynamic shapes)."""
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: Any, mask: Any) -> Any:
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    ex = tok(["hello world", "a longer example text"], return_tensors="pt", padding=True)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        Hidden(model).eval(),
        (ex["input_ids"], ex["attention_mask"]),
        str(out),
        input_names=["input_ids", "attention_mask"],
        output_names=["hidden"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
        opset_version=17,
        dynamo=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="passages embedded (timed)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sys.path.insert(0, str(ROOT / "benches"))
    from compare import _same_negatives
    from embed_static_int8 import batches, reference
    from trueneg.models import Encoder, EncoderConfig

    n = args.n
    texts, warm, path, ref, torch_enc = reference(n, 200)
    tok = torch_enc.tokenizer
    work = Path(tempfile.mkdtemp(prefix="trueneg-ort-"))
    fp32, int8 = work / "model.onnx", work / "model-int8.onnx"
    export(torch_enc.model, tok, fp32)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    threads = torch.get_num_threads()

    def onnx_runner(model: Path) -> Callable[[list[str]], np.ndarray]:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])

        def embed(tx: list[str]) -> np.ndarray:
            out = np.empty((len(tx), ref.shape[1]), np.float32)
            for idx, x in batches(tok, tx, args.batch_size):
                h, m = sess.run(None, x)[0], x["attention_mask"]
                e = (h * m[:, :, None]).sum(1) / m.sum(1, keepdims=True)
                out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)
            return out

        return embed

    def trueneg_runner(dtype: str) -> Callable[[list[str]], np.ndarray]:
        enc = Encoder(EncoderConfig(model=path, dtype=dtype, batch_size=args.batch_size))
        return lambda tx: enc.encode(tx)

    sides = {
        "onnxruntime fp32": onnx_runner(fp32),
        "onnxruntime int8 (dynamic)": onnx_runner(int8),
        "trueneg (auto)": trueneg_runner("auto"),
        "trueneg (fp32)": trueneg_runner("fp32"),
    }
    print(f"{n} DL19 passages, batch {args.batch_size}, {threads} threads")
    for name, embed in sides.items():
        embed(warm)
        t = time.perf_counter()
        out = embed(texts)
        dt = time.perf_counter() - t
        cos = (out * ref).sum(1)
        print(
            f"{name}: {n / dt:.1f} passages/s, cosine to ST fp32 mean {cos.mean():.6f} "
            f"min {cos.min():.6f}, {_same_negatives(out, ref):.2%} of mined negatives identical",
            flush=True,
        )


if __name__ == "__main__":
    main()
