"""What text a passage is, for every model that reads one: embedding, mining, training, the
local judge scorers, dedup and evaluation all call :func:`passage_text` / :func:`passage_texts`,
so a model is trained on exactly the strings it is evaluated on.

The rule is BEIR's (``beir.retrieval.models.SentenceBERT``, and what sentence-transformers users
feed ``mine_hard_negatives`` from a BEIR corpus): ``(title + " " + text).strip()`` when the passage
has a title, else ``text.strip()``. Passages without titles (BGE, most training files) are their
text. The one setting is :data:`TITLE_SEPARATOR` (the string between title and text); set it
before anything is embedded, e.g. ``trueneg.texts.TITLE_SEPARATOR = "\\n"``, or pass ``sep``.

The LLM judge does not use this: RLHN's prompts render title and text their own way (the
reference rendering, kept byte for byte).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: between a passage's title and its text (BEIR: one space)
TITLE_SEPARATOR = " "


def passage_text(title: str | None, text: str, sep: str | None = None) -> str:
    """One passage's text: ``(title + sep + text).strip()`` with a title, ``text.strip()`` without.

    >>> passage_text("Paris", "The capital of France.")
    'Paris The capital of France.'
    >>> passage_text(None, "  no title ")
    'no title'
    """
    if title:
        return (title + (TITLE_SEPARATOR if sep is None else sep) + text).strip()
    return text.strip()


def passage_texts(passages: Any, sep: str | None = None) -> list[str]:
    """The text of every passage of a collection (pid order), of a ``passages`` table (columns
    ``title``, ``text``; row order), or of (titles, texts) sequences, by :func:`passage_text`'s
    rule (joined with Arrow compute)."""
    if hasattr(passages, "passages") and not isinstance(passages, tuple):  # a Collection
        passages = passages.passages
    if isinstance(passages, pa.Table):
        title = passages["title"].combine_chunks()
        text = passages["text"].combine_chunks()
    else:
        title = pa.array(list(passages[0]), pa.string())
        text = pa.array(list(passages[1]), pa.string())
    sep = TITLE_SEPARATOR if sep is None else sep
    title = pc.fill_null(title, "")
    joined = pc.binary_join_element_wise(title, text, sep)
    out = pc.if_else(pc.equal(title, ""), text, joined)
    return [s.strip() for s in out.to_pylist()]
