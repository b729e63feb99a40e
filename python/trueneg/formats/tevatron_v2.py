"""Tevatron v2: training rows with document ids plus a corpus file.

Training rows: ``{query_id, query_text, positive_document_ids: [str], negative_document_ids: [str], ...}``.
Corpus rows: ``{docid, title?, text, ...}``. Both JSON Lines or Parquet. Export writes a directory
with ``train.jsonl`` and ``corpus.jsonl`` (every corpus passage, in input order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trueneg._io import atomic_file, dumps_line, type_name
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import InputError
from trueneg.formats._common import (
    Where,
    checked_rows,
    default_subset,
    expect_object,
    extras,
    iter_examples,
    iter_rows,
    nonempty,
    req_str,
    req_str_list,
    write_corpus,
)

NAME = "tevatron-v2"
KNOWN = frozenset({"query_id", "query_text", "positive_document_ids", "negative_document_ids"})
CORPUS_KNOWN = frozenset({"docid", "title", "text"})


def read_corpus(builder: CollectionBuilder, corpus: str | os.PathLike[str]) -> None:
    src = builder.add_source(corpus, role="corpus")
    with progress(desc="ingest corpus", unit=" docs") as bar:
        for where, row, err in iter_rows(corpus):
            bar.update()
            if err is not None:
                raise err  # a corpus with a broken row cannot be trusted for references
            row = expect_object(row, where)
            docid = req_str(row, "docid", where)
            text = req_str(row, "text", where)
            title = row.get("title")
            if title is not None and not isinstance(title, str):
                raise where.error(f"expected a string, got {type_name(title)}", "title")
            builder.add_corpus_passage(
                docid, title, text, extras(row, CORPUS_KNOWN), source=src, line=where.line
            )
    builder.flush()


def read(
    builder: CollectionBuilder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    corpus: str | os.PathLike[str] | None,
    subset: str | None = None,
) -> None:
    if corpus is None:
        raise InputError(
            "the tevatron-v2 format needs corpus=PATH (the corpus JSON Lines or Parquet file)"
        )
    read_corpus(builder, corpus)
    with progress(desc="ingest tevatron-v2", unit=" rows") as bar:
        for path in paths:
            sub = subset or default_subset(path)
            src = builder.add_source(path, sub)
            for where, (qid, query, pos, neg, extra) in checked_rows(builder, path, bar, _parse):
                builder.add_example_refs(
                    query=query,
                    query_id=qid,
                    subset=sub,
                    positive_docids=pos,
                    negative_docids=neg,
                    extra=extra,
                    source=src,
                    line=where.line,
                )


def _parse(where: Where, row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        req_str(row, "query_id", where),
        req_str(row, "query_text", where),
        nonempty(req_str_list(row, "positive_document_ids", where), where, "positive_document_ids"),
        req_str_list(row, "negative_document_ids", where),
        extras(row, KNOWN),
    )


def write(coll: Collection, out: str | os.PathLike[str]) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = write_corpus(coll, out / "corpus.jsonl", "docid")
    with (
        atomic_file(out / "train.jsonl") as f,
        progress(total=len(coll), desc="export tevatron-v2") as bar,
    ):
        for ex in iter_examples(coll):
            f.write(
                dumps_line(
                    {
                        "query_id": ex.query_id if ex.query_id is not None else f"q{ex.qid}",
                        "query_text": ex.query,
                        "positive_document_ids": [
                            d if d is not None else synthetic[p]
                            for (d, *_), p in zip(ex.positives, ex.pos_pids, strict=True)
                        ],
                        "negative_document_ids": [
                            d if d is not None else synthetic[p]
                            for (d, *_), p in zip(ex.negatives, ex.neg_pids, strict=True)
                        ],
                        **ex.extra,
                    }
                )
            )
            bar.update()
