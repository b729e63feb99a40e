"""Shared pieces of the format readers and writers: field checks, row sources, passage lookup."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trueneg._io import iter_jsonl, type_name
from trueneg.collection import Collection, parse_extra
from trueneg.exceptions import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Where:
    """Where a row came from, for error messages."""

    path: str
    line: int
    kind: str = "line"

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field, row_kind=self.kind)


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


def iter_rows(
    path: str | os.PathLike[str], batch_rows: int = 8192
) -> Iterator[tuple[Where, Any, InputError | None]]:
    """Rows of a JSON Lines or Parquet file as (where, value, error)."""
    p = str(path)
    if is_parquet(p):
        if not os.path.isfile(p):
            raise InputError("file not found", path=p)
        try:
            pf = pq.ParquetFile(p)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", path=p) from None
        n = 0
        batches = pf.iter_batches(batch_size=batch_rows)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(f"unreadable after row {n} ({e})", path=p) from None
            for row in batch.to_pylist():
                n += 1
                yield Where(p, n, "row"), row, None
    for lineno, value, err in iter_jsonl(p):
        yield Where(p, lineno), value, err


def checked_rows(
    builder: Any,
    path: str | os.PathLike[str],
    bar: Any,
    parse: Callable[[Where, dict[str, Any]], T],
) -> Iterator[tuple[Where, T]]:
    """Each row of a file checked and parsed by ``parse``; an unreadable row, or one ``parse``
    rejects with an InputError, goes to ``builder.error`` (stop, or count it and go on)."""
    for where, row, err in iter_rows(path):
        bar.update()
        if err is not None:
            builder.error(err)
            continue
        try:
            parsed = parse(where, expect_object(row, where))
        except InputError as e:
            builder.error(e)
            continue
        yield where, parsed


def nonempty(items: list[Any], where: Where, field: str) -> list[Any]:
    if not items:
        raise where.error("no positives (an example needs at least one)", field)
    return items


def expect_object(row: Any, where: Where) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise where.error(f"expected a JSON object, got {type_name(row)}")
    return row


def req_str(row: dict[str, Any], key: str, where: Where, *, allow_empty: bool = True) -> str:
    if key not in row:
        raise where.error("missing", key)
    v = row[key]
    if not isinstance(v, str):
        raise where.error(f"expected a string, got {type_name(v)}", key)
    if not allow_empty and not v.strip():
        raise where.error("is empty", key)
    return v


def opt_str(row: dict[str, Any], key: str, where: Where) -> str | None:
    v = row.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise where.error(f"expected a string, got {type_name(v)}", key)
    return v


def req_list(row: dict[str, Any], key: str, where: Where, *, what: str = "strings") -> list[Any]:
    if key not in row:
        raise where.error("missing", key)
    v = row[key]
    if isinstance(v, str):
        raise where.error(
            f"expected a list of {what}, got a string (a string here would be read as one "
            "passage per character)",
            key,
        )
    if not isinstance(v, list):
        raise where.error(f"expected a list of {what}, got {type_name(v)}", key)
    return v


def req_str_list(row: dict[str, Any], key: str, where: Where) -> list[str]:
    v = req_list(row, key, where)
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise where.error(f"expected a string, got {type_name(s)}", f"{key}[{i}]")
    return v


def opt_scores(row: dict[str, Any], key: str, n: int, where: Where) -> list[float] | None:
    if key not in row or row[key] is None:
        return None
    v = req_list(row, key, where, what="numbers")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise where.error(f"expected a number, got {type_name(x)}", f"{key}[{i}]")
    if len(v) != n:
        raise where.error(f"has {len(v)} scores for {n} passages", key)
    return [float(x) for x in v]


def extras(row: dict[str, Any], known: set[str] | frozenset[str]) -> dict[str, Any] | None:
    e = {k: v for k, v in row.items() if k not in known}
    return e or None


def default_subset(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    for suf in (".jsonl.gz", ".jsonl", ".json", ".parquet", ".pq"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def score_out(x: float, as_int: bool) -> float | int:
    """Scores come back as integers when every score of the input was an integer."""
    return int(x) if as_int and float(x).is_integer() and abs(x) < 2**53 else x


class IntScores:
    """Tracks whether every score seen was written as an integer (so export can do the same)."""

    def __init__(self) -> None:
        self.all_int = True
        self.any = False

    def see(self, *lists: Any) -> None:
        if not self.all_int:
            return
        for v in lists:
            if isinstance(v, list):
                for x in v:
                    self.any = True
                    if not isinstance(x, int):
                        self.all_int = False
                        return


class PassageLookup:
    """Column access to the passages of a collection by pid."""

    def __init__(self, coll: Collection) -> None:
        p = coll.passages
        self.docid = p["docid"].combine_chunks()
        self.title = p["title"].combine_chunks()
        self.text = p["text"].combine_chunks()
        self.extra = p["extra"].combine_chunks()
        self.content_hash = p["content_hash"].combine_chunks()

    def rows(self, pids: np.ndarray) -> list[tuple[str | None, str | None, str, str | None]]:
        sel = pa.array(pids, pa.uint32())
        return list(
            zip(
                self.docid.take(sel).to_pylist(),
                self.title.take(sel).to_pylist(),
                self.text.take(sel).to_pylist(),
                self.extra.take(sel).to_pylist(),
                strict=True,
            )
        )

    def synthetic_docids(self, pids: np.ndarray) -> list[str]:
        """Stable ids for passages that had none (BGE): 'h' + 16 hex chars of the content hash."""
        hashes = self.content_hash.take(pa.array(pids, pa.uint32())).to_pylist()
        return ["h" + h[:8].hex() for h in hashes]


@dataclass
class ExampleView:
    qid: int
    query: str
    query_id: str | None
    subset: str
    query_extra: dict[str, Any]
    positives: list[tuple[str | None, str | None, str, str | None]]
    negatives: list[tuple[str | None, str | None, str, str | None]]
    pos_pids: list[int]
    neg_pids: list[int]
    pos_scores: list[float] | None
    neg_scores: list[float] | None
    extra: dict[str, Any]
    source: int
    line: int


def iter_examples(coll: Collection, batch_size: int = 10_000) -> Iterator[ExampleView]:
    """Every example with its query and passages resolved, in collection order."""
    lookup = PassageLookup(coll)
    q = coll.queries
    q_text = q["text"].combine_chunks()
    q_id = q["query_id"].combine_chunks()
    q_subset = q["subset"].combine_chunks()
    q_extra = q["extra"].combine_chunks()
    for batch in coll.iter_example_batches(batch_size):
        qids = batch["qid"].to_numpy()
        sel = pa.array(qids)
        texts = q_text.take(sel).to_pylist()
        ids = q_id.take(sel).to_pylist()
        subsets = q_subset.take(sel).to_pylist()
        qextras = q_extra.take(sel).to_pylist()
        pos = batch["positives"].combine_chunks()
        neg = batch["negatives"].combine_chunks()
        pos_flat = pos.values.to_numpy()
        neg_flat = neg.values.to_numpy()
        pos_off = pos.offsets.to_numpy()
        neg_off = neg.offsets.to_numpy()
        pos_rows = lookup.rows(pos_flat)
        neg_rows = lookup.rows(neg_flat)
        ps = batch["pos_scores"].to_pylist()
        ns = batch["neg_scores"].to_pylist()
        ex = batch["extra"].to_pylist()
        src = batch["source"].to_pylist()
        line = batch["line"].to_pylist()
        for i in range(len(batch)):
            a, b = pos_off[i], pos_off[i + 1]
            c, d = neg_off[i], neg_off[i + 1]
            yield ExampleView(
                qid=int(qids[i]),
                query=texts[i],
                query_id=ids[i],
                subset=subsets[i],
                query_extra=parse_extra(qextras[i]),
                positives=pos_rows[a:b],
                negatives=neg_rows[c:d],
                pos_pids=pos_flat[a:b].tolist(),
                neg_pids=neg_flat[c:d].tolist(),
                pos_scores=ps[i],
                neg_scores=ns[i],
                extra=parse_extra(ex[i]),
                source=src[i],
                line=line[i],
            )


def write_corpus(coll: Collection, path: Path, id_field: str) -> list[str]:
    """Every passage as a corpus JSON line ``{<id_field>, title?, text, ...extra}``, in pid order;
    returns the docid of each pid (synthetic for passages that had none)."""
    from trueneg._io import atomic_file, dumps_line

    lookup = PassageLookup(coll)
    all_pids = np.arange(len(coll.passages), dtype=np.uint32)
    synthetic = lookup.synthetic_docids(all_pids)
    ids = []
    with atomic_file(path) as f:
        for pid, (docid, title, text, extra) in enumerate(lookup.rows(all_pids)):
            did = docid if docid is not None else synthetic[pid]
            ids.append(did)
            row: dict[str, Any] = {id_field: did}
            if title is not None:
                row["title"] = title
            row["text"] = text
            row.update(parse_extra(extra))
            f.write(dumps_line(row))
    return ids
