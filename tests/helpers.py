"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import orjson


def canonical_lines(path: Path) -> list[bytes]:
    """Each JSON line re-serialised with sorted keys (the round-trip comparison form)."""
    return [
        orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))
    return path
