"""Exceptions raised by trueneg. Every error a user can cause derives from `TruenegError`."""

from __future__ import annotations

from trueneg._core import CoreValueError, TruenegError

__all__ = ["CollectionError", "CoreValueError", "FormatError", "InputError", "TruenegError"]

# TruenegError is defined in the Rust extension, so the kernels' CoreValueError (a TruenegError
# and a ValueError) belongs to the same family as every error below: one ``except`` catches all.


class InputError(TruenegError, ValueError):
    """Bad input data. The message names the file, the line (or row) and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        row_kind: str = "line",
    ) -> None:
        self.reason = message
        self.path = path
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", {row_kind} {line}" if row_kind != "line" else f":{line}"
            where += ": "
        elif line is not None:
            where = f"{row_kind} {line}: "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")


class FormatError(TruenegError, ValueError):
    """An unknown format, or a file whose format cannot be recognised."""


class CollectionError(TruenegError):
    """A collection directory that is missing, incomplete or of an unknown version."""
