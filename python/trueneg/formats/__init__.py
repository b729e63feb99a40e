"""Readers and writers for the external training-data formats, and format detection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trueneg._io import atomic_dir, check_output, iter_jsonl, prepare_output
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import FormatError, InputError
from trueneg.formats import beir, bge, sentence_transformers, tevatron, tevatron_v2
from trueneg.formats._common import is_parquet

__all__ = ["FORMATS", "detect_format", "export_collection", "ingest"]

#: canonical name -> aliases accepted on the command line
FORMATS: dict[str, tuple[str, ...]] = {
    "bge": ("flagembedding",),
    "tevatron": ("rlhn", "tevatron-legacy"),
    "tevatron-v2": (),
    "st": ("sentence-transformers",),
    "beir": (),
}


def canonical_format(name: str) -> str:
    n = name.strip().lower()
    for canon, aliases in FORMATS.items():
        if n == canon or n in aliases:
            return canon
    known = ", ".join(FORMATS)
    raise FormatError(f"unknown format {name!r} (known: {known})")


def _columns_of(path: str | os.PathLike[str]) -> list[str]:
    if is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(
                f"not a readable Parquet file ({str(e).split('.')[0]})", path=str(path)
            ) from None
    for _, row, err in iter_jsonl(path):
        if err is not None:
            raise err
        if isinstance(row, dict):
            return list(row)
        return []
    return []


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the format of a file or folder from its first row's fields."""
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=str(p))
    if p.is_dir():
        if beir.is_beir_dir(p):
            return "beir"
        raise FormatError(
            f"{p}: a folder that is not a BEIR set (corpus.jsonl, queries.jsonl, qrels/)"
        )
    cols = set(_columns_of(p))
    if {"pos", "query"} <= cols:
        return "bge"
    if "positive_passages" in cols:
        return "tevatron"
    if "positive_document_ids" in cols:
        return "tevatron-v2"
    if "anchor" in cols or ("positive" in cols and len(cols) >= 2):
        return "st"
    raise FormatError(
        f"{p}: cannot tell the format from the fields {sorted(cols)}; pass format=NAME "
        f"({', '.join(FORMATS)})"
    )


def ingest(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    format: str = "auto",
    subset: str | None = None,
    corpus: str | os.PathLike[str] | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    chunk_size: int = 50_000,
) -> Collection:
    """Read external files into a new collection directory at ``out`` and load it. An input may
    also be a ``datasets`` ``save_to_disk`` folder (extra ``hf``)."""
    if not inputs:
        raise InputError("no input files given")
    prepare_output(out, [*inputs, corpus], overwrite=overwrite)
    from trueneg import hf

    if any(hf.is_saved_dataset(p) for p in [*inputs, *([corpus] if corpus else [])]):
        return _ingest_saved_datasets(
            inputs, out, format=format, subset=subset, corpus=corpus, on_error=on_error,
            overwrite=overwrite, chunk_size=chunk_size,
        )  # fmt: skip
    fmt = canonical_format(format) if format != "auto" else detect_format(inputs[0])
    with CollectionBuilder(
        out,
        source_format=fmt,
        on_error=on_error,
        chunk_size=chunk_size,
        overwrite=overwrite,
        inputs=[*inputs, corpus],
    ) as b:
        if fmt == "bge":
            bge.read(b, inputs, subset=subset)
        elif fmt == "tevatron":
            tevatron.read(b, inputs, subset=subset)
        elif fmt == "tevatron-v2":
            tevatron_v2.read(b, inputs, corpus=corpus, subset=subset)
        elif fmt == "st":
            sentence_transformers.read(b, inputs, subset=subset)
        elif fmt == "beir":
            if len(inputs) != 1:
                raise InputError("the beir format takes one folder")
            beir.read(b, inputs[0], subset=subset)
        b.flush()
        if b.counts["examples"] == 0:
            raise InputError(
                f"no valid examples in {', '.join(map(str, inputs))}"
                + (f" ({b.skipped.count} rows skipped)" if b.skipped.count else "")
            )
    return Collection.load(out)


#: formats written as a folder (the others as one file)
FOLDER_FORMATS = ("beir", "tevatron-v2")
#: file formats that may be written as Parquet (a ``.parquet`` out); the others are JSON Lines
PARQUET_FORMATS = ("tevatron", "st")
COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".xz")


def _ingest_saved_datasets(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    corpus: str | os.PathLike[str] | None,
    **kw: Any,
) -> Collection:
    """Inputs that are ``save_to_disk`` folders, read through Parquet copies (the manifest names
    the folders)."""
    import tempfile

    from trueneg import hf
    from trueneg.collection import write_manifest

    with tempfile.TemporaryDirectory(prefix="trueneg-hf-") as tmp:
        names: dict[str, str] = {}

        def local(p: str | os.PathLike[str]) -> str:
            if not hf.is_saved_dataset(p):
                return str(p)
            f = Path(tmp) / f"{Path(p).name}.parquet"
            hf.load_saved(p).to_parquet(str(f))
            names[str(f)] = str(p)
            return str(f)

        files = [local(p) for p in inputs]
        coll = ingest(files, out, corpus=local(corpus) if corpus else None, **kw)
    m = dict(coll.manifest)
    m["source"] = {
        **m["source"],
        "files": [{**f, "path": names.get(f["path"], f["path"])} for f in m["source"]["files"]],
    }
    write_manifest(coll.path, m)
    return Collection.load(coll.path)


def export_collection(
    coll: Collection, format: str, out: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write a collection in an external format (a file, or a folder for beir / tevatron-v2).

    The output may not be the collection, lie inside it, or be one of the files it was ingested
    from; an existing output is replaced only with ``overwrite`` (a folder only when trueneg
    wrote it). The suffix must fit the format: ``.parquet`` for Parquet (tevatron, st), anything
    else is JSON Lines; a folder format takes a folder."""
    fmt = canonical_format(format)
    writer = {
        "bge": bge.write,
        "tevatron": tevatron.write,
        "tevatron-v2": tevatron_v2.write,
        "st": sentence_transformers.write,
        "beir": beir.write,
    }[fmt]
    p = Path(out)
    sources = [f.get("path") for f in coll.manifest.get("source", {}).get("files", [])]
    inputs = [coll.path, *[s for s in sources if s]]
    if fmt in FOLDER_FORMATS:
        if p.suffix.lower() in (".jsonl", ".json", ".parquet", *COMPRESSED_SUFFIXES):
            raise InputError(f"{out}: the {fmt} format is a folder, not a {p.suffix} file")
        with atomic_dir(p, overwrite=overwrite, inputs=inputs) as tmp:
            writer(coll, tmp)
        return
    check_output(p, inputs)
    if p.suffix.lower() in COMPRESSED_SUFFIXES:
        raise InputError(f"{out}: compressed output is not written; write {p.stem} and compress it")
    if is_parquet(p) and fmt not in PARQUET_FORMATS:
        raise InputError(
            f"{out}: the {fmt} format is written as JSON Lines, not Parquet: use a .jsonl name"
            f" (Parquet: {', '.join(PARQUET_FORMATS)})"
        )
    if p.is_dir():
        raise InputError(f"{out} is a folder; the {fmt} format is one file")
    if p.exists() and not overwrite:
        raise InputError(f"{out} exists (pass overwrite=True to replace it)")
    writer(coll, p)
