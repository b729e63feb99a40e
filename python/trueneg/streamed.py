"""Streamed, resumable mining: queries in blocks against the corpus in shards, a checkpoint per
block, memory bounded by a limit the block sizes are derived from.

For each block of queries the corpus is searched shard by shard (each shard a slice of the
embedding array: a memory-mapped ``.npy`` is read, never copied, and its pages are handed back
to the OS after each shard when there are several), the per-shard top-k lists are merged by
(score, lower id), and the block's negatives are selected by the same Rust selection as
:func:`trueneg.mine.select_negatives` (random sampling drawn per global query, so blocks draw
what one call draws). Each block's selection is saved as ``block-NNNNNN.npz`` in ``work_dir``,
written atomically; ``plan.json`` holds the plan and a fingerprint of the inputs and settings.
A rerun with the same inputs and settings skips the saved blocks (a killed run resumes where it
stopped and gives byte-identical output); different inputs are refused, never mixed.

Exactness: the int8 path re-scores every candidate with one fixed-order f32 dot product, so a
score does not depend on how the queries and corpus were cut, and the merged top-k equals one
call's top-k (same ids, same score bits, ties by the lower id). On CPUs without AVX-512 VNNI
the f32 gemm path computes the same inner products, possibly rounded differently per shard.

Example::

    >>> import numpy as np
    >>> from trueneg.streamed import select_streamed
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((1000, 32)).astype(np.float32)
    >>> queries = corpus[:10] + 0.1
    >>> sel = select_streamed(queries, corpus, [[i] for i in range(10)], num_negatives=3)
    >>> sel.negatives(0)[:1] != [0]
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import mmap
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueneg import _core
from trueneg.exceptions import InputError
from trueneg.mine import (
    AnnConfig,
    Selection,
    _matrix,
    flat_positives,
    select_candidates,
)

#: bytes this process needs besides the blocks: the interpreter, numpy, pyarrow, the kernel's
#: per-thread buffers and the f16 widening round
BASE_BYTES = 640 << 20
#: queries per block at most: a checkpoint at least this often (times the number of threads / 2)
BLOCK_QUERIES = 8192
#: the plan's format; a change refuses to resume older work folders
PLAN_VERSION = 1


def int8_available() -> bool:
    """Whether this CPU runs the int8 prefilter (AVX-512 VNNI)."""
    f = set(_core.cpu_features())
    return {"avx512f", "avx512vnni"} <= f


def parse_memory(value: str | int | float | None) -> int | None:
    """Bytes from a size with its unit: ``"8GB"``, ``"512MB"``, ``"6GiB"``, ``"8g"``, ``"1.5T"``,
    ``"4096B"`` (GB = 10^9, GiB and a bare G = 2^30); a number is bytes; ``None`` stays ``None``. A string
    without a unit is refused (8 what?)."""
    if value is None or isinstance(value, int | float):
        return None if value is None else int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", value.lower())
    if not m or not (m.group(2) or m.group(3) == "b"):
        raise InputError(
            f"memory limit {value!r}: expected a size with its unit, such as 8GB, 6GiB or 512MB"
        )
    num, unit, suffix = float(m.group(1)), m.group(2), m.group(3)
    base = 1000 if suffix == "b" else 1024
    return int(num * base ** " kmgt".index(unit or " "))


def default_memory_limit() -> int:
    """Half of this machine's physical memory."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError):
        return 8 << 30


