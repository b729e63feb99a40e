"""``trueneg env``: versions, threads and CPU features, for bug reports."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import Annotated

import typer

from trueneg.cli import app

PACKAGES = (
    "numpy",
    "pyarrow",
    "orjson",
    "typer",
    "tqdm",
    "openai",
    "torch",
    "transformers",
    "sentence-transformers",
    "openvino",
    "usearch",
    "ray",
)


def env_info() -> dict[str, object]:
    from trueneg import __version__, _core
    from trueneg.models import (
        CPU_BATCH_TOKENS,
        cpu_attention,
        cpu_has_bf16,
        openvino_available,
    )
    from trueneg.streamed import default_memory_limit, int8_available

    versions: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "trueneg": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "rust_threads": _core.num_threads(),
        "TRUENEG_NUM_THREADS": os.environ.get("TRUENEG_NUM_THREADS"),
        "cpu_features": _core.cpu_features(),
        # what precision=auto / dtype=auto picks for embedding and training on this CPU
        "auto_precision_cpu": "bf16" if cpu_has_bf16() else "fp32",
        # what runs the embedding model on the CPU with backend=auto (OpenVINO where installed)
        "cpu_embedding_backend": "openvino" if openvino_available() else "torch",
        # the attention kernels bf16 embedding uses on this CPU with PyTorch (None = SDPA)
        "cpu_embedding_attention": cpu_attention("bf16") or "sdpa",
        # padded tokens per embedding batch on the CPU (EncoderConfig.batch_tokens' default)
        "cpu_embedding_batch_tokens": CPU_BATCH_TOKENS,
        # the exact search kernel mining uses here, and its default memory limit
        "mining_kernel": "int8 prefilter (AVX-512 VNNI)" if int8_available() else "f32 gemm",
        "mining_memory_limit_gb": round(default_memory_limit() / 2**30, 1),
        "packages": versions,
    }


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show versions, thread count and CPU features."""
    info = env_info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        if k == "packages":
            for p, ver in v.items():  # type: ignore[attr-defined]
                typer.echo(f"  {p}: {ver or '-'}")
        elif k == "cpu_features":
            typer.echo(f"{k}: {' '.join(v) or '-'}")  # type: ignore[arg-type]
        else:
            typer.echo(f"{k}: {v}")
