"""One place where settings are checked, whichever way they come in (TOML, CLI options, library
keyword arguments): each stage's settings are a dataclass whose ``__post_init__`` checks every
value's range (so the library and the CLI cannot build a bad one), and :func:`from_table` reads a
TOML table into it, checking keys (an unknown one is named with the nearest valid name) and types
(``offline = "false"`` is an error, not true) before the dataclass sees them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from trueneg.exceptions import InputError

T = TypeVar("T")


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, non-UTF-8 or invalid file is a one-line error."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError("config file not found", path=str(p)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a TOML file", path=str(p)) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"not valid UTF-8 (bad byte 0x{raw[e.start]:02x})", path=str(p), line=line
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"invalid TOML: {e}", path=str(p)) from None


def nearest(name: str, choices: Iterable[str]) -> str | None:
    m = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return m[0] if m else None


def check_keys(
    given: Iterable[str],
    allowed: Iterable[str],
    where: str,
    path: str | None = None,
    *,
    noun: str = "setting",
) -> None:
    """Every key is known; an unknown one is named with the nearest known one."""
    allowed = sorted(set(allowed))
    for k in given:
        if k not in allowed:
            m = nearest(k, allowed)
            hint = f"did you mean {m!r}?" if m else "known: " + ", ".join(allowed)
            raise InputError(f"{where}: unknown {noun} {k!r} ({hint})", path=path)


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(t))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]  # TOML has no null
        return " or ".join(_type_name(a) for a in args)
    if t is type(None):
        return "none"
    if origin in (tuple, list):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return "a list" + (f" of {_plural(args[0])}" if args and args[0] is not Any else "")
    if origin in (dict, Mapping):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        t, getattr(t, "__name__", str(t))
    )


def _plural(t: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(t, "values")


def _value_name(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    return repr(v)


class _Mismatch(Exception):
    pass


def coerce(value: Any, t: Any) -> Any:
    """``value`` as type ``t`` (an int is a float, a list a tuple), or :class:`_Mismatch`."""
    origin = typing.get_origin(t)
    if t is Any:
        return value
    if origin in (Union, types.UnionType):
        for a in typing.get_args(t):
            try:
                return coerce(value, a)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(t) and isinstance(value, str | int | float):
            return value
        raise _Mismatch
    if t is type(None):
        if value is None:
            return None
        raise _Mismatch
    if t is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if t is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            v = float(value)
            if math.isnan(v):
                raise _Mismatch
            return v
        raise _Mismatch
    if t is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if t is Path:
        if isinstance(value, str):
            return Path(value)
        raise _Mismatch
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        args = typing.get_args(t)
        item = args[0] if args else Any
        if dataclasses.is_dataclass(item):
            return value  # nested tables are read by the caller
        out = [coerce(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _Mismatch
        kt, vt = typing.get_args(t) or (Any, Any)
        return {coerce(k, kt): coerce(v, vt) for k, v in value.items()}
    if isinstance(t, type) and isinstance(value, t):
        return value
    raise _Mismatch


def from_table(
    cls: type[T],
    table: Mapping[str, Any],
    where: str,
    path: str | None = None,
    *,
    skip: Iterable[str] = (),
    **fixed: Any,
) -> T:
    """Build dataclass ``cls`` from a TOML table: keys checked (nearest name for a typo), types
    checked, required ones present, then the dataclass's own range checks, every message naming
    ``where`` (e.g. ``[judge]``) and the key. ``skip``: keys the caller reads itself; ``fixed``:
    values the caller supplies (nested tables it built)."""
    if not isinstance(table, Mapping):
        raise InputError(f"{where}: expected a table, got {_value_name(table)}", path=path)
    skip = set(skip)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    check_keys([k for k in table if k not in skip], fields, where, path)
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = dict(fixed)
    for k, v in table.items():
        if k in skip or k in fixed:
            continue
        t = hints[k]
        if typing.get_origin(t) in (dict, Mapping) and isinstance(v, dict):
            _, vt = typing.get_args(t) or (Any, Any)
            out = {}
            for kk, vv in v.items():
                try:
                    out[kk] = coerce(vv, vt)
                except _Mismatch:
                    raise InputError(
                        f"{where}: {k}.{kk} must be {_type_name(vt)}, got {_value_name(vv)}",
                        path=path,
                    ) from None
            kw[k] = out
            continue
        try:
            kw[k] = coerce(v, t)
        except _Mismatch:
            raise InputError(
                f"{where}: {k} must be {_type_name(t)}, got {_value_name(v)}", path=path
            ) from None
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kw and f.init:
            raise InputError(f"{where}: missing setting {name!r}", path=path)
    try:
        return cls(**kw)
    except InputError as e:
        raise InputError(f"{where}: {e.reason}", path=path) from None


# -- range checks used by the settings dataclasses --------------------------------------------


def at_least(name: str, value: float | None, lo: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or isinstance(value, bool) or not value >= lo:
        raise InputError(f"{name} must be at least {lo:g}, got {value!r}")


def positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or isinstance(value, bool) or not value > 0:
        raise InputError(f"{name} must be greater than 0, got {value!r}")


def within(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not lo <= value <= hi:
        raise InputError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")


def one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        m = nearest(str(value), [str(c) for c in choices])
        hint = f" (did you mean {m!r}?)" if m else ""
        raise InputError(
            f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}{hint}"
        )
