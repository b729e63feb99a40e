"""ARHN (Choi et al., arXiv 2604.11092): answers as evidence for relabeling hard negatives.

A stage with ``method = "arhn"`` asks an LLM two things about each example:

A. **Answer snippets** (``prompt``, default ``arhn-answers``): for each negative (up to
   ``max_per_call`` per call), a verbatim span of the passage that answers the query, or
   ``NO_ANSWER``, as JSON (``response_format`` with a JSON schema, per ``structured_output``).
   A span that does not occur in its passage once whitespace is normalised is ``ungrounded``: a
   status of its own, never an answer.
B. **Listwise ranking** (``rank_prompt``, default ``arhn-rank``) of the positives and negatives in
   RankGPT's format: candidates as ``[i] text``, the answer ``[3] > [1] > [2]``. Lists longer than
   ``window_size`` are ranked with RankGPT's sliding windows (from the bottom up, ``window_step``
   apart), each window on the order the previous one left. The answer is read as RankGPT reads it
   (every run of digits an id; ids out of range and repeats dropped; missing ids appended in their
   input order). The candidates are shuffled first, with ``shuffle_seed`` and the example's row
   (position bias); where each negative was shown is recorded in its judgment's reason.

Rules (``arhn_rule``): **R** relabels negatives ranked above the positive (label ``relabel``, a
false negative for the fix step); **F** drops, as ambiguous, negatives ranked below the positive
that have a grounded answer snippet (label ``ambiguous``: removed from the negatives, never moved
to the positives); **R+F** both (the paper's best). With several positives, "the positive" is the
best ranked one: a negative is relabelled only when it is ranked above every positive.
Rule R alone sends no answer calls.

Choices made here, where the paper's description is silent (no code or prompts were public):
snippets are asked only for negatives (rule F needs no more); the answer prompt is trueneg's own;
passages in the ranking prompt are cut to ``max_passage_words`` words (RankGPT: 300) and a
``[n]`` inside a passage is written ``(n)`` (rank_llm does the same) so it cannot pose as an id;
a ``<think>...</think>`` block (Qwen3, DeepSeek-R1) is skipped before an answer is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from trueneg import judgments
from trueneg.exceptions import InputError
from trueneg.judge.cache import Answer, request_key
from trueneg.judge.client import Fetch, Request
from trueneg.judge.parse import call_failure, json_object, strip_thinking

if TYPE_CHECKING:
    from trueneg.judge.cascade import CollectionText
    from trueneg.judge.config import JudgeConfig, Stage

__all__ = [
    "ANSWER_SCHEMA",
    "RULES",
    "AnswerSheet",
    "Ranking",
    "Template",
    "grounded",
    "load_template",
    "parse_answers",
    "parse_ranking",
    "render_answers",
    "render_ranking",
    "run_arhn",
    "sliding_windows",
]

RULES = ("R", "F", "R+F")
NO_ANSWER = "NO_ANSWER"
PROMPTS_DIR = Path(__file__).parent / "prompts"

#: the structured answer of stage A (OpenAI ``response_format``; llama.cpp and vLLM take it too)
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer_snippets",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "answer": {"type": "string"},
                        },
                        "required": ["id", "answer"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["answers"],
            "additionalProperties": False,
        },
    },
}

#: expected output tokens, for ``judge estimate``: an answer entry (``{"id": 3, "answer":
#: "..."}`` with a short span) per passage, and ``[12] > `` per ranked candidate (o200k). A model
#: that thinks aloud first (Qwen3's thinking mode) writes many more: the estimate's worst case
#: (``max_completion_tokens`` per call) bounds it. ``expected_completion_tokens`` is not read here.
ANSWER_TOKENS_PER_PASSAGE = 30
RANK_TOKENS_PER_CANDIDATE = 4


def response_format(kind: str) -> dict[str, Any]:
    """The answer schema as ``response_format``: OpenAI's ``json_schema`` envelope, or
    llama-cpp-python's ``{"type": "json_object", "schema": ...}``."""
    if kind == "json_object":
        return {"type": "json_object", "schema": ANSWER_SCHEMA["json_schema"]["schema"]}
    return ANSWER_SCHEMA


