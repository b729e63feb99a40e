"""Import judge answers already paid for, so a cascade reuses them: RLHN JSON Lines (rows with the
prompt inputs and the raw ``response``) and OpenAI Batch API output files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from trueneg._io import iter_jsonl
from trueneg.exceptions import InputError
from trueneg.judge.cache import Answer, Cache, request_key
from trueneg.judge.config import JudgeConfig, Stage
from trueneg.judge.render import load_prompt, render_listwise


@dataclass
class ImportStats:
    rows: int = 0
    imported: int = 0
    already: int = 0
    skipped: int = 0
    #: rows whose answer is null or not a string: not stored, so they never block a real request
    no_answer: int = 0


def _finish_reason(v: Any) -> str | None:
    if isinstance(v, list):  # RLHN's fiqa stage-2 file stores ["stop"]
        v = v[0] if v else None
    return None if v is None else str(v)


def import_rlhn(cache: Cache, paths: Sequence[str | os.PathLike[str]], stage: Stage) -> ImportStats:
    """Rows ``{query, positive_passages, negative_passages, response, finish_reason}`` answered with
    ``stage``'s model and prompt: the request is rebuilt exactly as the cascade builds it."""
    prompt = load_prompt(stage.prompt)
    st = ImportStats()
    answers = []
    for path in paths:
        for lineno, row, err in iter_jsonl(path):
            if err is not None:
                raise err
            st.rows += 1
            try:
                query = row["query"]
                pos = [p["text"] for p in row["positive_passages"]]
                neg = [p["text"] for p in row["negative_passages"]]
                response = row["response"]
            except (KeyError, TypeError) as e:
                raise InputError(
                    f"not an RLHN judged row ({e})", path=str(path), line=lineno
                ) from None
            if len(neg) > stage.max_per_call:
                st.skipped += 1  # the cascade would split these negatives into several calls
                continue
            if not isinstance(response, str) or not response.strip():
                st.no_answer += 1
                continue
            messages = ({"role": "user", "content": render_listwise(prompt, query, pos, neg)},)
            key = request_key(stage.model, messages, stage.params())
            answers.append(
                Answer(
                    key=key,
                    model=stage.model,
                    content=response,
                    refusal=None,
                    finish_reason=_finish_reason(row.get("finish_reason")),
                    prompt_tokens=None,
                    completion_tokens=None,
                    cost_usd=None,
                    source="import",
                )
            )
    st.imported = cache.put_many(answers)
    st.already = len(answers) - st.imported
    return st


def answer_from_batch_line(
    line: dict[str, Any], config: JudgeConfig | None = None
) -> Answer | None:
    """One Batch API output line -> an answer (None for a failed request)."""
    resp = line.get("response") or {}
    if line.get("error") or int(resp.get("status_code", 200)) >= 400:
        return None
    body = resp.get("body") or {}
    choice = (body.get("choices") or [{}])[0]
    if not isinstance(line["custom_id"], str):
        raise TypeError("custom_id is not a string")
    msg = choice.get("message") or {}
    usage = body.get("usage") or {}
    model = str(body.get("model", ""))
    price = (config or JudgeConfig()).price_of(model)
    pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
    cost = price.cost(pt or 0, ct or 0, batch=True) if price and pt is not None else None
    return Answer(
        key=str(line["custom_id"]),
        model=model,
        content=msg.get("content"),
        refusal=msg.get("refusal"),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=pt,
        completion_tokens=ct,
        cost_usd=cost,
        source="batch",
    )


def import_batch_output(
    cache: Cache, paths: Sequence[str | os.PathLike[str]], config: JudgeConfig | None = None
) -> ImportStats:
    """Lines ``{custom_id, response: {status_code, body}, error}``; custom_id is trueneg's request key."""
    st = ImportStats()
    answers = []
    for path in paths:
        for lineno, line, err in iter_jsonl(path):
            if err is not None:
                raise err
            if not isinstance(line, dict):
                raise InputError(
                    "not a Batch API output line (not a JSON object)", path=str(path), line=lineno
                )
            st.rows += 1
            try:
                a = answer_from_batch_line(line, config)
            except (KeyError, TypeError, AttributeError, IndexError) as e:
                raise InputError(
                    f"not a Batch API output line ({type(e).__name__}: {e})",
                    path=str(path),
                    line=lineno,
                ) from None
            if a is None:
                st.skipped += 1
            elif a.content is None and a.refusal is None:
                st.no_answer += 1
            else:
                answers.append(a)
    st.imported = cache.put_many(answers)
    st.already = len(answers) - st.imported
    return st


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
