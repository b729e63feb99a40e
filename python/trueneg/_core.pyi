"""Type stubs of the Rust extension ``trueneg._core`` (hand-written; checked by mypy.stubtest)."""

from os import PathLike
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__version__: str
__all__ = [
    "CoreValueError",
    "Interner",
    "__version__",
    "cpu_features",
    "hash_string_columns",
    "num_threads",
    "parse_bge_file_block",
    "parse_bge_lines",
    "set_serial",
]

class CoreValueError(ValueError): ...

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
