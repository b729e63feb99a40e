"""A scripted LLM for the test server: it reads ARHN's prompts (answer snippets, RankGPT ranking)
and SyNeg's generation prompt the way a model would, and answers by word overlap with the query,
so every answer is a function of the prompt and tests can compute the expected outcome on their
own. Faults can be scripted per query (``State.responder = ScriptedLLM(...)``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "for",
        "on",
        "with",
        "as",
        "by",
        "at",
        "it",
        "its",
        "this",
        "that",
        "what",
        "how",
        "why",
        "which",
        "who",
        "does",
        "do",
        "did",
        "can",
        "from",
        "not",
        "no",
    ]
)


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOP}


def overlap(query: str, passage: str) -> int:
    return len(words(query) & words(passage))


def snippet(passage: str) -> str:
    """The span the scripted model answers with: the passage's first 8 words, verbatim."""
    return " ".join(passage.split()[:8])


def answers_with_snippet(query: str, passage: str) -> bool:
    return overlap(query, passage) >= 2


def _user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


_QUESTION = re.compile(r"^Question: (.*)$", re.M)
_SEARCH = re.compile(r"^Search Query: (.*)\.$", re.M)


def answer_passages(prompt: str) -> list[str]:
    block = prompt.split("\nPassages:\n", 1)[1].split("\n\nReturn JSON only", 1)[0]
    parts = re.split(r"(?:^|\n\n)\[(\d+)\] ", block)
    return [parts[i + 1] for i in range(1, len(parts) - 1, 2)]


def ranking_passages(prompt: str) -> list[str]:
    return re.findall(r"^\[\d+\] (.*)$", prompt, re.M)


def rank(query: str, passages: list[str]) -> list[int]:
    """0-based order, best first: by word overlap, ties by position (a stable sort)."""
    return sorted(range(len(passages)), key=lambda i: -overlap(query, passages[i]))


class ScriptedLLM:
    """``faults``: query text -> what to do to that query's answers: "ungrounded" (answers
    paraphrased), "missing" (the last entry left out), "fenced" (JSON in a code fence after a
    <think> block), "garbage" (no JSON), "duplicate" / "partial" / "out_of_range" / "no_ids"
    (ranking answers), "refuse" (a refusal as text)."""

    def __init__(self, faults: dict[str, str] | None = None) -> None:
        self.faults = faults or {}
        self.answer_calls = 0
        self.rank_calls = 0
        self.generate_calls = 0
        self.generate: Callable[[dict[str, Any]], str] | None = None

    def __call__(self, body: dict[str, Any]) -> str | None:
        prompt = _user(body)
        if "\nPassages:\n" in prompt and "NO_ANSWER" in prompt:
            self.answer_calls += 1
            return self._answers(prompt)
        if "Search Query: " in prompt:
            self.rank_calls += 1
            return self._ranking(prompt)
        if self.generate is not None and "hard negative" in prompt.lower():
            self.generate_calls += 1
            return self.generate(body)
        return None

    def _answers(self, prompt: str) -> str:
        m = _QUESTION.search(prompt)
        assert m is not None
        query = m.group(1)
        fault = self.faults.get(query)
        if fault == "garbage":
            return "I think passage 2 answers it."
        if fault == "refuse":
            return "I'm sorry, I can't help with that."
        out = []
        for i, p in enumerate(answer_passages(prompt), start=1):
            a = snippet(p) if answers_with_snippet(query, p) else "NO_ANSWER"
            if fault == "ungrounded" and a != "NO_ANSWER":
                a = a.upper() + " (paraphrased)"
            out.append({"id": i, "answer": a})
        if fault == "missing":
            out = out[:-1]
        text = json.dumps({"answers": out})
        if fault == "fenced":
            return "<think>\nLet me read each passage.\n</think>\n```json\n" + text + "\n```"
        return text

    def _ranking(self, prompt: str) -> str:
        m = _SEARCH.search(prompt)
        assert m is not None
        query = m.group(1)
        passages = ranking_passages(prompt)
        order = [i + 1 for i in rank(query, passages)]
        fault = self.faults.get(query)
        if fault == "no_ids":
            return "These passages are all about the topic."
        if fault == "duplicate":
            order = order[:2] + order[:1] + order[2:]
        elif fault == "partial":
            order = order[: max(1, len(order) // 2)]
        elif fault == "out_of_range":
            order = [len(passages) + 5, *order]
        return " > ".join(f"[{i}]" for i in order)


FILLER_A = (
    "historians of the subject usually begin with older debates about regulation markets and "
    "institutions before moving on to broader questions that remain open today"
)
FILLER_B = (
    "several surveys of practitioners describe common misconceptions vague rules of thumb and "
    "anecdotes which rarely settle the matter for any particular reader or situation"
)


def scripted_negatives(body: dict[str, Any]) -> str:
    """Five candidates per call: two good ones, a copy of the positive, one too short, one a
    near-copy of the first good one."""
    prompt = body["messages"][-1]["content"]
    line = next(x for x in prompt.splitlines() if x.startswith("example: "))
    ex = json.loads(line.removeprefix("example: "))
    query, positive = ex["user_query"], ex["positive_document"]
    good_a = f"On {query}: {FILLER_A}."
    good_b = f"{FILLER_B}, as far as {query} goes."
    negs = [good_a, positive.replace(".", ";", 1), "Too short.", good_b, good_a + " Indeed."]
    return "<think>plan</think>" + json.dumps(
        {"reasoning": "leave out the answer", "hard_negatives": negs}
    )
