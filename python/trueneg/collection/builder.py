"""Building a collection: :class:`CollectionBuilder` streams examples in, interning passages
and queries by content in Rust, and writes the directory atomically."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trueneg import _core
from trueneg._io import atomic_dir
from trueneg.collection.manifest import step_record, write_manifest
from trueneg.collection.schema import (
    EXAMPLE_SCHEMA,
    FORMAT_NAME,
    FORMAT_VERSION,
    PASSAGE_SCHEMA,
    QUERY_SCHEMA,
    hash_columns,
    keys_to_binary,
    parquet_options,
)
from trueneg.exceptions import InputError

# ---------------------------------------------------------------------------------------------
# Building


def _json_or_none(d: dict[str, Any] | None) -> str | None:
    return orjson.dumps(d).decode() if d else None


@dataclass
class SourceFile:
    path: str
    subset: str | None = None
    role: str = "examples"

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "role": self.role}
        if self.subset is not None:
            d["subset"] = self.subset
        try:
            st = os.stat(self.path)
            d["bytes"] = st.st_size
        except OSError:
            pass
        return d


@dataclass
class Skipped:
    """Rows left out under ``on_error="skip"``: a count and the first messages."""

    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, err: InputError) -> None:
        self.count += 1
        if len(self.first) < 20:
            self.first.append(str(err))


class CollectionBuilder:
    """Streams examples into a new collection directory, interning as it goes.

    Two ways to give passages: inline (``add_example`` with passage tuples: BGE, Tevatron legacy,
    sentence-transformers) or by docid after a corpus was added (``add_corpus_passage`` then
    ``add_example_refs``: Tevatron v2, BEIR). Queries likewise: inline text, or by id after
    ``add_query``. Memory is bounded by ``chunk_size`` pending examples plus the interners.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        source_format: str,
        on_error: str = "fail",
        chunk_size: int = 50_000,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike[str] | None] = (),
    ) -> None:
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        self.out_dir = Path(out_dir)
        self.source_format = source_format
        self.on_error = on_error
        self.chunk_size = chunk_size
        self.overwrite = overwrite
        self.inputs = list(inputs)
        self.sources: list[SourceFile] = []
        self.options: dict[str, Any] = {}
        self.skipped = Skipped()
        self.counts = {"examples": 0, "docid_conflicts": 0}
        self._passages = _core.Interner()
        self._docids = _core.Interner()
        self._docid_pid: list[np.ndarray] = []  # docid-interner id -> pid, chunk by chunk
        self._docid_pid_flat = np.zeros(0, np.uint32)
        self._queries = _core.Interner()
        self._reset_pending()
        self._ctx: Any = None
        self._tmp: Path | None = None
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> CollectionBuilder:
        self._ctx = atomic_dir(self.out_dir, overwrite=self.overwrite, inputs=self.inputs)
        self._tmp = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.flush()
                self._finish()
        except BaseException as e:
            with contextlib.suppress(BaseException):
                self._close_writers()
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        try:
            self._close_writers()
        except BaseException as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        self._ctx.__exit__(exc_type, exc, tb)

    def add_source(
        self, path: str | os.PathLike[str], subset: str | None = None, role: str = "examples"
    ) -> int:
        if len(self.sources) >= 65535:
            raise InputError("too many source files (at most 65,535)")
        self.sources.append(SourceFile(str(path), subset, role))
        return len(self.sources) - 1

    def error(self, err: InputError) -> None:
        """Fail now, or count the row as skipped, per ``on_error``."""
        if self.on_error == "fail":
            raise err
        self.skipped.add(err)

    # -- pending buffers ------------------------------------------------------------------

    def _reset_pending(self) -> None:
        self._p_docid: list[str | None] = []
        self._p_title: list[str | None] = []
        self._p_text: list[str] = []
        self._p_extra: list[str | None] = []
        self._p_where: list[tuple[int, int]] = []  # (source, line) of corpus passages
        self._refs: list[str] = []
        self._q_id: list[str | None] = []
        self._q_text: list[str | None] = []
        self._q_subset: list[str] = []
        self._q_extra: list[str | None] = []
        self._pos_n: list[int] = []
        self._neg_n: list[int] = []
        self._pos_scores: list[list[float] | None] = []
        self._neg_scores: list[list[float] | None] = []
        self._extra: list[str | None] = []
        self._source: list[int] = []
        self._line: list[int] = []
        self._ref_mode = False
        # queries added on their own (BEIR queries.jsonl)
        self._oq_id: list[str] = []
        self._oq_text: list[str] = []
        self._oq_subset: list[str] = []
        self._oq_extra: list[str | None] = []

    def add_example(
        self,
        *,
        query: str | None,
        subset: str,
        positives: Sequence[tuple[str | None, str | None, str, dict[str, Any] | None]],
        negatives: Sequence[tuple[str | None, str | None, str, dict[str, Any] | None]],
        query_id: str | None = None,
        query_extra: dict[str, Any] | None = None,
        pos_scores: list[float] | None = None,
        neg_scores: list[float] | None = None,
        extra: dict[str, Any] | None = None,
        source: int = 0,
        line: int = 0,
    ) -> None:
        """One example with inline passages given as (docid, title, text, extra) tuples."""
        for docid, title, text, pextra in (*positives, *negatives):
            self._p_docid.append(docid)
            self._p_title.append(title)
            self._p_text.append(text)
            self._p_extra.append(_json_or_none(pextra))
        self._push_example(
            query,
            query_id,
            subset,
            query_extra,
            len(positives),
            len(negatives),
            pos_scores,
            neg_scores,
            extra,
            source,
            line,
        )

    def add_example_refs(
        self,
        *,
        query: str | None,
        subset: str,
        positive_docids: Sequence[str],
        negative_docids: Sequence[str],
        query_id: str | None = None,
        query_extra: dict[str, Any] | None = None,
        pos_scores: list[float] | None = None,
        neg_scores: list[float] | None = None,
        extra: dict[str, Any] | None = None,
        source: int = 0,
        line: int = 0,
    ) -> None:
        """One example whose passages are docids of the corpus added before.

        ``query=None`` refers to a query added with `add_query` (by ``query_id``)."""
        self._ref_mode = True
        self._refs.extend(positive_docids)
        self._refs.extend(negative_docids)
        self._push_example(
            query,
            query_id,
            subset,
            query_extra,
            len(positive_docids),
            len(negative_docids),
            pos_scores,
            neg_scores,
            extra,
            source,
            line,
        )

    def _push_example(
        self,
        query: str | None,
        query_id: str | None,
        subset: str,
        query_extra: dict[str, Any] | None,
        npos: int,
        nneg: int,
        pos_scores: list[float] | None,
        neg_scores: list[float] | None,
        extra: Any,
        source: int,
        line: int,
    ) -> None:
        self._q_id.append(query_id)
        self._q_text.append(query)
        self._q_subset.append(subset)
        self._q_extra.append(_json_or_none(query_extra))
        self._pos_n.append(npos)
        self._neg_n.append(nneg)
        self._pos_scores.append(pos_scores)
        self._neg_scores.append(neg_scores)
        self._extra.append(_json_or_none(extra))
        self._source.append(source)
        self._line.append(line)
        if len(self._pos_n) >= self.chunk_size:
            self.flush()

    def add_corpus_passage(
        self,
        docid: str,
        title: str | None,
        text: str,
        extra: dict[str, Any] | None = None,
        *,
        source: int = 0,
        line: int = 0,
    ) -> None:
        """A corpus passage, referred to later by docid; a docid may appear once."""
        self._p_where.append((source, line))
        self._p_docid.append(docid)
        self._p_title.append(title)
        self._p_text.append(text)
        self._p_extra.append(_json_or_none(extra))
        if len(self._p_text) >= self.chunk_size * 4 and not self._pos_n:
            self._flush_passages_only()

    def add_query(
        self, query_id: str, text: str, subset: str, extra: dict[str, Any] | None = None
    ) -> None:
        """A query known by id (BEIR queries.jsonl); examples refer to it with ``query=None``."""
        self._oq_id.append(query_id)
        self._oq_text.append(text)
        self._oq_subset.append(subset)
        self._oq_extra.append(_json_or_none(extra))

    # -- flushing -------------------------------------------------------------------------

    def _write(self, name: str, schema: pa.Schema, table: pa.Table) -> None:
        """Queue a table for the writer thread (Parquet encoding overlaps the next chunk's parse)."""
        if self._tmp is None:
            raise RuntimeError("CollectionBuilder must be used as a context manager")
        if self._writer_error is not None:
            raise self._writer_error
        if self._thread is None:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(
                target=self._writer_loop, name="trueneg-parquet", daemon=True
            )
            self._thread.start()
        self._queue.put((name, schema, table))

    def _writer_loop(self) -> None:
        assert self._tmp is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._writer_error is not None:
                continue
            name, schema, table = item
            try:
                w = self._writers.get(name)
                if w is None:
                    w = pq.ParquetWriter(self._tmp / f"{name}.parquet", schema, **parquet_options())
                    self._writers[name] = w
                w.write_table(table)
            except BaseException as e:  # reported on the next _write or at close
                self._writer_error = e

    def _close_writers(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        if self._writer_error is not None:
            err, self._writer_error = self._writer_error, None
            raise err

    def _intern_passages(
        self,
        docid: pa.Array,
        title: pa.Array,
        text: pa.Array,
        extra: pa.Array,
        where: list[tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """Intern passages, write the new ones, return the pid of each.

        With ``where`` (the (source, line) of each row of a corpus file) a docid seen twice is an
        input error."""
        if len(text) == 0:
            return np.zeros(0, np.uint32)
        keys = hash_columns(docid, title, text, extra)
        pids, is_new, _ = self._passages.intern(keys)
        if where is not None and not is_new.all():
            self._corpus_duplicate(docid, where, int(np.flatnonzero(~is_new)[0]))
        if is_new.any():
            idx = np.flatnonzero(is_new)
            sel = pa.array(idx)
            new_title, new_text = title.take(sel), text.take(sel)
            content = keys_to_binary(hash_columns(new_title, new_text))
            new_docid = docid.take(sel)
            tbl = pa.Table.from_arrays(
                [
                    pa.array(pids[idx], pa.uint32()),
                    new_docid,
                    new_title,
                    new_text,
                    extra.take(sel),
                    content,
                ],
                schema=PASSAGE_SCHEMA,
            )
            self._write("passages", PASSAGE_SCHEMA, tbl)
            # docid index: docid -> first pid that carried it
            if new_docid.null_count < len(new_docid):
                has_docid = ~new_docid.is_null().to_numpy(zero_copy_only=False)
                d_idx = np.flatnonzero(has_docid)
                dkeys = hash_columns(new_docid.take(pa.array(d_idx)))
                _, d_new, _ = self._docids.intern(dkeys)
                if where is not None and not d_new.all():
                    self._corpus_duplicate(docid, where, int(idx[d_idx[np.flatnonzero(~d_new)[0]]]))
                self.counts["docid_conflicts"] += int((~d_new).sum())
                if d_new.any():
                    self._docid_pid.append(pids[idx][d_idx][d_new].astype(np.uint32))
        return pids

    def _corpus_duplicate(self, docid: pa.Array, where: list[tuple[int, int]], i: int) -> None:
        src, line = where[i]
        raise InputError(
            f"docid {docid[i].as_py()!r} appears more than once in the corpus",
            path=self.sources[src].path if self.sources else None,
            line=line,
            field="docid",
        )

    def _pending_passages(self) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
        return (
            pa.array(self._p_docid, pa.string()),
            pa.array(self._p_title, pa.string()),
            pa.array(self._p_text, pa.string()),
            pa.array(self._p_extra, pa.string()),
        )

    def _flush_passages_only(self) -> None:
        if self._p_text:
            self._intern_passages(*self._pending_passages(), where=self._p_where or None)
        self._p_docid, self._p_title, self._p_text, self._p_extra = [], [], [], []
        self._p_where = []

    def _docid_to_pid(self) -> np.ndarray:
        if self._docid_pid:
            self._docid_pid_flat = np.concatenate([self._docid_pid_flat, *self._docid_pid])
            self._docid_pid = []
        return self._docid_pid_flat

    def _flush_queries_only(self) -> None:
        if not self._oq_id:
            return
        subset = pa.array(self._oq_subset, pa.string())
        qid_col = pa.array(self._oq_id, pa.string())
        text = pa.array(self._oq_text, pa.string())
        extra = pa.array(self._oq_extra, pa.string())
        keys = hash_columns(pa.array(["i"] * len(qid_col)), subset, qid_col)
        qids, is_new, _ = self._queries.intern(keys, hash_columns(text, extra))
        if not is_new.all():
            dup = int(np.flatnonzero(~is_new)[0])
            raise InputError(f"duplicate query id {self._oq_id[dup]!r}", field="_id")
        self._write(
            "queries",
            QUERY_SCHEMA,
            pa.Table.from_arrays(
                [pa.array(qids, pa.uint32()), qid_col, text, subset, extra], schema=QUERY_SCHEMA
            ),
        )
        self._oq_id, self._oq_text, self._oq_subset, self._oq_extra = [], [], [], []

    def flush(self) -> None:
        """Intern and write everything pending."""
        self._flush_queries_only()
        if not self._pos_n:
            self._flush_passages_only()
            return
        refs = None
        passages = None
        if self._ref_mode:
            self._flush_passages_only()
            refs = pa.array(self._refs, pa.string())
        else:
            passages = self._pending_passages()
        self._emit(
            q_id=pa.array(self._q_id, pa.string()),
            q_text=pa.array(self._q_text, pa.string()),
            q_subset=pa.array(self._q_subset, pa.string()),
            q_extra=pa.array(self._q_extra, pa.string()),
            passages=passages,
            refs=refs,
            pos_n=np.asarray(self._pos_n, np.int64),
            neg_n=np.asarray(self._neg_n, np.int64),
            pos_scores=pa.array(self._pos_scores, pa.list_(pa.float64())),
            neg_scores=pa.array(self._neg_scores, pa.list_(pa.float64())),
            extra=pa.array(self._extra, pa.string()),
            source=np.asarray(self._source, np.int64),
            line=np.asarray(self._line, np.int64),
        )
        self._reset_pending()

    def add_examples_columns(
        self,
        *,
        query: pa.Array,
        subset: str,
        passages: pa.Array,
        pos_n: np.ndarray,
        neg_n: np.ndarray,
        pos_scores: pa.Array,
        neg_scores: pa.Array,
        extra: pa.Array,
        source: int,
        line: np.ndarray,
    ) -> None:
        """A whole chunk of examples with inline, id-less passages, already in columns
        (the fast BGE path): passages hold each example's positives then its negatives."""
        self.flush()
        n = len(query)
        m = len(passages)
        nulls = pa.nulls(m, pa.string())
        self._emit(
            q_id=pa.nulls(n, pa.string()),
            q_text=query,
            q_subset=pa.repeat(pa.scalar(subset, pa.string()), n),
            q_extra=pa.nulls(n, pa.string()),
            passages=(nulls, nulls, passages, nulls),
            refs=None,
            pos_n=np.asarray(pos_n, np.int64),
            neg_n=np.asarray(neg_n, np.int64),
            pos_scores=pos_scores,
            neg_scores=neg_scores,
            extra=extra,
            source=np.full(n, source, np.int64),
            line=np.asarray(line, np.int64),
        )

    def _example_error(
        self, message: str, source: np.ndarray, line: np.ndarray, e: int, field: str
    ) -> None:
        self.error(
            InputError(
                message, path=self.sources[int(source[e])].path, line=int(line[e]), field=field
            )
        )

    def _emit(
        self,
        *,
        q_id: pa.Array,
        q_text: pa.Array,
        q_subset: pa.Array,
        q_extra: pa.Array,
        passages: tuple[pa.Array, pa.Array, pa.Array, pa.Array] | None,
        refs: pa.Array | None,
        pos_n: np.ndarray,
        neg_n: np.ndarray,
        pos_scores: pa.Array,
        neg_scores: pa.Array,
        extra: pa.Array,
        source: np.ndarray,
        line: np.ndarray,
    ) -> None:
        """Intern one chunk of examples given as columns and write it."""
        n = len(pos_n)
        keep = np.ones(n, bool)

        # passages
        if refs is not None:
            if len(refs):
                found = self._docids.lookup(hash_columns(refs))
                missing = np.flatnonzero(found < 0)
                if len(missing):
                    ex_of_ref = np.repeat(np.arange(n), pos_n + neg_n)
                    for m in missing:
                        e = int(ex_of_ref[m])
                        if keep[e]:
                            keep[e] = False
                            self._example_error(
                                f"docid {refs[int(m)].as_py()!r} is not in the corpus",
                                source,
                                line,
                                e,
                                "document ids",
                            )
                    found = np.where(found < 0, 0, found)
                pids = self._docid_to_pid()[found].astype(np.uint32)
            else:
                pids = np.zeros(0, np.uint32)
        else:
            assert passages is not None
            pids = self._intern_passages(*passages).astype(np.uint32)

        # queries: by (subset, query_id) when there is an id, else by (subset, text)
        has_id = q_id.null_count < n
        inline = q_text.null_count == 0
        if has_id:
            if q_id.null_count:
                raise InputError("a chunk mixes queries with and without ids")  # pragma: no cover
            keys = hash_columns(pa.repeat(pa.scalar("i"), n), q_subset, q_id)
        else:
            keys = hash_columns(pa.repeat(pa.scalar("t"), n), q_subset, q_text)
        if inline:
            qids, is_new, conflict = self._queries.intern(keys, hash_columns(q_text, q_extra))
            for e in np.flatnonzero(conflict).tolist():
                if keep[e]:
                    keep[e] = False
                    self._example_error(
                        f"query id {q_id[int(e)].as_py()!r} was seen before with a different text",
                        source,
                        line,
                        int(e),
                        "query_id",
                    )
            if is_new.any():
                idx = np.flatnonzero(is_new)
                sel = pa.array(idx)
                self._write(
                    "queries",
                    QUERY_SCHEMA,
                    pa.Table.from_arrays(
                        [
                            pa.array(qids[idx], pa.uint32()),
                            q_id.take(sel),
                            q_text.take(sel),
                            q_subset.take(sel),
                            q_extra.take(sel),
                        ],
                        schema=QUERY_SCHEMA,
                    ),
                )
        elif q_text.null_count == n:
            found = self._queries.lookup(keys)
            for e in np.flatnonzero(found < 0).tolist():
                if keep[e]:
                    keep[e] = False
                    self._example_error(
                        f"query id {q_id[int(e)].as_py()!r} is not in the queries file",
                        source,
                        line,
                        int(e),
                        "query-id",
                    )
            qids = np.where(found < 0, 0, found).astype(np.uint32)
        else:  # pragma: no cover - formats never mix
            raise RuntimeError("a chunk mixes inline and referenced queries")

        # examples: positives then negatives of each example are contiguous in `pids`
        starts = np.concatenate([[0], np.cumsum(pos_n + neg_n)])[:-1]
        sel_e = np.arange(n) if keep.all() else np.flatnonzero(keep)
        pos_idx = _ranges(starts[sel_e], pos_n[sel_e])
        neg_idx = _ranges(starts[sel_e] + pos_n[sel_e], neg_n[sel_e])
        positives = pa.ListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(pos_n[sel_e])]).astype(np.int32)),
            pa.array(pids[pos_idx], pa.uint32()),
        )
        negatives = pa.ListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(neg_n[sel_e])]).astype(np.int32)),
            pa.array(pids[neg_idx], pa.uint32()),
        )
        take = pa.array(sel_e)
        tbl = pa.Table.from_arrays(
            [
                pa.array(qids[sel_e], pa.uint32()),
                positives,
                negatives,
                pos_scores.take(take),
                neg_scores.take(take),
                extra.take(take),
                pa.array(source[sel_e], pa.uint16()),
                pa.array(line[sel_e], pa.int64()),
            ],
            schema=EXAMPLE_SCHEMA,
        )
        if len(tbl):
            self._write("examples", EXAMPLE_SCHEMA, tbl)
        self.counts["examples"] += len(tbl)

    def _finish(self) -> None:
        assert self._tmp is not None
        self._close_writers()
        for name, schema in (
            ("passages", PASSAGE_SCHEMA),
            ("queries", QUERY_SCHEMA),
            ("examples", EXAMPLE_SCHEMA),
        ):
            if not (self._tmp / f"{name}.parquet").exists():
                pq.write_table(schema.empty_table(), self._tmp / f"{name}.parquet")
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": {
                "format": self.source_format,
                "files": [s.describe() for s in self.sources],
                "options": self.options,
            },
            "counts": {
                "passages": len(self._passages),
                "queries": len(self._queries),
                "examples": self.counts["examples"],
                "docid_conflicts": self.counts["docid_conflicts"],
            },
            "skipped": {"count": self.skipped.count, "first": self.skipped.first},
            "steps": [step_record("ingest", format=self.source_format, on_error=self.on_error)],
        }
        write_manifest(self._tmp, manifest)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each (s, l), vectorised."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out: np.ndarray = np.arange(total, dtype=np.int64) + np.repeat(
        np.asarray(starts, np.int64) - before, lengths
    )
    return out
