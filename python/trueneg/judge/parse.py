"""Reading a judge's answer into labels, with a status for everything that is not a clean answer.

Nothing unparseable is ever read as "no false negative": a call whose answer cannot be read gets an
error status and its documents get no label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: statuses of a call whose documents still get labels ("multiple_verdicts": the answer holds
#: more than one <verdict> block; the first counts, as in the reference)
READABLE = ("ok", "out_of_range", "duplicate", "multiple_verdicts")
#: every status a call can have ("bad_reference": <better>/<worse> hold something that is not a
#: ``Doc (n)`` reference, e.g. ``Doc(1)``, ``Doc 2``, ``Document (3)``: the reference parser reads
#: that as "no false negative", trueneg as unreadable)
STATUSES = (
    *READABLE,
    "bad_reference",
    "parse_error",
    "refusal",
    "length",
    "content_filter",
    "api_error",
)

_DOC = re.compile(r"Doc \((\d+)\)")
#: what may not remain in <better>/<worse> once the valid references are taken out
_STRAY_REFERENCE = re.compile(r"\d|\bdoc|\bpassage", re.IGNORECASE)
_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|i can(?:no|')t|i cannot|sorry, i|as an ai)", re.IGNORECASE
)
_SCORE = re.compile(r"final score:\s*\**\s*([0-3])\b", re.IGNORECASE)


@dataclass
class Verdict:
    """A parsed listwise answer. Indices are 0-based positions in the documents as sent."""

    status: str
    better: list[int] = field(default_factory=list)
    worse: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return self.status in READABLE

    def labels(self, n_docs: int) -> list[str | None]:
        """better / worse / not_relevant per document, or None for all when unreadable."""
        if not self.readable:
            return [None] * n_docs
        out: list[str | None] = ["not_relevant"] * n_docs
        for i in self.worse:
            out[i] = "worse"
        for i in self.better:
            out[i] = "better"
        return out

    def flagged(self, rule: str) -> list[int]:
        """Documents counted as false negatives: rule "better" or "both" (better + worse)."""
        if not self.readable:
            return []
        return sorted(set(self.better) | (set(self.worse) if rule == "both" else set()))


def _section(text: str, tag: str) -> str | None:
    """Content of the first complete <tag>...</tag> in text (the reference's reading)."""
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    end = text.find(f"</{tag}>", start)
    if end < 0:
        return None
    return text[start + len(tag) + 2 : end]


def parse_listwise(
    content: str | None,
    n_docs: int,
    *,
    finish_reason: str | None = "stop",
    refusal: str | None = None,
) -> Verdict:
    if refusal:
        return Verdict("refusal", notes=[refusal[:200]])
    if finish_reason == "content_filter":
        return Verdict("content_filter")
    if finish_reason == "length":
        return Verdict("length", notes=["the answer hit the token limit"])
    if not content or not content.strip():
        return Verdict("parse_error", notes=["empty answer"])
    verdict = _section(content, "verdict")
    if verdict is None:
        if _REFUSAL.match(content):
            return Verdict("refusal", notes=[content.strip()[:200]])
        return Verdict("parse_error", notes=["no <verdict> ... </verdict>"])
    better_s, worse_s = _section(verdict, "better"), _section(verdict, "worse")
    if better_s is None and worse_s is None:
        return Verdict("parse_error", notes=["no <better> or <worse> inside <verdict>"])
    for name, s in (("better", better_s), ("worse", worse_s)):
        stray = _STRAY_REFERENCE.search(_DOC.sub("", s or ""))
        if stray is not None:
            return Verdict(
                "bad_reference",
                notes=[
                    f"<{name}> holds a reference that is not Doc (n): {(s or '').strip()[:120]!r}"
                ],
            )
    v = Verdict("ok")
    if content.count("<verdict>") > 1:
        v.status = "multiple_verdicts"
        v.notes.append(f"{content.count('<verdict>')} <verdict> blocks; the first counts")
    if better_s is None or worse_s is None:
        v.notes.append("missing " + ("<better>" if better_s is None else "<worse>"))
    out_of_range: list[int] = []
    dup = False
    for name, s in (("better", better_s), ("worse", worse_s)):
        seen: list[int] = []
        for m in _DOC.finditer(s or ""):
            k = int(m.group(1))
            if not 1 <= k <= n_docs:
                out_of_range.append(k)
                continue
            if k - 1 in seen:
                dup = True
                continue
            seen.append(k - 1)
        setattr(v, name, seen)
    both = set(v.better) & set(v.worse)
    if both:
        dup = True
        v.worse = [i for i in v.worse if i not in both]  # the stronger verdict wins
        v.notes.append(f"listed as better and worse: {sorted(i + 1 for i in both)}")
    if out_of_range:
        v.status = "out_of_range"
        v.notes.append(f"documents out of range 1..{n_docs}: {out_of_range}")
    elif dup and v.status == "ok":
        v.status = "duplicate"
    return v


@dataclass
class Score:
    status: str
    score: int | None = None


def parse_pointwise(
    content: str | None, *, finish_reason: str | None = "stop", refusal: str | None = None
) -> Score:
    if refusal:
        return Score("refusal")
    if finish_reason == "content_filter":
        return Score("content_filter")
    m = _SCORE.search(content or "")
    if m is None:
        if finish_reason == "length":
            return Score("length")
        if content and _REFUSAL.match(content):
            return Score("refusal")
        return Score("parse_error")
    return Score("ok", int(m.group(1)))


# ---------------------------------------------------------------------------------------------
# JSON answers (ARHN's stages, SyNeg's generation)

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def strip_thinking(content: str) -> str:
    """The answer without a reasoning model's ``<think>`` block (also when the server left
    out the opening tag)."""
    content = _THINK.sub("", content)
    if "</think>" in content:
        content = content.split("</think>", 1)[1]
    return content.strip()


def call_failure(content: str | None, finish_reason: str | None, refusal: str | None) -> str | None:
    """The status of an answer that cannot be read at all (refusal, content_filter, length,
    an empty answer: parse_error), or None."""
    if refusal:
        return "refusal"
    if finish_reason == "content_filter":
        return "content_filter"
    if finish_reason == "length":
        return "length"
    if not content or not content.strip():
        return "parse_error"
    return None


def json_object(content: str) -> tuple[object, str]:
    """(the outermost ``{...}`` of the answer parsed, or None; the answer without thinking):
    fenced JSON and text around it are read alike."""
    import orjson

    body = strip_thinking(content)
    start, end = body.find("{"), body.rfind("}")
    try:
        obj = orjson.loads(body[start : end + 1]) if 0 <= start < end else None
    except orjson.JSONDecodeError:
        obj = None
    return obj, body
