"""Type stubs of the Rust extension ``trueneg._core`` (hand-written; checked by mypy.stubtest)."""

from collections.abc import Iterable
from os import PathLike
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__version__: str
__all__ = [
    "CoreValueError",
    "Interner",
    "TruenegError",
    "__version__",
    "apply_fix",
    "count_tokens",
    "cpu_features",
    "effective_contrastive_information",
    "hash_string_columns",
    "lsh_clusters",
    "minhash_signatures",
    "normalized_hashes",
    "num_threads",
    "pack_batches",
    "parse_bge_file_block",
    "parse_bge_lines",
    "plan_calls",
    "select_negatives",
    "set_serial",
    "strings_to_column",
    "topk_inner_product",
]

class TruenegError(Exception): ...
class CoreValueError(TruenegError, ValueError): ...

def hash_string_columns(
    columns: list[tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.bool_] | None]],
    seed: int = 0,
) -> NDArray[np.uint64]:
    """128-bit keys (uint64 (n, 2)) of the rows of Arrow-layout string columns."""

def parse_bge_lines(data: bytes, first_line: int = 1) -> dict[str, Any]:
    """Columns of the well-formed rows of BGE JSON Lines, plus ``errors`` (line, field, message)."""

def parse_bge_file_block(
    path: str | PathLike[str], offset: int = 0, block_bytes: int = 33554432, first_line: int = 1
) -> tuple[dict[str, Any], int, int]:
    """One memory-mapped block of a BGE file: (columns, next offset, next line)."""

_StrColumn = tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.bool_] | None]

def normalized_hashes(
    texts: _StrColumn,
    nfkc: bool = True,
    lowercase: bool = True,
    whitespace: bool = True,
    punctuation: bool = True,
) -> NDArray[np.uint64]:
    """128-bit keys (uint64 (n, 2)) of normalised texts: equal keys are exact duplicates."""

def minhash_signatures(
    texts: _StrColumn,
    num_perm: int = 128,
    seed: int = 1,
    unit: str = "word",
    ngram: int = 5,
    nfkc: bool = True,
    lowercase: bool = True,
    whitespace: bool = True,
    punctuation: bool = True,
) -> NDArray[np.uint32]:
    """MinHash signatures, uint32 (n, num_perm)."""

def lsh_clusters(
    signatures: NDArray[np.uint32],
    bands: int,
    rows: int,
    verify: str = "minhash",
    threshold: float = 0.0,
    texts: _StrColumn | None = None,
    unit: str = "word",
    ngram: int = 5,
    nfkc: bool = True,
    lowercase: bool = True,
    whitespace: bool = True,
    punctuation: bool = True,
) -> tuple[NDArray[np.uint32], int, NDArray[np.uint32], NDArray[np.float32]]:
    """(roots, candidate pairs, edges (m, 2), similarities) of LSH banding + verification."""

def strings_to_column(
    texts: Iterable[str | None],
) -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.bool_] | None]:
    """An iterable of str (or None) as an Arrow-layout column: (offsets, data, nulls | None)."""

def plan_calls(
    counts: NDArray[np.uint32], max_per_call: int = 25
) -> tuple[NDArray[np.uint64], NDArray[np.uint32], NDArray[np.uint32]]:
    """Calls as (example, start, end): each example's negatives in near-equal calls of <= max."""

def apply_fix(
    pos_offsets: NDArray[np.int64],
    pos: NDArray[np.uint32],
    neg_offsets: NDArray[np.int64],
    neg: NDArray[np.uint32],
    fn_offsets: NDArray[np.int64],
    fn_pids: NDArray[np.uint32],
    exempt: NDArray[np.bool_],
    strategy: str,
    max_false_negatives: int | None = None,
    with_sources: bool = False,
) -> tuple[
    NDArray[np.bool_],
    NDArray[np.uint32],
    tuple[NDArray[np.int64], NDArray[np.uint32], NDArray[np.uint64]],
    tuple[NDArray[np.int64], NDArray[np.uint32], NDArray[np.uint64]],
]:
    """Apply remove / remove-hn / relabel: (keep, counts, (pos offsets, pids, sources), (neg ...))."""

def count_tokens(texts: _StrColumn, encoding: str = "o200k_base") -> NDArray[np.uint32]:
    """Token count of each text with an OpenAI BPE encoding (bundled, offline)."""

def topk_inner_product(
    queries: NDArray[np.float32] | NDArray[np.float16],
    corpus: NDArray[np.float32] | NDArray[np.float16],
    k: int,
    method: str = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact inner-product top-k (indices int64 (n, k), scores float32 (n, k)), best first."""

def pack_batches(
    queries: NDArray[np.uint32],
    passage_offsets: NDArray[np.int64],
    passage_ids: NDArray[np.uint32],
    batch_size: int,
    seed: int = 0,
    max_open: int = 64,
) -> tuple[NDArray[np.int64], NDArray[np.uint32], int]:
    """Training batches with no query and no passage twice: (offsets, examples, partial)."""

def effective_contrastive_information(
    queries: NDArray[np.float32],
    passages: NDArray[np.float32],
    qids: NDArray[np.uint32],
    pos_offsets: NDArray[np.int64],
    pos: NDArray[np.uint32],
    neg_offsets: NDArray[np.int64],
    neg: NDArray[np.uint32],
    delta: float = 0.05,
    in_batch: int = 16,
) -> dict[str, NDArray[np.float32]]:
    """ECI terms per example and per negative (``trueneg.score``)."""

def select_negatives(
    cand_ids: NDArray[np.int64],
    cand_scores: NDArray[np.float32],
    pos_offsets: NDArray[np.int64],
    pos_ids: NDArray[np.uint32],
    pos_scores: NDArray[np.float32],
    num_negatives: int,
    range_min: int = 0,
    range_max: int = ...,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    seed: int = 0,
    cluster: NDArray[np.uint32] | None = None,
    query_offset: int = 0,
) -> tuple[
    tuple[NDArray[np.int64], NDArray[np.uint32], NDArray[np.float32]],
    NDArray[np.uint32],
    tuple[NDArray[np.int64], NDArray[np.uint32], NDArray[np.float32]],
    NDArray[np.uint32],
]:
    """Positive-aware negative selection: ((offsets, ids, scores), eligible, band,
    out_of_bounds: candidates per query the score bounds or margins dropped, over all k).
    ``query_offset``: the global number of the first query (random sampling draws per global
    query, so blocks of queries draw what one call draws)."""

def set_serial(serial: bool) -> None: ...
def num_threads() -> int: ...
def cpu_features() -> list[str]: ...

@final
class Interner:
    """Maps 128-bit keys to dense uint32 ids in first-seen order."""

    def __new__(cls) -> Interner: ...
    def intern(
        self, keys: NDArray[np.uint64], values: NDArray[np.uint64] | None = None
    ) -> tuple[NDArray[np.uint32], NDArray[np.bool_], NDArray[np.bool_]]: ...
    def lookup(self, keys: NDArray[np.uint64]) -> NDArray[np.int64]: ...
    def __len__(self) -> int: ...
