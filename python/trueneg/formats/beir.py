"""BEIR evaluation sets: a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Corpus rows ``{_id, title?, text, metadata?...}``, query rows ``{_id, text, metadata?...}``, qrels
``query-id<TAB>corpus-id<TAB>score`` (with or without the header line). In the collection all qrels
rows of one query (per split) become one example, however the file interleaves them: rows with
score > 0 are positives, score <= 0 negatives, the scores kept; the split is kept in the example's
``extra``. Queries without judgments stay in the queries table. Export writes the same three parts
back, rows in input order.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trueneg._io import atomic_file, dumps_line, open_input, type_name
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
from trueneg.texts import passage_text

NAME = "beir"
CORPUS_KNOWN = frozenset({"_id", "title", "text"})
QUERY_KNOWN = frozenset({"_id", "text"})
HEADER = "query-id\tcorpus-id\tscore"
HEADER_SCORE_NAMES = frozenset({"score", "relevance", "label", "rel"})


def is_beir_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "queries.jsonl").is_file()


# -- one reader of the three parts: ingest, evaluation, dedup's leakage check and the qrels judge
# all read BEIR folders through these


def corpus_rows(path: Path) -> Iterator[tuple[int, str, str | None, str, dict[str, Any] | None]]:
    """(line, docid, title or None, text, other fields) of each corpus row, checked."""
    for where, row, err in iter_rows(path):
        if err is not None:
            raise err
        row = expect_object(row, where)
        docid = req_str(row, "_id", where)
        text = req_str(row, "text", where)
        title = row.get("title")
        if title is not None and not isinstance(title, str):
            raise where.error(f"expected a string, got {type_name(title)}", "title")
        yield where.line, docid, title, text, extras(row, CORPUS_KNOWN)


def query_rows(path: Path) -> Iterator[tuple[int, str, str, dict[str, Any] | None]]:
    """(line, query id, text, other fields) of each query row, checked (ids unique)."""
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
        yield where.line, qid, text, extras(row, QUERY_KNOWN)


def _is_header(parts: list[str]) -> bool:
    if len(parts) != 3:
        return False
    return parts[2].strip().lower() in HEADER_SCORE_NAMES


def qrels_rows(
    path: Path, on_error: Callable[[InputError], None] | None = None
) -> tuple[bool, list[tuple[int, str, str, int]]]:
    """(whether line 1 is a header, [(line, query id, corpus id, score)]) of a qrels TSV (any
    compression). A bad line goes to ``on_error`` (default: raised)."""

    def bad(err: InputError) -> None:
        if on_error is None:
            raise err
        on_error(err)

    header = False
    rows: list[tuple[int, str, str, int]] = []
    f = open_input(path, "a qrels TSV file")
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    with text:
        lineno = 0
        while True:
            try:
                raw = text.readline()
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
            if lineno == 1 and _is_header(parts):
                header = True
                continue
            if len(parts) != 3:
                bad(
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
                bad(
                    InputError(
                        f"expected an integer score, got {s!r}",
                        path=str(path),
                        line=lineno,
                        field="score",
                    )
                )
                continue
            rows.append((lineno, q, d, score))
    return header, rows


def qrels_file(path: str | os.PathLike[str], split: str = "test") -> Path:
    """The qrels TSV of ``path``: the file itself, or a BEIR folder's ``qrels/<split>.tsv``."""
    p = Path(path)
    f = p / "qrels" / f"{split}.tsv" if p.is_dir() else p
    if not f.is_file():
        raise InputError("missing qrels file", path=str(f))
    return f


def read_qrels(path: str | os.PathLike[str], split: str = "test") -> dict[str, dict[str, int]]:
    """Graded qrels {query id: {docid: grade}} from a TSV (query-id, corpus-id, score; a header
    line is skipped) or a BEIR folder (its ``qrels/<split>.tsv``)."""
    qrels: dict[str, dict[str, int]] = {}
    for _, q, d, score in qrels_rows(qrels_file(path, split))[1]:
        qrels.setdefault(q, {})[d] = score
    return qrels


@dataclass
class BeirSet:
    """A BEIR folder in memory: the corpus, the queries and (for a split) the qrels."""

    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    #: each passage's title ("" when none) and text as the corpus file has them
    doc_titles: list[str] = field(default_factory=list)
    doc_bodies: list[str] = field(default_factory=list)


def _need(folder: Path, *names: str) -> None:
    if not folder.is_dir():
        raise InputError(
            "not a folder (a BEIR set is a folder with corpus.jsonl, queries.jsonl, qrels/)",
            path=str(folder),
        )
    for need in names:
        if not (folder / need).is_file():
            raise InputError(f"{need} is missing", path=str(folder))


