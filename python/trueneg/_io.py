"""File helpers: atomic writes, JSON Lines reading with line numbers, canonical JSON."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from trueneg.exceptions import InputError


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` through a temp file in the same folder, renamed into place on success.

    An interrupted write leaves the old file (or nothing) behind, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(
            fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temp name and rename it to `path` when the block succeeds."""
    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path} exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, trash / "old")
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_error(path: str, lineno: int, raw: bytes, err: Exception) -> InputError:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return InputError(
            f"not valid UTF-8 (bad byte 0x{raw[u.start]:02x} at byte {u.start} of the line)",
            path=path,
            line=lineno,
        )
    msg = str(err).split(": line")[0]
    return InputError(f"invalid JSON: {msg}", path=path, line=lineno)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any, InputError | None]]:
    """Yield (line number, parsed value, error) for each non-blank line; errors are returned, not raised."""
    p = str(path)
    try:
        f = open(p, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise InputError("file not found", path=p) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a JSON Lines file", path=p) from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, orjson.loads(raw), None
            except orjson.JSONDecodeError as e:
                yield lineno, None, _json_error(p, lineno, raw, e)


def dumps_line(obj: Any) -> bytes:
    """One JSON Lines row (UTF-8, no ASCII escaping, newline-terminated)."""
    return orjson.dumps(obj) + b"\n"


def canonical_json(obj: Any) -> bytes:
    """Canonical form used to compare rows: sorted keys, no whitespace."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "an object",
    }.get(type(v), type(v).__name__)
