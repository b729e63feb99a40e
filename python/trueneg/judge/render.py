"""Prompt templates and their safe rendering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from trueneg.exceptions import InputError

PROMPTS_DIR = Path(__file__).parent / "prompts"
_PLACEHOLDER = re.compile(r"\{(question|ground_truth|documents|passage)\}")

#: prompt name -> kind; listwise prompts take a query, positives and numbered negatives
KINDS = {
    "gpt-4o-mini": "listwise",
    "gpt-4o": "listwise",
    "scidocsrr": "listwise",
    "pointwise-0-3": "pointwise",
}


@dataclass(frozen=True)
class Prompt:
    name: str
    kind: str
    text: str

    def fill(self, **values: str) -> str:
        """Replace the placeholders in one pass over the template: inserted text (passages with
        braces, tags or instructions) is never scanned again."""
        missing = {m.group(1) for m in _PLACEHOLDER.finditer(self.text)} - set(values)
        if missing:
            raise InputError(f"prompt {self.name!r} needs {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


@cache
def load_prompt(name: str) -> Prompt:
    """A bundled template by name, or a template file by path (listwise unless it has {passage})."""
    p = PROMPTS_DIR / f"{name}.txt"
    if p.is_file():
        return Prompt(name, KINDS.get(name, "listwise"), p.read_text(encoding="utf-8"))
    f = Path(name)
    if f.is_file():
        text = f.read_text(encoding="utf-8")
        return Prompt(str(f), "pointwise" if "{passage}" in text else "listwise", text)
    known = ", ".join(sorted(KINDS))
    raise InputError(f"unknown prompt {name!r} (bundled: {known}; or give a template file)")


def ground_truth_block(positives: Sequence[str]) -> str:
    return "".join(f"P(0): {t}\n\n" for t in positives).strip()


def documents_block(negatives: Sequence[str]) -> str:
    return "".join(f"Doc ({i}): {t}\n\n" for i, t in enumerate(negatives, start=1)).strip()


def render_listwise(
    prompt: Prompt, query: str, positives: Sequence[str], negatives: Sequence[str]
) -> str:
    """The RLHN layout: every positive as ``P(0): text``, negatives as ``Doc (i): text``."""
    return prompt.fill(
        question=query,
        ground_truth=ground_truth_block(positives),
        documents=documents_block(negatives),
    )


def render_pointwise(prompt: Prompt, query: str, passage: str) -> str:
    return prompt.fill(question=query, passage=passage)
