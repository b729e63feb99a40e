"""File helpers: atomic writes, JSON Lines reading with line numbers, canonical JSON."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from trueneg.exceptions import InputError

logger = logging.getLogger(__name__)


#: the file trueneg writes into every folder it creates, so ``overwrite`` can tell its own
#: folders (which it may replace) from a user's (which it never replaces)
MARKER = ".trueneg"
#: how long a temporary folder of an older trueneg (no process id in its name) must have been
#: idle before it is taken for stale
LEGACY_TMP_IDLE_SECONDS = 3600.0


def _umask() -> int:
    """The process's umask, read without setting it where the system allows (``os.umask`` can
    only be read by writing it, which races with files other threads create meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    m = os.umask(0)
    os.umask(m)
    return m


def _write_marker(folder: Path) -> None:
    (folder / MARKER).write_bytes(orjson.dumps({"written_by": "trueneg"}) + b"\n")


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(p).expanduser().resolve()


def check_output(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> None:
    """Refuse an output that is, contains, or lies inside any of ``inputs`` (input files and
    folders, caches, work folders): writing it could replace or delete what it reads."""
    o = _resolved(out)
    for raw in inputs:
        if raw is None:
            continue
        i = _resolved(raw)
        if o == i:
            raise InputError(f"the output {out} is also an input; choose another output")
        if i.is_relative_to(o):
            raise InputError(
                f"the output {out} contains the input {raw}; choose an output outside it"
            )
        if o.is_relative_to(i):
            raise InputError(
                f"the output {out} lies inside the input {raw}; choose an output outside it"
            )


def written_by_trueneg(path: str | os.PathLike[str]) -> bool:
    """A folder trueneg wrote: it holds the marker, a collection manifest, or a trained model's
    ``train.json`` (folders of versions before the marker)."""
    p = Path(path)
    if (p / MARKER).is_file() or (p / "train.json").is_file():
        return True
    mf = p / "manifest.json"
    if mf.is_file():
        try:
            m = orjson.loads(mf.read_bytes())
        except orjson.JSONDecodeError:
            return False
        return isinstance(m, dict) and m.get("format") == "trueneg-collection"
    return False


def check_replaceable(
    path: str | os.PathLike[str], overwrite: bool, *, what: str = "folder"
) -> None:
    """``path`` may be written: it is absent or an empty folder, or ``overwrite`` is set and it
    is a folder trueneg wrote itself. An arbitrary folder or a file is never replaced."""
    p = Path(path)
    if not p.exists():
        return
    if not p.is_dir():
        raise InputError(f"{path} exists and is not a {what}; choose another output")
    if not any(e.name != MARKER for e in p.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{path} exists and is not empty (pass overwrite=True to replace it)")
    if not written_by_trueneg(p):
        raise InputError(
            f"{path} exists and was not written by trueneg: refusing to replace it "
            "(choose a new or empty folder)"
        )


def remove_own_folder(path: str | os.PathLike[str]) -> None:
    """Delete a folder trueneg wrote (see :func:`written_by_trueneg`); an empty or absent one is
    fine; any other folder is refused, never deleted."""
    p = Path(path)
    if not p.exists():
        return
    check_replaceable(p, overwrite=True)
    shutil.rmtree(p)


def mark_own_folder(path: str | os.PathLike[str]) -> Path:
    """Create folder ``path`` (if needed) and mark it as trueneg's (a work folder)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    if not (p / MARKER).exists():
        _write_marker(p)
    return p


def prepare_output(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    overwrite: bool = False,
) -> Path:
    """Every check before a verb writes folder ``out``: not an input, replaceable. Call it before
    long work, so a mistake is refused before hours are spent."""
    check_output(out, inputs)
    check_replaceable(out, overwrite)
    return Path(out)


def _stale_pattern(name: str) -> re.Pattern[str]:
    """Names of trueneg's temporaries for ``name``: ``.NAME.<pid>-<8 chars>.tmp|.old`` (older
    versions: no pid); the 8 characters are :mod:`tempfile`'s."""
    return re.compile(rf"^\.{re.escape(name)}\.(?:(?P<pid>\d+)-)?[a-z0-9_]{{8}}\.(?:tmp|old)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _idle_seconds(p: Path) -> float:
    newest = p.lstat().st_mtime
    if p.is_dir() and not p.is_symlink():
        for root, _, files in os.walk(p):
            for n in files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
    return time.time() - newest


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders a killed trueneg left beside ``path``
    (``.NAME.<pid>-xxxx.tmp`` whose process is gone; older names once idle for an hour)."""
    p = Path(path)
    removed: list[Path] = []
    if not p.parent.is_dir():
        return removed
    pattern = _stale_pattern(p.name)
    for e in p.parent.iterdir():
        m = pattern.match(e.name)
        if m is None:
            continue
        pid = m.group("pid")
        try:
            stale = not _alive(int(pid)) if pid else _idle_seconds(e) > LEGACY_TMP_IDLE_SECONDS
        except OSError:
            continue
        if stale:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    e.unlink()
            removed.append(e)
    if removed:
        logger.info("removed %d stale temporary entries beside %s", len(removed), p)
    return removed


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` through a temp file in the same folder, renamed into place on success.

    An interrupted write leaves the old file (or nothing) behind, never half a file; the file
    gets the permissions the user's umask gives (not the temp file's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        f: IO[Any] = (
            os.fdopen(fd, mode)
            if "b" in mode
            else os.fdopen(fd, mode, encoding="utf-8", newline="")
        )
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str],
    overwrite: bool = False,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """Build a directory under a temp name and rename it to `path` when the block succeeds.

    Refuses a `path` that is, holds or lies inside one of `inputs`, and replaces an existing
    folder only with `overwrite` and only when trueneg wrote it. The folder gets the marker
    file and the permissions the user's umask gives.
    """
    path = Path(path)
    prepare_output(path, inputs, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        _write_marker(tmp)
        yield tmp
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, trash / "old")
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_npy(path: str | os.PathLike[str]) -> Any:
    """A numeric ``.npy`` array, memory-mapped; never unpickles (a pickled or object array, a
    missing or unreadable file is a one-line error naming the file)."""
    import numpy as np

    p = str(path)
    try:
        a = np.load(p, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError("file not found", path=p) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a .npy file", path=p) from None
    except ValueError as e:
        if "pickle" in str(e).lower() or "Python objects" in str(e):
            raise InputError(
                "a pickled or object array: trueneg reads numeric .npy arrays only", path=p
            ) from None
        raise InputError(f"not a readable .npy array ({e})", path=p) from None
    except (OSError, EOFError) as e:
        raise InputError(f"not a readable .npy array ({e})", path=p) from None
    if not isinstance(a, np.ndarray):
        raise InputError("not a .npy array (an .npz archive?)", path=p)
    if a.dtype.kind != "f":
        raise InputError(f"expected a float array, got dtype {a.dtype}", path=p)
    return a


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


#: magic bytes of the compressions read transparently
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """gzip, zstd, bz2 or xz from the file's first bytes; None for a plain file."""
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def open_input(path: str | os.PathLike[str], what: str = "a file") -> IO[bytes]:
    """A binary reader of an input file, decompressed when it is gzip, zstd, bz2 or xz (BGE and
    MS MARCO files ship compressed). Refuses, in one line, a missing file, a folder, and a pipe
    or stdin (trueneg reads its inputs more than once)."""
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("file not found", path=p) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a directory, expected {what}", path=p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            "is not a regular file (a pipe or stdin?): trueneg reads its inputs more than "
            "once, so write it to a file first",
            path=p,
        )
    try:
        kind = compression_of(p)
        if kind == "gzip":
            import gzip

            return gzip.open(p, "rb")  # type: ignore[return-value]
        if kind == "bz2":
            import bz2

            return bz2.open(p, "rb")
        if kind == "xz":
            import lzma

            return lzma.open(p, "rb")
        if kind == "zstd":
            import io

            import pyarrow as pa

            return io.BufferedReader(pa.CompressedInputStream(pa.OSFile(p), "zstd"))
        return open(p, "rb")
    except PermissionError:
        raise InputError("permission denied", path=p) from None


#: the deepest JSON nesting trueneg reads, so that whatever it reads it can write back (orjson
#: writes at most 254 levels)
MAX_JSON_DEPTH = 254


def too_deep(value: Any) -> bool:
    """Nested deeper than :data:`MAX_JSON_DEPTH` (checked by writing it)."""
    try:
        orjson.dumps(value)
    except TypeError as e:
        return "ecursion" in str(e)
    return False


def maybe_too_deep(raw: bytes | str) -> bool:
    """Cheap pre-check on the text: could it nest deeper than the limit?"""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > MAX_JSON_DEPTH
    return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH


DEPTH_MESSAGE = f"JSON nested deeper than {MAX_JSON_DEPTH} levels (the most trueneg writes back)"


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any, InputError | None]]:
    """Yield (line number, parsed value, error) for each non-blank line; errors are returned, not
    raised. gzip / zstd / bz2 / xz files are decompressed on the fly."""
    p = str(path)
    f = open_input(p, "a JSON Lines file")
    lineno = 0
    with f:
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (EOFError, OSError, ValueError) as e:
                raise InputError(
                    f"unreadable after line {lineno} (truncated or corrupt compressed data: {e})",
                    path=p,
                ) from None
            lineno += 1
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                yield lineno, None, _json_error(p, lineno, raw, e)
                continue
            if maybe_too_deep(raw) and too_deep(value):
                yield lineno, None, InputError(DEPTH_MESSAGE, path=p, line=lineno)
                continue
            yield lineno, value, None


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


def cache_root() -> Path:
    """trueneg's cache folder: ``TRUENEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/trueneg`` (default
    ``~/.cache/trueneg``)."""
    root = os.environ.get("TRUENEG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trueneg"
    )
    return Path(root)
