"""The collection's ``manifest.json``: its record of source files, counts and every step applied."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import Any

import orjson

from trueneg._io import atomic_file


def step_record(step: str, **params: Any) -> dict[str, Any]:
    from trueneg import __version__

    return {
        "step": step,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "trueneg_version": __version__,
        "python": platform.python_version(),
        "params": params,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with atomic_file(directory / "manifest.json") as f:
        f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
