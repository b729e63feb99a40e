"""Hugging Face ``datasets`` in and out (extra ``hf``): a ``datasets.Dataset`` in any format trueneg
reads becomes a collection, and a collection becomes a ``Dataset`` (or an Arrow table, a pandas
frame) in any format it writes, row for row what ``trueneg export`` writes. ``trueneg ingest``
also reads a ``Dataset.save_to_disk`` folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from trueneg.exceptions import InputError

if TYPE_CHECKING:
    from trueneg.collection import Collection

#: formats a collection can be turned into rows of (the others are folders: beir, tevatron-v2)
ROW_FORMATS = ("bge", "tevatron", "st")


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError("this needs the datasets package: pip install 'trueneg[hf]'") from None
    return datasets


def is_saved_dataset(path: str | os.PathLike[str]) -> bool:
    """A folder written by ``Dataset.save_to_disk``."""
    p = Path(path)
    return p.is_dir() and (p / "state.json").is_file() and (p / "dataset_info.json").is_file()


def from_hf(
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    format: str = "auto",
    corpus: Any = None,
    subset: str | None = None,
    overwrite: bool = False,
) -> Collection:
    """Ingest a ``datasets.Dataset`` (bge, tevatron / RLHN, tevatron-v2 with ``corpus`` a
    ``Dataset`` of ``{docid, title?, text}``, sentence-transformers pairs / triplets / n-tuples;
    ``format="auto"`` reads it from the columns) into a new collection at ``out``.

    Example::

        >>> from datasets import Dataset
        >>> from trueneg import Collection
        >>> ds = Dataset.from_dict({"anchor": ["a cat"], "positive": ["A cat is a feline."]})
        >>> coll = Collection.from_hf(ds, "cats")  # doctest: +SKIP
        >>> len(coll)  # doctest: +SKIP
        1
    """
    datasets = _datasets()
    if isinstance(dataset, datasets.DatasetDict):
        raise InputError("a DatasetDict holds several splits: pass one, e.g. dataset['train']")
    if not isinstance(dataset, datasets.Dataset):
        raise InputError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    from trueneg.formats import ingest

    name = subset or (dataset.info.dataset_name or "dataset")
    with tempfile.TemporaryDirectory(prefix="trueneg-hf-") as tmp:
        data = Path(tmp) / f"{name}.parquet"
        dataset.to_parquet(str(data))
        corpus_file = None
        if corpus is not None:
            corpus_file = Path(tmp) / "corpus.parquet"
            corpus.to_parquet(str(corpus_file))
        coll = ingest(
            [data], out, format=format, corpus=corpus_file, subset=subset, overwrite=overwrite
        )
    # the temporary Parquet file is gone: record what was read instead
    from trueneg.collection import Collection, write_manifest

    m = dict(coll.manifest)
    m["source"] = {
        **m["source"],
        "files": [
            {
                "path": "<datasets.Dataset>",
                "role": "examples",
                "rows": len(dataset),
                "fingerprint": getattr(dataset, "_fingerprint", None),
            }
        ],
    }
    write_manifest(coll.path, m)
    return Collection.load(coll.path)


def _rows(coll: Any, format: str) -> list[dict[str, Any]]:
    from trueneg.formats import canonical_format, export_collection

    fmt = canonical_format(format)
    if fmt not in ROW_FORMATS:
        raise InputError(
            f"the {fmt} format is a folder, not rows: to_hf takes one of {', '.join(ROW_FORMATS)}"
        )
    with tempfile.TemporaryDirectory(prefix="trueneg-hf-") as tmp:
        f = Path(tmp) / "rows.jsonl"
        export_collection(coll, fmt, f)
        return [orjson.loads(x) for x in f.read_bytes().splitlines() if x.strip()]


def to_hf(coll: Any, format: str = "st") -> Any:
    """The collection as a ``datasets.Dataset`` in ``format`` (st, bge, tevatron), the rows
    ``trueneg export`` writes."""
    return _datasets().Dataset.from_list(_rows(coll, format))


def to_arrow(coll: Any, format: str = "st") -> Any:
    """The collection as a ``pyarrow.Table`` of ``format`` rows."""
    import pyarrow as pa

    return pa.Table.from_pylist(_rows(coll, format))


def load_saved(path: str | os.PathLike[str]) -> Any:
    """A ``save_to_disk`` folder as a ``Dataset`` (one split)."""
    datasets = _datasets()
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        raise InputError(
            f"{path}: a DatasetDict folder holds several splits ({', '.join(ds)}): pass one "
            "split's folder"
        )
    return ds
