"""The ``trueneg`` command line (typer). One module per verb; ``main`` maps known errors to one line."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Annotated

import typer

from trueneg.exceptions import TruenegError
from trueneg.models import CPU_BATCH_TOKENS

app = typer.Typer(
    name="trueneg",
    help="Find and fix false negatives in retrieval training data.\n\n"
    "Environment: TRUENEG_DEBUG=1 shows tracebacks; TRUENEG_DISABLE_PROGRESS_BARS=1 hides progress "
    "bars; TRUENEG_NUM_THREADS sets the Rust thread count (default: all cores); TRUENEG_VERBOSITY "
    "sets the log level (warning, info, debug); TRUENEG_CACHE_DIR holds trueneg's cache (default "
    "~/.cache/trueneg: OpenVINO graphs of embedding models); TRUENEG_OPENVINO_CACHE=0 keeps none.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help texts name TOML tables ([judge], [[judge.stages]]) and extras (trueneg[ray]): shown as
    # written, not read as rich markup
    rich_markup_mode=None,
)

#: ``--backend`` of the commands that embed (mine, eval beir): EncoderConfig.backend
BackendOpt = Annotated[
    str,
    typer.Option(
        help="What runs the embedding model: auto (OpenVINO on CPU where installed, else "
        "PyTorch), torch, openvino."
    ),
]

#: ``--batch-tokens`` of the commands that embed: EncoderConfig.batch_tokens
BatchTokensOpt = Annotated[
    int | None,
    typer.Option(
        help="Padded tokens per forward pass at most (default: "
        f"{CPU_BATCH_TOKENS} on the CPU, no limit on a GPU)."
    ),
]

from trueneg.cli import dedup as _dedup  # noqa: E402,F401
from trueneg.cli import env as _env  # noqa: E402,F401
from trueneg.cli import eval as _eval  # noqa: E402,F401
from trueneg.cli import experiment as _experiment  # noqa: E402,F401
from trueneg.cli import export as _export  # noqa: E402,F401
from trueneg.cli import generate as _generate  # noqa: E402,F401
from trueneg.cli import ingest as _ingest  # noqa: E402,F401
from trueneg.cli import judge as _judge  # noqa: E402,F401
from trueneg.cli import mine as _mine  # noqa: E402,F401
from trueneg.cli import prune as _prune  # noqa: E402,F401
from trueneg.cli import run as _run  # noqa: E402,F401
from trueneg.cli import score as _score  # noqa: E402,F401
from trueneg.cli import stats as _stats  # noqa: E402,F401
from trueneg.cli import train as _train  # noqa: E402,F401


def _setup_logging() -> None:
    level = os.environ.get("TRUENEG_VERBOSITY", "warning").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING), format="%(levelname)s %(name)s: %(message)s"
    )


#: options that take several integers after one flag (``--seeds 0 1 2``)
MULTI_INT_OPTIONS = ("--seeds",)


def spread_multi_options(argv: list[str]) -> list[str]:
    """``--seeds 0 1 2`` -> ``--seeds 0 --seeds 1 --seeds 2`` (click options take one value)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        out.append(a)
        i += 1
        if a in MULTI_INT_OPTIONS:
            first = True
            while i < len(argv) and argv[i].lstrip("-").isdigit():
                if not first:
                    out.append(a)
                out.append(argv[i])
                first = False
                i += 1
    return out


_PARAM_TRUE = re.compile(r"\b([a-z][a-z_]*)=True\b")
_PARAM_FALSE = re.compile(r"\b([a-z][a-z_]*)=False\b")
_PARAM_VALUE = re.compile(r"\b([a-z][a-z_]*)=([A-Z][A-Z_]*)\b")


def cli_wording(message: str) -> str:
    """A library message in the CLI's words: ``overwrite=True`` -> ``--overwrite``,
    ``out=PATH`` -> ``--out PATH`` (the library names parameters, the CLI its flags)."""
    message = _PARAM_TRUE.sub(lambda m: "--" + m.group(1).replace("_", "-"), message)
    message = _PARAM_FALSE.sub(lambda m: "--no-" + m.group(1).replace("_", "-"), message)
    return _PARAM_VALUE.sub(lambda m: f"--{m.group(1).replace('_', '-')} {m.group(2)}", message)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trueneg`` script and ``python -m trueneg``."""
    _setup_logging()
    argv = spread_multi_options(list(sys.argv[1:] if argv is None else argv))
    debug = os.environ.get("TRUENEG_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="trueneg")
    except SystemExit as e:  # typer/click exit: usage errors, --help, normal end
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except TruenegError as e:
        if debug:
            raise
        print(f"error: {cli_wording(str(e))}", file=sys.stderr)
        print("hint: set TRUENEG_DEBUG=1 for a traceback", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, read-only file system, permissions: the system's words
        if debug:
            raise
        what = f"{e.filename}: " if e.filename else ""
        code = f" (errno {e.errno})" if e.errno else ""
        print(f"error: {what}{e.strerror or e}{code}; nothing was replaced", file=sys.stderr)
        print("hint: set TRUENEG_DEBUG=1 for a traceback", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
