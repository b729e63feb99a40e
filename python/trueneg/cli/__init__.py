"""The ``trueneg`` command line (typer). One module per verb; ``main`` maps known errors to one line."""

from __future__ import annotations

import logging
import os
import sys

import typer

from trueneg.exceptions import TruenegError

app = typer.Typer(
    name="trueneg",
    help="Find and fix false negatives in retrieval training data.\n\n"
    "Environment: TRUENEG_DEBUG=1 shows tracebacks; TRUENEG_DISABLE_PROGRESS_BARS=1 hides progress "
    "bars; TRUENEG_NUM_THREADS sets the Rust thread count (default: all cores); TRUENEG_VERBOSITY "
    "sets the log level (warning, info, debug).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from trueneg.cli import dedup as _dedup  # noqa: E402,F401
from trueneg.cli import env as _env  # noqa: E402,F401
from trueneg.cli import eval as _eval  # noqa: E402,F401
from trueneg.cli import export as _export  # noqa: E402,F401
from trueneg.cli import ingest as _ingest  # noqa: E402,F401
from trueneg.cli import judge as _judge  # noqa: E402,F401
from trueneg.cli import mine as _mine  # noqa: E402,F401
from trueneg.cli import prune as _prune  # noqa: E402,F401
from trueneg.cli import run as _run  # noqa: E402,F401
from trueneg.cli import stats as _stats  # noqa: E402,F401
from trueneg.cli import train as _train  # noqa: E402,F401


def _setup_logging() -> None:
    level = os.environ.get("TRUENEG_VERBOSITY", "warning").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING), format="%(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trueneg`` script and ``python -m trueneg``."""
    _setup_logging()
    debug = os.environ.get("TRUENEG_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="trueneg")
    except SystemExit as e:  # typer/click exit: usage errors, --help, normal end
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except TruenegError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        print("hint: set TRUENEG_DEBUG=1 for a traceback", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
