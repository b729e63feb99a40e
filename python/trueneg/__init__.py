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
    "Engine",
    "FormatError",
    "InputError",
    "LocalEngine",
    "Result",
    "TruenegError",
    "__version__",
    "dedup",
    "evaluate",
    "export_collection",
    "fix",
    "generate",
    "ingest",
    "judge",
    "mine",
    "mine_hard_negatives",
    "report",
    "score_negatives",
    "train_reranker",
    "train_retriever",
]


def _serial_after_fork() -> None:
    # A forked child (torch DataLoader worker) must not touch the parent's thread pool.
    _core.set_serial(True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_serial_after_fork)

# The stage functions share their names with the modules that implement them (trueneg.fix the
# function, trueneg/fix.py the module): the modules are imported first, so a later
# ``import trueneg.fix`` finds them loaded and leaves the package attribute, the function, alone.
from trueneg import dedup as _dedup_module  # noqa: E402,F401
from trueneg import evaluate as _evaluate_module  # noqa: E402,F401
from trueneg import fix as _fix_module  # noqa: E402,F401
from trueneg import generate as _generate_module  # noqa: E402,F401
from trueneg import judge as _judge_module  # noqa: E402,F401
from trueneg import mine as _mine_module  # noqa: E402,F401
from trueneg import report as _report_module  # noqa: E402,F401
from trueneg.api import (  # noqa: E402
    Result,
    dedup,
    evaluate,
    fix,
    generate,
    judge,
    mine,
    report,
    score_negatives,
    train_reranker,
    train_retriever,
)
from trueneg.engine import Engine, LocalEngine  # noqa: E402
from trueneg.formats import export_collection, ingest  # noqa: E402
from trueneg.hard_negatives import mine_hard_negatives  # noqa: E402