def load_beir(path: str | os.PathLike[str], split: str | None = "test") -> BeirSet:
    """A BEIR folder in memory. Passages are :func:`trueneg.texts.passage_text` (BEIR's rule,
    ``(title + " " + text).strip()``), as in training and mining. With a ``split``, its qrels are
    read and only the queries that have some are kept; with ``None``, every query, no qrels."""
    p = Path(path)
    _need(p, "corpus.jsonl", "queries.jsonl")
    qrels = read_qrels(qrels_file(p / "qrels" / f"{split}.tsv")) if split is not None else {}
    ids, titles, bodies = [], [], []
    for _, docid, title, text, _ in corpus_rows(p / "corpus.jsonl"):
        ids.append(docid)
        titles.append(title or "")
        bodies.append(text)
    queries = [
        (qid, text)
        for _, qid, text, _ in query_rows(p / "queries.jsonl")
        if split is None or qid in qrels
    ]
    return BeirSet(
        name=p.name,
        doc_ids=ids,
        doc_texts=[passage_text(t, b) for t, b in zip(titles, bodies, strict=True)],
        query_ids=[q for q, _ in queries],
        query_texts=[t for _, t in queries],
        qrels=qrels,
        doc_titles=titles,
        doc_bodies=bodies,
    )


# -- ingest


def _read_corpus(builder: CollectionBuilder, path: Path) -> None:
    src = builder.add_source(path, role="corpus")
    with progress(desc="ingest beir corpus", unit=" docs") as bar:
        for line, docid, title, text, extra in corpus_rows(path):
            bar.update()
            builder.add_corpus_passage(docid, title, text, extra, source=src, line=line)
    builder.flush()


def _read_queries(builder: CollectionBuilder, path: Path, subset: str) -> None:
    builder.add_source(path, subset, role="queries")
    for _, qid, text, extra in query_rows(path):
        builder.add_query(qid, text, subset, extra)
    builder.flush()


def _read_qrels(builder: CollectionBuilder, path: Path, subset: str) -> bool:
    """Read one qrels file; returns whether it had a header line.

    All rows of a query make one example (positives: score > 0; negatives: score <= 0), however
    the file interleaves them, so every stage sees every positive of the query together. Where
    a query's rows are not one block with its positives first, their line numbers are kept in
    the example's ``extra`` (``qrels_lines``), so the export writes the file back in its order."""
    split = path.stem
    src = builder.add_source(path, subset, role=f"qrels:{split}")
    runs: dict[str, dict[str, Any]] = {}
    last_q: str | None = None
    header, rows = qrels_rows(path, builder.error)
    for lineno, q, d, score in rows:
        run = runs.get(q)
        if run is None:
            run = runs[q] = {
                "pos": [], "neg": [], "ps": [], "ns": [], "pl": [], "nl": [],
                "line": lineno, "block": True,
            }  # fmt: skip
        elif last_q != q:
            run["block"] = False  # the query's rows are interleaved with another's
        last_q = q
        if score > 0:
            if run["neg"]:
                run["block"] = False  # a positive after a negative
            run["pos"].append(d)
            run["ps"].append(float(score))
            run["pl"].append(lineno)
        else:
            run["neg"].append(d)
            run["ns"].append(float(score))
            run["nl"].append(lineno)
    for q, run in runs.items():
        extra: dict[str, Any] = {"split": split}
        if not run["block"]:
            extra["qrels_lines"] = run["pl"] + run["nl"]
        builder.add_example_refs(
            query=None,
            query_id=q,
            subset=subset,
            positive_docids=run["pos"],
            negative_docids=run["neg"],
            pos_scores=run["ps"],
            neg_scores=run["ns"],
            extra=extra,
            source=src,
            line=run["line"],
        )
    return header


def read(
    builder: CollectionBuilder, folder: str | os.PathLike[str], *, subset: str | None = None
) -> None:
    p = Path(folder)
    _need(p, "corpus.jsonl", "queries.jsonl")
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
    # rows keyed by where they stood in the qrels file: an example's own line numbers when it
    # kept them (interleaved queries), else its first line and its position in the block
    by_split: dict[str, list[tuple[tuple[int, int], str]]] = {}
    for n, ex in enumerate(iter_examples(coll)):
        split = str(ex.extra.get("split", "train"))
        rows = by_split.setdefault(split, [])
        qid = ex.query_id if ex.query_id is not None else f"q{ex.qid}"
        lines = ex.extra.get("qrels_lines")
        start = ex.line if ex.line is not None else n
        texts = [
            f"{qid}\t{docid if docid is not None else synthetic[pid]}\t{int(s)}"
            for (docid, *_), pid, s in (
                *zip(ex.positives, ex.pos_pids, ex.pos_scores or [1.0] * len(ex.pos_pids), strict=True),
                *zip(ex.negatives, ex.neg_pids, ex.neg_scores or [0.0] * len(ex.neg_pids), strict=True),
            )
        ]  # fmt: skip
        if isinstance(lines, list) and len(lines) == len(texts):
            rows.extend(((int(li), 0), t) for li, t in zip(lines, texts, strict=True))
        else:
            rows.extend(((start, i), t) for i, t in enumerate(texts))
    for split, rows in by_split.items():
        rows.sort(key=lambda r: r[0])
        with atomic_file(out / "qrels" / f"{split}.tsv", "w") as f:
            if headers.get(split, True):
                f.write(HEADER + "\n")
            f.write("".join(t + "\n" for _, t in rows))
