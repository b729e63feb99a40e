"""BGE / FlagEmbedding JSON Lines: ``{query, pos: [str], neg: [str], pos_scores?, neg_scores?, ...}``.

Passages are plain strings with no ids. Fields beyond these (``prompt``, ``type``, anything else)
are kept per example and written back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from trueneg._io import atomic_file, dumps_line
from trueneg._progress import progress
from trueneg.collection import Collection, CollectionBuilder
from trueneg.exceptions import InputError
from trueneg.formats._common import (
    default_subset,
    expect_object,
    extras,
    iter_examples,
    iter_rows,
    opt_scores,
    req_str,
    req_str_list,
    score_out,
    IntScores,
)

NAME = "bge"
KNOWN = frozenset({"query", "pos", "neg", "pos_scores", "neg_scores"})


def read(builder: CollectionBuilder, paths: Sequence[str | os.PathLike[str]], *,
         subset: str | None = None) -> None:
    int_scores = IntScores()
    with progress(desc="ingest bge", unit=" rows") as bar:
        for path in paths:
            sub = subset or default_subset(path)
            src = builder.add_source(path, sub)
            for where, row, err in iter_rows(path):
                bar.update()
                if err is not None:
                    builder.error(err)
                    continue
                try:
                    row = expect_object(row, where)
                    query = req_str(row, "query", where)
                    pos = req_str_list(row, "pos", where)
                    if not pos:
                        raise where.error("no positives (an example needs at least one)", "pos")
                    if "neg" not in row:
                        raise where.error("missing (use [] for an example without negatives)", "neg")
                    neg = req_str_list(row, "neg", where)
                    ps = opt_scores(row, "pos_scores", len(pos), where)
                    ns = opt_scores(row, "neg_scores", len(neg), where)
                    int_scores.see(row.get("pos_scores"), row.get("neg_scores"))
                except InputError as e:
                    builder.error(e)
                    continue
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
    builder.options["int_scores"] = int_scores.all_int


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
