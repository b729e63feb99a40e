"""Reading a collection: :class:`Collection`, memory-mapped tables, :meth:`Collection.derive` for
every stage that writes a new one, and the Hugging Face / Arrow / pandas views."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trueneg._io import atomic_dir, atomic_file
from trueneg.collection.manifest import step_record, write_manifest
from trueneg.collection.schema import (
    EXAMPLE_SCHEMA,
    FORMAT_NAME,
    FORMAT_VERSION,
    PASSAGE_SCHEMA,
    QUERY_SCHEMA,
    parquet_options,
)
from trueneg.exceptions import CollectionError

# ---------------------------------------------------------------------------------------------
# Reading


_TABLES = (("passages", PASSAGE_SCHEMA), ("queries", QUERY_SCHEMA), ("examples", EXAMPLE_SCHEMA))


class Collection:
    """A collection on disk. Tables are memory-mapped on first use; heavy work goes through the
    Arrow tables and numpy."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._tables: dict[str, pa.Table] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Collection:
        """Open a collection: checks the manifest and the three files' schemas, reads no rows."""
        p = Path(path)
        mf = p / "manifest.json"
        if not mf.is_file():
            raise CollectionError(f"{p}: not a trueneg collection (no manifest.json)")
        try:
            manifest = orjson.loads(mf.read_bytes())
        except orjson.JSONDecodeError as e:
            raise CollectionError(f"{mf}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise CollectionError(f"{mf}: not a trueneg collection manifest")
        if manifest.get("version") != FORMAT_VERSION:
            raise CollectionError(
                f"{mf}: collection version {manifest.get('version')} is not supported "
                f"(this trueneg reads version {FORMAT_VERSION})"
            )
        for name, schema in _TABLES:
            f = p / f"{name}.parquet"
            if not f.is_file():
                raise CollectionError(f"{p}: {name}.parquet is missing")
            try:
                got = pq.read_schema(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise CollectionError(f"{f}: unreadable ({e})") from None
            if not got.equals(schema):
                raise CollectionError(f"{f}: unexpected schema {got}")
        return cls(p, manifest)

    def _table(self, name: str) -> pa.Table:
        t = self._tables.get(name)
        if t is None:
            t = pq.read_table(self.path / f"{name}.parquet", memory_map=True)
            key = {"passages": "pid", "queries": "qid"}.get(name)
            if key and len(t) and not np.array_equal(t[key].to_numpy(), np.arange(len(t))):
                t = t.sort_by(key)
            self._tables[name] = t
        return t

    @property
    def passages(self) -> pa.Table:
        return self._table("passages")

    @property
    def queries(self) -> pa.Table:
        return self._table("queries")

    @property
    def examples(self) -> pa.Table:
        return self._table("examples")

    @property
    def source_format(self) -> str:
        return str(self.manifest["source"]["format"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.manifest["source"].get("options", {}))

    def __len__(self) -> int:
        return int(self.manifest["counts"]["examples"])

    def iter_example_batches(self, batch_size: int = 10_000) -> Iterator[pa.Table]:
        ex = self.examples
        for off in range(0, len(ex), batch_size):
            yield ex.slice(off, batch_size)

    def source_path(self, index: int) -> str:
        return str(self.manifest["source"]["files"][index]["path"])

    def derive(
        self,
        out: str | os.PathLike[str],
        examples: pa.Table,
        *,
        step: str,
        params: dict[str, Any] | None = None,
        tables: dict[str, pa.Table] | None = None,
        files: dict[str, bytes] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike[str]] = (),
        link: bool = False,
    ) -> Collection:
        """A new collection at ``out`` that shares this one's passages and queries with new
        ``examples`` (the table itself when unchanged: copied, not rewritten), extra Parquet
        ``tables`` (``judgments``, ``band``) and ``files`` (reports), the manifest's counts
        updated and ``step`` recorded with ``params``. Atomic; ``out`` is checked against this
        collection and ``inputs`` (see :func:`trueneg._io.atomic_dir`). ``link``: passages and
        queries are hard links to this collection's files where the file system allows (trueneg
        replaces files, never edits them, so a link never sees a change), else copies."""
        with atomic_dir(out, overwrite=overwrite, inputs=[self.path, *inputs]) as tmp:
            for name in ("passages", "queries"):
                src, dst = self.path / f"{name}.parquet", tmp / f"{name}.parquet"
                try:
                    if not link:
                        raise OSError
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            if examples is self.examples:
                shutil.copyfile(self.path / "examples.parquet", tmp / "examples.parquet")
            else:
                pq.write_table(examples, tmp / "examples.parquet", **parquet_options())
            for name, table in (tables or {}).items():
                pq.write_table(table, tmp / f"{name}.parquet", **parquet_options())
            for name, data in (files or {}).items():
                with atomic_file(tmp / name) as fh:
                    fh.write(data)
            manifest = dict(self.manifest)
            manifest["counts"] = {**manifest["counts"], "examples": len(examples)}
            manifest["steps"] = [*manifest.get("steps", []), step_record(step, **(params or {}))]
            write_manifest(tmp, manifest)
        return Collection.load(out)

    def __repr__(self) -> str:
        c = self.manifest.get("counts", {})
        return (
            f"Collection({str(self.path)!r}: {c.get('examples', 0):,} examples, "
            f"{c.get('queries', 0):,} queries, {c.get('passages', 0):,} passages, "
            f"from {self.source_format})"
        )

    # -- Hugging Face datasets, Arrow, pandas (extra "hf") ---------------------------------

    @classmethod
    def from_hf(
        cls,
        dataset: Any,
        out: str | os.PathLike[str],
        *,
        format: str = "auto",
        corpus: Any = None,
        subset: str | None = None,
        overwrite: bool = False,
    ) -> Collection:
        """A ``datasets.Dataset`` (any format trueneg reads) as a new collection at ``out``;
        see :func:`trueneg.hf.from_hf`."""
        from trueneg.hf import from_hf

        return from_hf(
            dataset, out, format=format, corpus=corpus, subset=subset, overwrite=overwrite
        )

    def to_hf(self, format: str = "st") -> Any:
        """The collection as a ``datasets.Dataset`` of ``format`` rows (st, bge, tevatron): what
        ``trueneg export`` writes."""
        from trueneg.hf import to_hf

        return to_hf(self, format)

    def to_arrow(self, format: str = "st") -> pa.Table:
        """The collection as a ``pyarrow.Table`` of ``format`` rows."""
        from trueneg.hf import to_arrow

        return to_arrow(self, format)

    def to_pandas(self, format: str = "st") -> Any:
        """The collection as a pandas ``DataFrame`` of ``format`` rows."""
        return self.to_arrow(format).to_pandas()
