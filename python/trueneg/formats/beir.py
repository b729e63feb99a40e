"""BEIR evaluation sets: a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Corpus rows ``{_id, title?, text, metadata?...}``, query rows ``{_id, text, metadata?...}``, qrels
``query-id<TAB>corpus-id<TAB>score`` (with or without the header line). In the collection each
contiguous run of qrels rows of one query becomes one example: rows with score > 0 are positives,
score <= 0 negatives, the scores kept; the split is kept in the example's ``extra``. Queries without
judgments stay in the queries table. Export writes the same three parts back, rows in input order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trueneg._io import atomic_file, dumps_line, type_name
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder, parse_extra
from trueneg.exceptions import InputError
from trueneg.formats._common import (
    expect_object,
    extras,
    iter_examples,
    iter_rows,
    req_str,
    write_corpus,
)

NAME = "beir"
CORPUS_KNOWN = frozenset({"_id", "title", "text"})
QUERY_KNOWN = frozenset({"_id", "text"})
HEADER = "query-id\tcorpus-id\tscore"
HEADER_SCORE_NAMES = frozenset({"score", "relevance", "label", "rel"})


def is_beir_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "queries.jsonl").is_file()


def _read_corpus(builder: CollectionBuilder, path: Path) -> None:
    src = builder.add_source(path, role="corpus")
    with progress(desc="ingest beir corpus", unit=" docs") as bar:
        for where, row, err in iter_rows(path):
            bar.update()
            if err is not None:
                raise err
            row = expect_object(row, where)
            docid = req_str(row, "_id", where)
            text = req_str(row, "text", where)
            title = row.get("title")
            if title is not None and not isinstance(title, str):
                raise where.error(f"expected a string, got {type_name(title)}", "title")
            builder.add_corpus_passage(
                docid, title, text, extras(row, CORPUS_KNOWN), source=src, line=where.line
            )
    builder.flush()


def _read_queries(builder: CollectionBuilder, path: Path, subset: str) -> None:
    builder.add_source(path, subset, role="queries")
    seen: set[str] = set()
    for where, row, err in iter_rows(path):
        if err is not None:
            raise err
        row = expect_object(row, where)
        qid = req_str(row, "_id", where)
        text = req_str(row, "text", where)
        if qid in seen:
            raise where.error(f"duplicate query id {qid!r}", "_id")
        seen.add(qid)
        builder.add_query(qid, text, subset, extras(row, QUERY_KNOWN))
    builder.flush()


def _read_qrels(builder: CollectionBuilder, path: Path, subset: str) -> bool:
    """Read one qrels file; returns whether it had a header line."""
    split = path.stem
    src = builder.add_source(path, subset, role=f"qrels:{split}")
    header = False
    run: dict[str, Any] | None = None

    def emit() -> None:
        if run is not None:
            builder.add_example_refs(
                query=None,
                query_id=run["q"],
                subset=subset,
                positive_docids=run["pos"],
                negative_docids=run["neg"],
                pos_scores=run["ps"],
                neg_scores=run["ns"],
                extra={"split": split},
                source=src,
                line=run["line"],
            )

    try:
        f = open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(
                    f"not valid UTF-8 ({e.reason})", path=str(path), line=lineno + 1
                ) from None
            if not raw:
                break
            lineno += 1
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if lineno == 1 and len(parts) == 3 and parts[2].strip().lower() in HEADER_SCORE_NAMES:
                header = True
                continue
            if len(parts) != 3:
                builder.error(
                    InputError(
                        f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(parts)}",
                        path=str(path),
                        line=lineno,
                    )
                )
                continue
            q, d, s = parts
            try:
                score = int(s)
            except ValueError:
                builder.error(
                    InputError(
                        f"expected an integer score, got {s!r}",
                        path=str(path),
                        line=lineno,
                        field="score",
                    )
                )
                continue
            positive = score > 0
            if run is None or run["q"] != q or (positive and run["neg"]):
                emit()
                run = {"q": q, "pos": [], "neg": [], "ps": [], "ns": [], "line": lineno}
            if positive:
                run["pos"].append(d)
                run["ps"].append(float(score))
            else:
                run["neg"].append(d)
                run["ns"].append(float(score))
    emit()
    return header


def read(
    builder: CollectionBuilder, folder: str | os.PathLike[str], *, subset: str | None = None
) -> None:
    p = Path(folder)
    if not p.is_dir():
        raise InputError(
            "not a folder (a BEIR set is a folder with corpus.jsonl, queries.jsonl, qrels/)",
            path=str(p),
        )
    for need in ("corpus.jsonl", "queries.jsonl"):
        if not (p / need).is_file():
            raise InputError(f"{need} is missing", path=str(p))
    qrels = sorted((p / "qrels").glob("*.tsv")) if (p / "qrels").is_dir() else []
    if not qrels:
        raise InputError("qrels/*.tsv is missing", path=str(p))
    sub = subset or p.name
    _read_corpus(builder, p / "corpus.jsonl")
    _read_queries(builder, p / "queries.jsonl", sub)
    headers = {}
    for q in qrels:
        headers[q.stem] = _read_qrels(builder, q, sub)
    builder.options["qrels_header"] = headers
    builder.options["splits"] = [q.stem for q in qrels]


def write(coll: Collection, out: str | os.PathLike[str]) -> None:
    out = Path(out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    synthetic = write_corpus(coll, out / "corpus.jsonl", "_id")
    q = coll.queries
    with atomic_file(out / "queries.jsonl") as f:
        for qid, query_id, text, extra in zip(
            q["qid"].to_pylist(),
            q["query_id"].to_pylist(),
            q["text"].to_pylist(),
            q["extra"].to_pylist(),
            strict=True,
        ):
            qrow: dict[str, Any] = {
                "_id": query_id if query_id is not None else f"q{qid}",
                "text": text,
            }
            qrow.update(parse_extra(extra))
            f.write(dumps_line(qrow))
    headers = coll.options.get("qrels_header", {}) if coll.source_format == NAME else {}
    by_split: dict[str, list[str]] = {}
    for ex in iter_examples(coll):
        split = str(ex.extra.get("split", "train"))
        rows = by_split.setdefault(split, [])
        qid = ex.query_id if ex.query_id is not None else f"q{ex.qid}"
        for (docid, *_), pid, s in zip(
            ex.positives, ex.pos_pids, ex.pos_scores or [1.0] * len(ex.pos_pids), strict=True
        ):
            rows.append(f"{qid}\t{docid if docid is not None else synthetic[pid]}\t{int(s)}")
        for (docid, *_), pid, s in zip(
            ex.negatives, ex.neg_pids, ex.neg_scores or [0.0] * len(ex.neg_pids), strict=True
        ):
            rows.append(f"{qid}\t{docid if docid is not None else synthetic[pid]}\t{int(s)}")
    for split, rows in by_split.items():
        with atomic_file(out / "qrels" / f"{split}.tsv", "w") as f:
            if headers.get(split, True):
                f.write(HEADER + "\n")
            f.write("".join(r + "\n" for r in rows))