_PLACEHOLDER = re.compile(r"\{(question|num|passages)\}")
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")
_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i can(?:no|')t|sorry, i|as an ai)", re.I)

# ---------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    #: the system message (``NAME.system.txt`` beside the template), if any
    system: str | None = None

    def fill(self, **values: str) -> str:
        """Placeholders replaced in one pass: inserted text is never scanned again."""
        missing = {m.group(1) for m in _PLACEHOLDER.finditer(self.text)} - set(values)
        if missing:
            raise InputError(f"prompt {self.name!r} needs {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)

    def messages(self, user: str) -> tuple[dict[str, str], ...]:
        if self.system is None:
            return ({"role": "user", "content": user},)
        return ({"role": "system", "content": self.system}, {"role": "user", "content": user})


@cache
def load_template(name: str) -> Template:
    """A bundled ARHN template by name (``arhn-answers``, ``arhn-rank``, ``rankgpt``) or a file
    with ``{question}``, ``{num}`` and ``{passages}``; ``NAME.system.txt`` beside it, when there,
    is sent as the system message."""
    p = PROMPTS_DIR / f"{name}.txt"
    if not p.is_file():
        p = Path(name)
        if not p.is_file():
            raise InputError(
                f"unknown ARHN prompt {name!r} (bundled: arhn-answers, arhn-rank, rankgpt; "
                "or a template file with {question}, {num}, {passages})"
            )
    system = p.with_name(p.name[: -len(p.suffix)] + ".system.txt") if p.suffix else None
    return Template(
        name,
        p.read_text(encoding="utf-8"),
        system.read_text(encoding="utf-8") if system is not None and system.is_file() else None,
    )


def render_answers(t: Template, query: str, passages: Sequence[str]) -> str:
    block = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    return t.fill(question=query, num=str(len(passages)), passages=block)


def render_ranking(t: Template, query: str, passages: Sequence[str], max_words: int) -> str:
    """RankGPT's candidate list: ``[i] text``, one per line, each cut to ``max_words`` words
    (0: whole) with any ``[n]`` in the text written ``(n)``."""
    lines = []
    for i, p in enumerate(passages, start=1):
        words = p.split()
        text = " ".join(words[:max_words] if max_words else words)
        lines.append(f"[{i}] " + _BRACKETED_NUMBER.sub(r"(\1)", text))
    return t.fill(question=query, num=str(len(passages)), passages="\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Reading answers


def normalise(text: str) -> str:
    return " ".join(text.split())


def grounded(span: str, passage: str) -> bool:
    """Whether ``span`` occurs in ``passage`` verbatim, up to whitespace."""
    s = normalise(span)
    return bool(s) and s in normalise(passage)


@dataclass
class AnswerSheet:
    """Stage A's reading of one call: per passage a grounded span, ``None`` (no answer), and a
    per-passage status ("ok", "ungrounded", "missing_answer")."""

    status: str
    spans: list[str | None] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return self.status in ("ok", "incomplete")


def parse_answers(
    content: str | None,
    passages: Sequence[str],
    *,
    finish_reason: str | None = "stop",
    refusal: str | None = None,
) -> AnswerSheet:
    """Stage A's JSON (``{"answers": [{"id", "answer"}]}``, fenced or with text around it): a
    span that is not in its passage is "ungrounded"; a passage with no entry "missing_answer";
    a call whose JSON cannot be read gets an error status and no passage is read."""
    n = len(passages)
    bad = call_failure(content, finish_reason, refusal)
    if bad is not None:
        return AnswerSheet(bad, notes=["empty answer"] if bad == "parse_error" else [])
    assert content is not None
    obj, body = json_object(content)
    items = obj.get("answers") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        if _REFUSAL.match(body):
            return AnswerSheet("refusal", notes=[body[:200]])
        return AnswerSheet("parse_error", notes=['no JSON object with an "answers" list'])
    by_id: dict[int, str] = {}
    notes: list[str] = []
    for it in items:
        if not isinstance(it, dict):
            continue
        i, a = it.get("id"), it.get("answer")
        if isinstance(i, str) and i.strip().isdigit():
            i = int(i)
        if not isinstance(i, int) or isinstance(i, bool) or not isinstance(a, str):
            notes.append(f"entry without an integer id and a string answer: {str(it)[:80]}")
            continue
        if not 1 <= i <= n:
            notes.append(f"id {i} out of range 1..{n}")
            continue
        by_id.setdefault(i, a)  # the first entry for an id counts
    sheet = AnswerSheet("ok", notes=notes)
    for i, p in enumerate(passages, start=1):
        a = by_id.get(i)
        if a is None:
            sheet.spans.append(None)
            sheet.statuses.append("missing_answer")
        elif a.strip().strip(".").upper() in (NO_ANSWER, "") or not a.strip():
            sheet.spans.append(None)
            sheet.statuses.append("ok")
        elif grounded(a, p):
            sheet.spans.append(normalise(a))
            sheet.statuses.append("ok")
        else:
            sheet.spans.append(None)
            sheet.statuses.append("ungrounded")
    missing = sheet.statuses.count("missing_answer")
    if missing:
        sheet.status = "incomplete"
        sheet.notes.append(f"{missing} of {n} passages without an answer entry")
    return sheet


@dataclass
class Ranking:
    """One window's answer: ``order`` is a permutation of 0..n-1, best first."""

    status: str
    order: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return self.status in ("ok", "incomplete", "duplicate", "out_of_range")


def parse_ranking(
    content: str | None,
    n: int,
    *,
    finish_reason: str | None = "stop",
    refusal: str | None = None,
) -> Ranking:
    """RankGPT's reading (``receive_permutation``): every run of digits is an id, repeats and ids
    outside 1..n dropped, missing ids appended in input order. Its status says which of these
    happened; an answer with no id at all is a parse error (RankGPT would keep the input order)."""
    bad = call_failure(content, finish_reason, refusal)
    if bad is not None:
        return Ranking(bad)
    assert content is not None
    body = strip_thinking(content)
    ids = [int(x) - 1 for x in re.findall(r"\d+", body)]
    if not ids:
        if _REFUSAL.match(body):
            return Ranking("refusal", notes=[body[:200]])
        return Ranking("parse_error", notes=["no passage identifiers in the answer"])
    order: list[int] = []
    dup, out = False, []
    for i in ids:
        if not 0 <= i < n:
            out.append(i + 1)
        elif i in order:
            dup = True
        else:
            order.append(i)
    missing = [i for i in range(n) if i not in order]
    r = Ranking("ok", order + missing)
    if out:
        r.status = "out_of_range"
        r.notes.append(f"ids out of range 1..{n}: {out[:10]}")
    if dup:
        r.status = "duplicate" if r.status == "ok" else r.status
        r.notes.append("repeated ids dropped")
    if missing:
        r.status = "incomplete" if r.status == "ok" else r.status
        r.notes.append(f"ids not ranked, appended in input order: {[i + 1 for i in missing]}")
    return r


def sliding_windows(n: int, size: int, step: int) -> list[tuple[int, int]]:
    """RankGPT's windows over ``n`` candidates, in the order they are ranked: the last
    ``size`` first, then ``step`` further up each time, until the top is covered. These are
    rank_llm's windows (RankZephyr); RankGPT's original loop stops before the top when ``n -
    size`` is not a multiple of ``step`` (26 candidates: the top 6 never ranked)."""
    end, start = n, max(0, n - size)
    out = [(start, end)]
    while start > 0:
        end -= step
        start = max(0, start - step)
        out.append((start, end))
    return out


def initial_order(n: int, seed: int, example: int) -> list[int]:
    """The candidates' order as first shown: a permutation drawn from (seed, example row)."""
    order: list[int] = np.random.default_rng([seed, example]).permutation(n).tolist()
    return order


# ---------------------------------------------------------------------------------------------
# Running a stage


@dataclass
class _Example:
    row: int
    candidates: list[int]  # pids as first shown (shuffled positives + negatives)
    positives: set[int]
    negatives: list[int]  # the negatives judged, in the example's order
    order: list[int]  # current ranking, indices into candidates
    windows: list[tuple[int, int]]
    failed: tuple[str, str] | None = None
    answer: dict[int, tuple[str | None, str, str]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


#: answers of requests (a missing key: no answer), and why each unanswered one failed


def run_arhn(
    text: CollectionText,
    stage: Stage,
    stage_index: int,
    config: JudgeConfig,
    spans: dict[int, list[tuple[int, int]]],
    fetch: Fetch,
    account: Callable[[Answer, str], None],
    dry_run_estimate: Callable[[list[str], int], None] | None = None,
) -> tuple[pa.Table, list[int], dict[str, int], int]:
    """One ARHN stage over the examples in ``spans`` (row -> negative spans to judge).

    ``fetch`` returns the cached or freshly bought answer of each request (a missing key: no
    answer); ``account`` is told once per answer used, for tokens and cost. With
    ``dry_run_estimate`` nothing is fetched: the prompts of stage A and of every ranking window
    (on the first shown order) are handed to it instead. Returns the judgment rows, the rows of
    the examples with a relabelled or ambiguous negative, the per-call status counts and the
    number of calls."""
    from trueneg.judge.cascade import make_requests, stage_rows

    rule = stage.arhn_rule
    want_answers = "F" in rule
    a_tpl = load_template(stage.prompt)
    r_tpl = load_template(stage.rank_prompt)
    statuses: dict[str, int] = {}
    calls = 0
    examples: list[_Example] = []
    for row, sp in spans.items():
        negs = [p for s, t in sp for p in text.negatives[row][s:t]]
        if not negs:
            continue
        pos = list(dict.fromkeys(text.positives[row]))
        negs = [p for p in dict.fromkeys(negs) if p not in set(pos)]
        cand = pos + negs
        perm = initial_order(len(cand), stage.shuffle_seed, row)
        examples.append(
            _Example(
                row=row,
                candidates=[cand[i] for i in perm],
                positives=set(pos),
                negatives=negs,
                order=list(range(len(cand))),
                windows=sliding_windows(len(cand), stage.window_size, stage.window_step),
            )
        )

    def requests_for(prompts: list[str], template: Template, answers: bool) -> list[Request]:
        reqs = make_requests(stage, prompts, config)
        structured = answers and stage.structured_output != "off"
        if template.system is None and not structured:
            return reqs
        params = dict(stage.params())
        if structured:
            params["response_format"] = response_format(stage.structured_output)
        out = []
        for r, p in zip(reqs, prompts, strict=True):
            messages = template.messages(p)
            out.append(
                Request(
                    key=request_key(stage.model, messages, params),
                    model=r.model,
                    messages=messages,
                    params=tuple(sorted(params.items())),
                    est_tokens=r.est_tokens,
                    est_cost=r.est_cost,
                    max_tokens_cap=r.max_tokens_cap,
                )
            )
        return out

    # stage A: answer snippets of the negatives, max_per_call a call
    a_calls: list[tuple[_Example, list[int]]] = []
    if want_answers:
        for ex in examples:
            for i in range(0, len(ex.negatives), stage.max_per_call):
                a_calls.append((ex, ex.negatives[i : i + stage.max_per_call]))
    a_prompts = [
        render_answers(a_tpl, text.query[ex.row], [text.passage[p] for p in negs])
        for ex, negs in a_calls
    ]

    def window_prompt(ex: _Example, w: tuple[int, int]) -> str:
        shown = [ex.candidates[i] for i in ex.order[w[0] : w[1]]]
        return render_ranking(
            r_tpl,
            text.query[ex.row],
            [text.passage[p] for p in shown],
            stage.max_passage_words,
        )

    if dry_run_estimate is not None:
        dry_run_estimate(a_prompts, ANSWER_TOKENS_PER_PASSAGE * sum(len(n) for _, n in a_calls))
        shown = [(ex, w) for ex in examples for w in ex.windows]
        r_prompts = [window_prompt(ex, w) for ex, w in shown]
        dry_run_estimate(r_prompts, RANK_TOKENS_PER_CANDIDATE * sum(t - s for _, (s, t) in shown))
        return judgments.empty(), [], {}, len(a_prompts) + len(r_prompts)

    a_reqs = requests_for(a_prompts, a_tpl, True)
    # the first window of every example goes out with stage A, the later ones round by round
    rounds = max((len(ex.windows) for ex in examples), default=0)
    seen_keys: set[str] = set()

    def use(a: Answer, key: str) -> None:
        if key not in seen_keys:
            seen_keys.add(key)
            account(a, key)

    def count(status: str) -> None:
        statuses[status] = statuses.get(status, 0) + 1

    for rnd in range(rounds):
        live = [ex for ex in examples if ex.failed is None and rnd < len(ex.windows)]
        r_prompts = [window_prompt(ex, ex.windows[rnd]) for ex in live]
        r_reqs = requests_for(r_prompts, r_tpl, False)
        batch = (a_reqs if rnd == 0 else []) + r_reqs
        found, failed = fetch(batch) if batch else ({}, {})
        calls += len(batch)
        if rnd == 0:
            for (ex, negs), req in zip(a_calls, a_reqs, strict=True):
                a = found.get(req.key)
                ex.keys.append(req.key)
                if a is None:
                    why = failed.get(req.key, ("missing", "no answer to the answer-snippet call"))
                    count(why[0])
                    ex.failed = ex.failed or why
                    continue
                use(a, req.key)
                sheet = parse_answers(
                    a.content,
                    [text.passage[p] for p in negs],
                    finish_reason=a.finish_reason,
                    refusal=a.refusal,
                )
                count(sheet.status)
                if not sheet.readable:
                    ex.failed = ex.failed or (sheet.status, "; ".join(sheet.notes) or sheet.status)
                    continue
                for p, span, st in zip(negs, sheet.spans, sheet.statuses, strict=True):
                    ex.answer[p] = (span, st, req.key)
        for ex, req in zip(live, r_reqs, strict=True):
            a = found.get(req.key)
            ex.keys.append(req.key)
            if a is None:
                why = failed.get(req.key, ("missing", "no answer to a ranking window"))
                count(why[0])
                ex.failed = ex.failed or why
                continue
            use(a, req.key)
            s, t = ex.windows[rnd]
            rk = parse_ranking(a.content, t - s, finish_reason=a.finish_reason, refusal=a.refusal)
            count(rk.status)
            if not rk.readable:
                ex.failed = ex.failed or (rk.status, "; ".join(rk.notes) or rk.status)
                continue
            window = ex.order[s:t]
            ex.order[s:t] = [window[i] for i in rk.order]

    ex_col: list[int] = []
    pid_col: list[int] = []
    label_col: list[str | None] = []
    flag_col: list[bool] = []
    status_col: list[str] = []
    key_col: list[str | None] = []
    reason_col: list[str | None] = []
    sim_col: list[float | None] = []
    flagged_rows: list[int] = []
    for ex in examples:
        shown_at = {p: i + 1 for i, p in enumerate(ex.candidates)}
        rank_of = {ex.candidates[c]: r + 1 for r, c in enumerate(ex.order)}
        top_pos = min(rank_of[p] for p in ex.positives) if ex.positives else None
        n = len(ex.candidates)
        acted = False
        for p in ex.negatives:
            ex_col.append(ex.row)
            pid_col.append(p)
            span, a_status, a_key = ex.answer.get(p, (None, "ok", None))
            key_col.append(a_key or (ex.keys[-1] if ex.keys else None))
            if ex.failed is not None:
                label_col.append(None)
                flag_col.append(False)
                status_col.append(ex.failed[0])
                reason_col.append(ex.failed[1])
                sim_col.append(None)
                continue
            r = rank_of[p]
            above = top_pos is not None and r < top_pos
            if above:
                label = "relabel" if "R" in rule else "above_positive"
            elif span is not None and want_answers:
                label = "ambiguous"
            else:
                label = "not_relevant"
            acted |= label in ("relabel", "ambiguous")
            label_col.append(label)
            flag_col.append(label == "relabel")
            status_col.append(a_status)
            ans = "answer: " + orjson.dumps(span).decode() if span is not None else "no answer"
            if a_status == "ungrounded":
                ans = "answer not found in the passage"
            elif a_status == "missing_answer":
                ans = "no answer entry"
            elif not want_answers:
                ans = "answers not asked (rule R)"
            reason_col.append(
                f"rank {r} of {n}, best positive {top_pos}; shown {shown_at[p]} of {n}; {ans}"
            )
            sim_col.append(float(r))
        if acted:
            flagged_rows.append(ex.row)
    table = stage_rows(
        text,
        stage,
        stage_index,
        ex_col,
        pid_col,
        prompt=f"{stage.prompt}+{stage.rank_prompt}" if want_answers else stage.rank_prompt,
        label=label_col,
        flagged=flag_col,
        status=status_col,
        request_key=key_col,
        reason=reason_col,
        similarity=sim_col,
    )
    return table, flagged_rows, statuses, calls