@dataclass(frozen=True)
class BlockPlan:
    """How a run is cut: ``query_rows`` queries per block (the checkpoint unit) and
    ``shard_rows`` corpus rows per shard; ``estimate_bytes`` is the peak the plan expects."""

    n_queries: int
    n_corpus: int
    query_rows: int
    shard_rows: int
    estimate_bytes: int

    @property
    def blocks(self) -> int:
        return -(-self.n_queries // self.query_rows) if self.n_queries else 0

    @property
    def shards(self) -> int:
        return -(-self.n_corpus // self.shard_rows)

    def block(self, i: int) -> tuple[int, int]:
        a = i * self.query_rows
        return a, min(a + self.query_rows, self.n_queries)

    def shard(self, i: int) -> tuple[int, int]:
        a = i * self.shard_rows
        return a, min(a + self.shard_rows, self.n_corpus)


def plan_blocks(
    n_queries: int,
    n_corpus: int,
    dim: int,
    k: int,
    *,
    itemsize: int = 4,
    memory_limit: int | None = None,
    int8: bool | None = None,
    threads: int | None = None,
    block_queries: int | None = None,
) -> BlockPlan:
    """Block and shard sizes that keep the run under ``memory_limit`` bytes (default: half the
    machine's memory). Per corpus row of a shard: its embedding (mapped pages count as resident)
    and, on the int8 path, its packed int8 copy; per query of a block: its embedding, the kernel's
    candidate list and the merge buffers of ``k`` candidates; per query of the whole run: its
    selected negatives. The corpus gets up to 60% of what is left, the query block the rest."""
    if k < 1 or n_corpus < k:
        raise InputError(f"k must be in 1..={n_corpus} (the corpus size), got {k}")
    limit = default_memory_limit() if memory_limit is None else int(memory_limit)
    int8 = int8_available() if int8 is None else int8
    threads = threads or _core.num_threads()
    corpus_row = dim * itemsize + ((-(-dim // 4) * 4 + 24) if int8 else 0)
    query_row = dim * (itemsize + 4) + 96 * k
    whole_run = n_queries * 160 + n_corpus * 4  # selections, positives, the copy clusters
    left = limit - BASE_BYTES - whole_run
    need = k * corpus_row + query_row
    if left < need:
        raise InputError(
            f"memory limit {limit / 2**30:.2f} GiB is below what this run needs at least "
            f"({(limit - left + need) / 2**30:.2f} GiB for {n_queries:,} queries x "
            f"{n_corpus:,} passages); raise --memory-limit"
        )
    shard_rows = int(min(n_corpus, max(k, int(left * 0.6) // corpus_row)))
    if shard_rows < n_corpus:  # equal shards: no tiny last one
        shards = -(-n_corpus // shard_rows)
        shard_rows = max(k, -(-n_corpus // shards))
    rest = left - shard_rows * corpus_row
    cap = block_queries if block_queries is not None else max(BLOCK_QUERIES, 256 * threads)
    if cap < 1:
        raise InputError(f"block_queries must be at least 1, got {cap}")
    query_rows = int(max(1, min(n_queries, cap, rest // query_row)))
    estimate = BASE_BYTES + whole_run + shard_rows * corpus_row + query_rows * query_row
    return BlockPlan(n_queries, n_corpus, query_rows, shard_rows, estimate)


def merge_topk(
    ids_a: NDArray[np.int64],
    scores_a: NDArray[np.float32],
    ids_b: NDArray[np.int64],
    scores_b: NDArray[np.float32],
    k: int,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The best ``k`` of two (rows, *) candidate lists: higher score first (the total order of
    f32, as the kernel sorts: 0.0 above -0.0), then the lower id; id -1 (no candidate) last."""
    ids = np.concatenate([ids_a, ids_b], axis=1)
    sc = np.concatenate([scores_a, scores_b], axis=1)
    bits = sc.view(np.int32).astype(np.int64)
    total = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # f32 total order as integers
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -total), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(sc, order, axis=1)


def release_pages(a: object) -> None:
    """Hands the resident pages of a memory-mapped array back to the OS (they are read again
    from the page cache when touched): keeps a long scan's RSS at one shard. No-op otherwise."""
    base = a
    while base is not None:
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                mm.madvise(mmap.MADV_DONTNEED)
            return
        base = getattr(base, "base", None)


def _hash_rows(h: Any, a: np.ndarray, chunk_bytes: int = 256 << 20) -> None:
    h.update(repr((a.shape, str(a.dtype))).encode())
    rows = max(1, chunk_bytes // max(1, a.itemsize * int(np.prod(a.shape[1:]))))
    for s in range(0, len(a), rows):
        h.update(np.ascontiguousarray(a[s : s + rows]).data.cast("B"))
    release_pages(a)


def fingerprint(
    queries: np.ndarray,
    corpus: np.ndarray,
    query_rows: NDArray[np.int64] | None,
    pos_off: NDArray[np.int64],
    pos_flat: NDArray[np.int64],
    cluster: NDArray[np.uint32] | None,
    settings: dict[str, Any],
) -> str:
    """SHA-256 of everything a run's output depends on: the embeddings, which query row each
    example uses, the positives, the copy clusters and the settings."""
    h = hashlib.sha256(f"trueneg streamed v{PLAN_VERSION}\0".encode())
    _hash_rows(h, queries)
    _hash_rows(h, corpus)
    for a in (query_rows, pos_off, pos_flat, cluster):
        h.update(b"-" if a is None else np.ascontiguousarray(a).data.cast("B"))
        h.update(b"\0")
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _block_path(work: Path, i: int) -> Path:
    return work / f"block-{i:06d}.npz"


#: what a block's checkpoint holds: the :class:`~trueneg.mine.Selection` arrays, by name (a block
#: saved before ``out_of_bounds`` was one of them reads as unreadable and is computed again)
_BLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(Selection))


def _save_block(path: Path, sel: tuple[np.ndarray, ...]) -> None:
    from trueneg._io import atomic_file

    arrays: dict[str, Any] = dict(zip(_BLOCK_FIELDS, sel, strict=True))
    with atomic_file(path) as f:
        np.savez(f, **arrays)


def _load_block(path: Path) -> tuple[np.ndarray, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return tuple(z[n] for n in _BLOCK_FIELDS)
    except (OSError, ValueError, KeyError, EOFError):
        return None  # unreadable: computed again


def _open_work(work: Path, fp: str, plan: BlockPlan) -> BlockPlan:
    """The plan to follow in ``work``: the stored one when the fingerprint matches (the blocks
    saved so far stay valid), else a fresh folder. A folder of another run is refused."""
    from trueneg._io import atomic_file

    meta = work / "plan.json"
    if meta.is_file():
        try:
            stored = json.loads(meta.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("fingerprint") != fp or stored.get("version") != PLAN_VERSION:
            raise InputError(
                "holds the checkpoints of another mining run (other embeddings, positives or "
                "settings); remove it or choose another work folder",
                path=str(work),
            )
        return BlockPlan(**stored["plan"])
    if work.exists() and any(work.iterdir()):
        raise InputError(
            "is not empty and not a mining work folder; choose another work folder", path=str(work)
        )
    work.mkdir(parents=True, exist_ok=True)
    with atomic_file(meta, "w") as f:
        json.dump(
            {"version": PLAN_VERSION, "fingerprint": fp, "plan": dataclasses.asdict(plan)},
            f,
            indent=1,
        )
    return plan


def _block_queries(
    queries: np.ndarray, query_rows: NDArray[np.int64] | None, a: int, b: int
) -> np.ndarray:
    rows = queries[query_rows[a:b]] if query_rows is not None else queries[a:b]
    return _matrix(rows, "queries")


def _search_block(
    q: np.ndarray,
    corpus: np.ndarray,
    plan: BlockPlan,
    k: int,
    method: str,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    ids = np.full((len(q), k), -1, np.int64)
    sc = np.full((len(q), k), -np.inf, np.float32)
    for s in range(plan.shards):
        a, b = plan.shard(s)
        kk = min(k, b - a)
        try:
            i, v = _core.topk_inner_product(q, _matrix(corpus[a:b], "corpus"), kk, method)
        except _core.CoreValueError as e:
            raise InputError(str(e)) from None
        i += a
        if plan.shards == 1:
            return i, v
        if kk < k:
            i = np.pad(i, ((0, 0), (0, k - kk)), constant_values=-1)
            v = np.pad(v, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        ids, sc = merge_topk(ids, sc, i, v, k)
        release_pages(corpus)
    return ids, sc


def _concat(blocks: Sequence[tuple[np.ndarray, ...]], n: int) -> Selection:
    """One :class:`Selection` from the blocks' CSR pieces, in block order."""

    def offsets(i: int) -> NDArray[np.int64]:
        parts, total = [np.zeros(1, np.int64)], 0
        for blk in blocks:
            o = blk[i].astype(np.int64)
            parts.append(o[1:] + total)
            total += int(o[-1])
        return np.concatenate(parts)

    def cat(i: int, dtype: Any) -> np.ndarray:
        parts = [blk[i].astype(dtype, copy=False) for blk in blocks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    sel = Selection(
        offsets(0),
        cat(1, np.uint32),
        cat(2, np.float32),
        cat(3, np.uint32),
        offsets(4),
        cat(5, np.uint32),
        cat(6, np.float32),
        cat(7, np.uint32),
    )
    if len(sel.eligible) != n:
        raise RuntimeError(f"the blocks hold {len(sel.eligible)} queries, expected {n}")
    return sel


def select_streamed(
    queries: object,
    corpus: object,
    positives: list[list[int]],
    *,
    query_rows: object = None,
    work_dir: str | os.PathLike[str] | None = None,
    memory_limit: str | int | None = None,
    num_negatives: int = 7,
    range_min: int = 0,
    range_max: int = 100,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    seed: int = 0,
    cluster: NDArray[np.uint32] | None = None,
    search: str = "exact",
    ann: AnnConfig | dict[str, Any] | None = None,
    method: str = "auto",
    block_queries: int | None = None,
    desc: str = "mine",
) -> Selection:
    """:func:`trueneg.mine.select_negatives` in blocks of queries against shards of the corpus,
    under ``memory_limit`` (bytes or a size such as ``"8GB"``; default half the machine's memory).
    ``queries`` and ``corpus`` may be memory-mapped (``np.load(path, mmap_mode="r")``): rows are
    read as needed, never all at once. ``query_rows`` picks the query row of each example (one
    entry per positive list; default: row i for example i) without copying the queries.
    ``work_dir`` saves each block (atomically) and resumes a rerun with the same inputs and
    settings from the saved blocks. ``method``: the exact kernel's (auto, int8, gemm); auto is
    int8 on CPUs with AVX-512 VNNI, so scores do not depend on the blocks (see the module doc).
    ``search="ann"``: candidates from one usearch HNSW index (settings in ``ann``), searched a
    block at a time; the index itself is held in memory outside the limit. ``block_queries``
    caps the queries per block (a checkpoint at least that often)."""
    from trueneg._progress import progress
    from trueneg.mine import ann_index, ann_search

    q_all = queries if isinstance(queries, np.ndarray) else np.asarray(queries)
    c_all = corpus if isinstance(corpus, np.ndarray) else np.asarray(corpus)
    for arr, name in ((q_all, "queries"), (c_all, "corpus")):
        if arr.ndim != 2 or arr.dtype not in (np.float16, np.float32, np.float64):
            raise InputError(f"{name} must be a 2-d float array, got {arr.dtype} {arr.shape}")
    if c_all.dtype == np.float64:  # once, not per block (the kernel reads f32 or f16)
        c_all = c_all.astype(np.float32)
    if q_all.shape[1] != c_all.shape[1]:
        raise InputError(
            f"dimension mismatch: queries have {q_all.shape[1]} columns, the corpus "
            f"{c_all.shape[1]}"
        )
    n_ex = len(positives)
    rows = None
    if query_rows is not None:
        rows = np.asarray(query_rows, np.int64)
        if rows.shape != (n_ex,):
            raise InputError(f"query_rows has {len(rows)} entries for {n_ex} positive lists")
        if n_ex and (rows.min() < 0 or rows.max() >= len(q_all)):
            raise InputError(f"query_rows must be query rows 0..{len(q_all) - 1}")
    elif len(q_all) != n_ex:
        raise InputError(f"{len(q_all)} queries but {n_ex} positive lists")
    if method not in ("auto", "int8", "gemm"):
        raise InputError(f"method must be auto, int8 or gemm, got {method!r}")
    if search not in ("exact", "ann"):
        raise InputError(f"search must be exact or ann, got {search!r}")
    nc = len(c_all)
    if nc == 0:
        raise InputError("the corpus is empty")
    pos_off, flat = flat_positives(positives, nc)
    k = min(nc, range_max + int(np.diff(pos_off).max(initial=0)))
    int8 = method == "int8" or (method == "auto" and int8_available())
    if method == "auto":
        method = "int8" if int8 and search == "exact" else "gemm"
    itemsize = 2 if c_all.dtype == np.float16 else 4
    plan = plan_blocks(
        n_ex,
        nc,
        c_all.shape[1],
        k,
        itemsize=itemsize,
        memory_limit=parse_memory(memory_limit),
        int8=int8 and search == "exact",
        block_queries=block_queries,
    )
    cfg = AnnConfig(**ann) if isinstance(ann, dict) else (ann or AnnConfig())
    selection: dict[str, Any] = {
        "num_negatives": num_negatives,
        "range_min": range_min,
        "range_max": range_max,
        "max_score": max_score,
        "min_score": min_score,
        "absolute_margin": absolute_margin,
        "relative_margin": relative_margin,
        "sampling": sampling,
        "seed": seed,
    }
    clus = None if cluster is None else np.ascontiguousarray(cluster, np.uint32)
    work = Path(work_dir) if work_dir is not None else None
    if work is not None:
        settings = {
            **selection,
            "k": k,
            "search": search,
            "method": method,
            "ann": dataclasses.asdict(cfg) if search == "ann" else None,
        }
        fp = fingerprint(q_all, c_all, rows, pos_off, flat, clus, settings)
        plan = _open_work(work, fp, plan)
    index = ann_index(c_all, cfg) if search == "ann" else None

    done: dict[int, tuple[np.ndarray, ...]] = {}
    if work is not None:
        for i in range(plan.blocks):
            p = _block_path(work, i)
            if p.is_file() and (blk := _load_block(p)) is not None:
                done[i] = blk
    initial = sum(plan.block(i)[1] - plan.block(i)[0] for i in done)
    with progress(total=n_ex, initial=initial, desc=desc, unit=" queries") as bar:
        for i in range(plan.blocks):
            if i in done:
                continue
            a, b = plan.block(i)
            q = _block_queries(q_all, rows, a, b)
            if index is not None:
                cid, csc = ann_search(index, q, c_all, k, cfg)
            else:
                cid, csc = _search_block(q, c_all, plan, k, method)
            off = pos_off[a : b + 1] - pos_off[a]
            bflat = flat[pos_off[a] : pos_off[b]]
            sel = select_candidates(
                cid,
                csc,
                q,
                c_all,
                off,
                bflat,
                cluster=clus,
                query_offset=a,
                **selection,
            )
            blk = tuple(getattr(sel, f) for f in _BLOCK_FIELDS)
            if work is not None:
                _save_block(_block_path(work, i), blk)
            done[i] = blk
            bar.update(b - a)
    return _concat([done[i] for i in range(plan.blocks)], n_ex)


#: the file that marks a folder as a trueneg work folder (only such a folder is ever removed)
WORK_MARKER = ".trueneg-work"


def claim_work_folder(path: str | os.PathLike[str]) -> Path:
    """Creates the work folder ``path`` (or takes it back from an earlier run) and marks it;
    refuses an existing folder that holds files and is not a trueneg work folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError("exists and is not a folder; choose another work folder", path=str(p))
    if p.is_dir() and not (p / WORK_MARKER).is_file() and any(p.iterdir()):
        raise InputError(
            "is not empty and not a trueneg work folder; choose another work folder",
            path=str(p),
        )
    p.mkdir(parents=True, exist_ok=True)
    (p / WORK_MARKER).touch()
    return p


def remove_work_folder(path: str | os.PathLike[str]) -> None:
    """Removes a work folder once its run's output is written (only a marked one)."""
    import shutil

    p = Path(path)
    if (p / WORK_MARKER).is_file():
        shutil.rmtree(p, ignore_errors=True)


def blocks_saved(work_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """The block checkpoints in a work folder."""
    yield from sorted(Path(work_dir).glob("block-*.npz"))
