"""trueneg: find and fix false negatives in retrieval training data, fast.

The public API re-exports the pieces users need; the Rust kernels live in ``trueneg._core``
and are reached through the typed wrappers of each pipeline stage.
"""

from __future__ import annotations

import os

from trueneg import _core
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import CollectionError, FormatError, InputError, TruenegError

__version__: str = _core.__version__

__all__ = [
    "Collection",
    "CollectionBuilder",
    "CollectionError",
    "FormatError",
    "InputError",
    "TruenegError",
    "__version__",
    "export_collection",
    "ingest",
    "mine_hard_negatives",
]


def _serial_after_fork() -> None:
    # A forked child (torch DataLoader worker) must not touch the parent's thread pool.
    _core.set_serial(True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_serial_after_fork)

from trueneg.formats import export_collection, ingest  # noqa: E402
from trueneg.hard_negatives import mine_hard_negatives  # noqa: E402
