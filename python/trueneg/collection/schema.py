"""The on-disk schema of a collection (the three tables, Parquet options, format version)
and the Arrow <-> Rust glue the builder and the stages share."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from trueneg import _core

#: Parquet codec of collection files: lz4 writes ~2x faster than zstd for ~1.4x the size
COMPRESSION = os.environ.get("TRUENEG_PARQUET_COMPRESSION", "lz4")
#: columns worth dictionary-encoding (few distinct values); ids and texts are not (2.5x slower writes)
DICTIONARY_COLUMNS = ["subset", "stage", "label", "status", "model", "prompt"]


def parquet_options() -> dict[str, Any]:
    return {"compression": COMPRESSION, "use_dictionary": DICTIONARY_COLUMNS}


FORMAT_NAME = "trueneg-collection"
FORMAT_VERSION = 1

PASSAGE_SCHEMA = pa.schema(
    [
        ("pid", pa.uint32()),
        ("docid", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("extra", pa.string()),
        ("content_hash", pa.binary(16)),
    ]
)
QUERY_SCHEMA = pa.schema(
    [
        ("qid", pa.uint32()),
        ("query_id", pa.string()),
        ("text", pa.string()),
        ("subset", pa.string()),
        ("extra", pa.string()),
    ]
)
EXAMPLE_SCHEMA = pa.schema(
    [
        ("qid", pa.uint32()),
        ("positives", pa.list_(pa.uint32())),
        ("negatives", pa.list_(pa.uint32())),
        ("pos_scores", pa.list_(pa.float64())),
        ("neg_scores", pa.list_(pa.float64())),
        ("extra", pa.string()),
        ("source", pa.uint16()),
        ("line", pa.int64()),
    ]
)


# ---------------------------------------------------------------------------------------------
# Arrow <-> Rust glue


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(offsets int64, data uint8, nulls bool | None) of a string array, zero-copy for data."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8), None
    bufs = arr.buffers()
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_dtype)[arr.offset : arr.offset + n + 1]
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return offsets, data, nulls


def string_array(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """A string Arrow array from an Arrow array or a Python list of str (copied once, in Rust; no
    per-row Python work, and unlike ``pa.array`` it does not make pyarrow import pandas)."""
    if isinstance(texts, list | tuple):
        # one copy of the UTF-8 bytes in Rust, then a zero-copy Arrow view
        offsets, data, nulls = _core.strings_to_column(texts)
        n = len(offsets) - 1
        validity = None if nulls is None else pa.py_buffer(np.packbits(~nulls, bitorder="little"))
        return pa.Array.from_buffers(
            pa.large_string(),
            n,
            [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
            null_count=0 if nulls is None else int(nulls.sum()),
        )
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks()
    return texts


def hash_columns(*arrays: pa.Array | Sequence[str | None], seed: int = 0) -> np.ndarray:
    """Fixed-seed 128-bit keys, uint64 (n, 2), of the rows of several string columns."""
    cols = [
        a if isinstance(a, pa.Array | pa.ChunkedArray) else pa.array(a, pa.string()) for a in arrays
    ]
    return _core.hash_string_columns([string_buffers(c) for c in cols], seed)


def arrow_indices(idx: np.ndarray) -> pa.Array:
    """An int64 Arrow view of a numpy index array (no copy; unlike ``pa.array`` it does not make
    pyarrow import pandas)."""
    a = np.ascontiguousarray(idx, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(a), [None, pa.py_buffer(a)])


def keys_to_binary(keys: np.ndarray) -> pa.Array:
    """uint64 (n, 2) keys as a fixed_size_binary(16) array (big-endian high then low)."""
    be = np.ascontiguousarray(keys.astype(">u8"))
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(keys), [None, pa.py_buffer(be.tobytes())]
    )
