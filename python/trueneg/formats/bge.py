"""BGE / FlagEmbedding JSON Lines: ``{query, pos: [str], neg: [str], pos_scores?, neg_scores?, ...}``.

Passages are plain strings with no ids. Fields beyond these (``prompt``, ``type``, anything else)
are kept per example and written back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from trueneg import _core
from trueneg._io import (
    DEPTH_MESSAGE,
    MAX_JSON_DEPTH,
    atomic_file,
    compression_of,
    dumps_line,
    maybe_too_deep,
    open_input,
    too_deep,
)
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import InputError
from trueneg.formats._common import (
    IntScores,
    Where,
    checked_rows,
    default_subset,
    extras,
    is_parquet,
    iter_examples,
    nonempty,
    opt_scores,
    req_str,
    req_str_list,
    score_out,
)

NAME = "bge"
KNOWN = frozenset({"query", "pos", "neg", "pos_scores", "neg_scores"})


#: bytes handed to the Rust parser at a time (whole lines)
BLOCK_BYTES = 32 << 20


def read(
    builder: CollectionBuilder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    subset: str | None = None,
) -> None:
    int_scores = IntScores()
    with progress(desc="ingest bge", unit=" rows") as bar:
        for path in paths:
            sub = subset or default_subset(path)
            src = builder.add_source(path, sub)
            if is_parquet(path):
                _read_rows(builder, path, sub, src, int_scores, bar)
            else:
                _read_jsonl_fast(builder, path, sub, src, int_scores, bar)
    builder.options["int_scores"] = int_scores.all_int


def _str_array(offsets: np.ndarray, data: np.ndarray, empty_is_null: bool = False) -> pa.Array:
    n = len(offsets) - 1
    bufs = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    if empty_is_null:
        valid = np.diff(offsets) > 0
        if not valid.all():
            bufs[0] = pa.py_buffer(np.packbits(valid, bitorder="little"))
            return pa.Array.from_buffers(pa.string(), n, bufs, null_count=int(n - valid.sum()))
    return pa.Array.from_buffers(pa.string(), n, bufs)


def _scores_array(values: np.ndarray, counts: np.ndarray, has: np.ndarray) -> pa.Array:
    n = len(counts)
    if not has.any():
        return pa.nulls(n, pa.list_(pa.float64()))
    eff = np.where(has, counts, 0)
    offsets = pa.array(np.concatenate([[0], np.cumsum(eff)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, pa.float64()), mask=pa.array(~has))


def _read_jsonl_fast(
    builder: CollectionBuilder,
    path: str | os.PathLike[str],
    sub: str,
    src: int,
    int_scores: IntScores,
    bar: Any,
) -> None:
    """JSON Lines parsed in Rust (memory-mapped, in parallel), block by block, into columns."""
    p = str(path)
    open_input(p, "a JSON Lines file").close()  # exists, a regular file, readable
    for cols in _bge_blocks(p):
        for err_line, field, message in cols["errors"]:
            builder.error(InputError(message, path=p, line=err_line, field=field))
        _check_depth(builder, p, cols)
        n = len(cols["lines"])
        bar.update(n + len(cols["errors"]))
        if n == 0:
            continue
        if cols["has_pos_scores"].any() or cols["has_neg_scores"].any():
            int_scores.any = True
            int_scores.all_int = int_scores.all_int and cols["all_int_scores"]
        builder.add_examples_columns(
            query=_str_array(*cols["query"]),
            subset=sub,
            passages=_str_array(*cols["passages"]),
            pos_n=cols["pos_counts"],
            neg_n=cols["neg_counts"],
            pos_scores=_scores_array(
                cols["pos_scores"], cols["pos_counts"], cols["has_pos_scores"]
            ),
            neg_scores=_scores_array(
                cols["neg_scores"], cols["neg_counts"], cols["has_neg_scores"]
            ),
            extra=_str_array(cols["extra"][0], cols["extra"][1], empty_is_null=True),
            source=src,
            line=cols["lines"],
        )


def _check_depth(builder: CollectionBuilder, p: str, cols: dict[str, Any]) -> None:
    """Extra fields nested deeper than trueneg writes back are refused as at the other readers."""
    offsets, data = cols["extra"][0], cols["extra"][1]
    if len(data) <= MAX_JSON_DEPTH:
        return
    import orjson

    # only a field longer than the limit can nest that deep
    for i in np.flatnonzero(np.diff(offsets) > MAX_JSON_DEPTH).tolist():
        raw = bytes(data[int(offsets[i]) : int(offsets[i + 1])])
        if maybe_too_deep(raw) and too_deep(orjson.loads(raw)):
            builder.error(InputError(DEPTH_MESSAGE, path=p, line=int(cols["lines"][i])))


def _bge_blocks(p: str) -> Iterator[dict[str, Any]]:
    """Column blocks of a BGE JSON Lines file: memory-mapped blocks for a plain file; a
    compressed one (gzip, zstd, ...) is decompressed as a stream, whole lines at a time."""
    if compression_of(p) is None:
        size = os.path.getsize(p)
        offset, line = 0, 1
        while offset < size:
            cols, offset, line = _core.parse_bge_file_block(p, offset, BLOCK_BYTES, line)
            yield cols
        return
    line = 1
    rest = b""
    with open_input(p) as f:
        while True:
            try:
                chunk = f.read(BLOCK_BYTES)
            except (EOFError, OSError, ValueError) as e:
                raise InputError(
                    f"unreadable after line {line - 1} (truncated or corrupt compressed data: {e})",
                    path=p,
                ) from None
            data = rest + chunk
            if not chunk:
                if data:
                    yield _core.parse_bge_lines(data, line)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield _core.parse_bge_lines(block, line)
            line += block.count(b"\n")


def _parse_row(where: Where, row: dict[str, Any]) -> tuple[Any, ...]:
    """The same checks as the Rust parser, for rows that do not come from JSON Lines."""
    query = req_str(row, "query", where)
    pos = nonempty(req_str_list(row, "pos", where), where, "pos")
    if "neg" not in row:
        raise where.error("missing (use [] for an example without negatives)", "neg")
    neg = req_str_list(row, "neg", where)
    ps = opt_scores(row, "pos_scores", len(pos), where)
    ns = opt_scores(row, "neg_scores", len(neg), where)
    return query, pos, neg, ps, ns, row


def _read_rows(
    builder: CollectionBuilder,
    path: str | os.PathLike[str],
    sub: str,
    src: int,
    int_scores: IntScores,
    bar: Any,
) -> None:
    """Row-by-row reader (Parquet input)."""
    for where, (query, pos, neg, ps, ns, row) in checked_rows(builder, path, bar, _parse_row):
        int_scores.see(row.get("pos_scores"), row.get("neg_scores"))
        builder.add_example(
            query=query,
            subset=sub,
            positives=[(None, None, t, None) for t in pos],
            negatives=[(None, None, t, None) for t in neg],
            pos_scores=ps,
            neg_scores=ns,
            extra=extras(row, KNOWN),
            source=src,
            line=where.line,
        )


def _passage_text(title: str | None, text: str) -> str:
    return f"{title} {text}" if title else text


def to_row(ex: Any, int_scores: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "query": ex.query,
        "pos": [_passage_text(p[1], p[2]) for p in ex.positives],
        "neg": [_passage_text(p[1], p[2]) for p in ex.negatives],
    }
    if ex.pos_scores is not None:
        row["pos_scores"] = [score_out(x, int_scores) for x in ex.pos_scores]
    if ex.neg_scores is not None:
        row["neg_scores"] = [score_out(x, int_scores) for x in ex.neg_scores]
    row.update(ex.extra)
    return row


def write(coll: Collection, out: str | os.PathLike[str]) -> None:
    """One JSON Lines file; a title, where the source had one, is prefixed to the passage text."""
    int_scores = bool(coll.options.get("int_scores", False))
    with atomic_file(out) as f, progress(total=len(coll), desc="export bge", unit=" rows") as bar:
        for ex in iter_examples(coll):
            f.write(dumps_line(to_row(ex, int_scores)))
            bar.update()
