"""The judge cascade: N stages from config, each a backend, a model, a prompt, a trigger and a flag
rule. The default is RLHN: GPT-4o-mini on every example, then GPT-4o on the calls it flagged.

Each stage plans its calls (a Rust kernel packs each example's negatives into calls of at most 25),
renders the prompts, looks every request up in the cache, sends only the missing ones, and parses
the answers. Work goes in chunks, so memory stays bounded and a progress bar moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from trueneg import _core, judgments
from trueneg._progress import progress
from trueneg.collection import Collection
from trueneg.engine import Engine, LocalEngine
from trueneg.exceptions import InputError
from trueneg.judge.cache import Answer, Cache, request_key
from trueneg.judge.client import Outcome, Request, Sender, SendStats, fetcher
from trueneg.judge.config import (  # noqa: F401  (re-exported: the settings live in judge.config)
    BACKENDS,
    RLHN_STAGES,
    RULES,
    JudgeConfig,
    Stage,
    is_local_endpoint,
    with_overrides,
)
from trueneg.judge.cost import MESSAGE_OVERHEAD, count_tokens
from trueneg.judge.parse import parse_listwise, parse_pointwise
from trueneg.judge.render import load_prompt, render_listwise, render_pointwise
from trueneg.texts import passage_texts

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class CallPlan:
    """The calls of one stage: example, negatives span, and (after rendering) the request key."""

    example: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.example)

    def take(self, idx: np.ndarray) -> CallPlan:
        return CallPlan(self.example[idx], self.start[idx], self.end[idx])


class CollectionText:
    """The texts prompts are built from, held once: query text per example, passage texts by pid."""

    def __init__(self, coll: Collection) -> None:
        ex = coll.examples
        q = coll.queries["text"].to_pylist()
        self.qids = ex["qid"].to_numpy()
        self.query = [q[i] for i in self.qids.tolist()]
        self.passage = coll.passages["text"].to_pylist()  # as the prompts render it
        self.coll = coll
        self._model_text: list[str] | None = None
        # the ground truth of a call: every positive of the query, over all its examples (a file
        # with one example per (query, positive) shows the judge all of them)
        from trueneg.mine import query_positives

        self.positives = query_positives(self.qids, ex["positives"].to_pylist())
        self.negatives = ex["negatives"].to_pylist()

    @property
    def model_passage(self) -> list[str]:
        """Passage texts as models read them (title + text, :mod:`trueneg.texts`)."""
        if self._model_text is None:
            self._model_text = passage_texts(self.coll)
        return self._model_text


def plan_stage(text: CollectionText, stage: Stage, pointwise: bool) -> CallPlan:
    counts = np.fromiter((len(n) for n in text.negatives), np.uint32, len(text.negatives))
    ex, st, en = _core.plan_calls(counts, 1 if pointwise else stage.max_per_call)
    return CallPlan(ex.astype(np.int64), st.astype(np.int64), en.astype(np.int64))


def render_calls(text: CollectionText, stage: Stage, plan: CallPlan) -> list[str]:
    prompt = load_prompt(stage.prompt)
    out = []
    for e, s, t in zip(plan.example.tolist(), plan.start.tolist(), plan.end.tolist(), strict=True):
        negs = [text.passage[p] for p in text.negatives[e][s:t]]
        if prompt.kind == "pointwise":
            out.append(render_pointwise(prompt, text.query[e], negs[0]))
        else:
            pos = [text.passage[p] for p in text.positives[e]]
            out.append(render_listwise(prompt, text.query[e], pos, negs))
    return out


#: bytes per token used to reserve budget and TPM before a send: deliberately low (English runs
#: ~4.2 bytes per o200k token), so the reservation over-estimates the input
RESERVE_BYTES_PER_TOKEN = 3.0


def make_requests(
    stage: Stage, prompts: Sequence[str], config: JudgeConfig, *, tokens: np.ndarray | None = None
) -> list[Request]:
    """Requests with their keys and a worst-case reservation (input from ``tokens`` when given,
    else a conservative bytes-based bound; output the full ``max_completion_tokens``)."""
    params = stage.params()
    sorted_params = tuple(sorted(params.items()))
    price = config.price_of(stage.model)
    batch = stage.backend == "batch"
    out = []
    for i, p in enumerate(prompts):
        messages = ({"role": "user", "content": p},)
        n_in = (
            int(tokens[i])
            if tokens is not None
            else int(len(p.encode()) / RESERVE_BYTES_PER_TOKEN) + 1
        )
        est_in = n_in + MESSAGE_OVERHEAD
        est = price.cost(est_in, stage.max_completion_tokens, batch=batch) if price else 0.0
        out.append(
            Request(
                key=request_key(stage.model, messages, params),
                model=stage.model,
                messages=messages,
                params=sorted_params,
                est_tokens=est_in + stage.max_completion_tokens,
                est_cost=est,
                max_tokens_cap=stage.max_completion_tokens_cap,
            )
        )
    return out


def exact_estimate(
    stage: Stage, prompts: Sequence[str], config: JudgeConfig, sample: int | None = None
) -> tuple[float, float, int]:
    """(worst-case dollars, expected dollars, input tokens) for these prompts, with exact
    o200k_base input tokens (counted in Rust; with ``sample``, on that many evenly spaced prompts
    and scaled by bytes). Worst case: the full ``max_completion_tokens`` of output per call;
    expected: ``expected_completion_tokens``."""
    if not prompts:
        return 0.0, 0.0, 0
    price = config.price_of(stage.model)
    if sample is not None and len(prompts) > sample:
        idx = np.linspace(0, len(prompts) - 1, sample).astype(int)
        sub = [prompts[i] for i in idx]
        ratio = float(count_tokens(sub).sum()) / max(1, sum(len(p.encode()) for p in sub))
        n_in = sum(len(p.encode()) for p in prompts) * ratio
    else:
        n_in = float(count_tokens(prompts).sum())
    n_in += MESSAGE_OVERHEAD * len(prompts)
    if price is None:
        return 0.0, 0.0, int(n_in)
    batch = stage.backend == "batch"
    worst = price.cost(int(n_in), stage.max_completion_tokens * len(prompts), batch=batch)
    expected = price.cost(int(n_in), stage.expected_completion_tokens * len(prompts), batch=batch)
    return worst, expected, int(n_in)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class StageSummary:
    name: str
    model: str
    calls: int = 0
    unique_requests: int = 0
    cache_hits: int = 0
    sent: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    flagged_calls: int = 0
    false_negatives: int = 0
    examples_with_false_negatives: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    #: worst case: every call, the full output budget
    estimated_cost_usd: float = 0.0
    #: dry runs: counted input tokens, the stage's expected output per call
    expected_cost_usd: float = 0.0
    send: dict[str, Any] = field(default_factory=dict)


@dataclass
class JudgeSummary:
    stages: list[StageSummary]
    false_negatives: int
    examples_with_false_negatives: int
    cost_usd: float
    cost_per_false_negative: float | None
    seconds: float
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_sender(config: JudgeConfig, cache: Cache, budget_usd: float | None) -> Sender:
    """The online sender the config describes (the Ray ``Judge`` workers build theirs here too,
    each with its share of the budget)."""
    return Sender(
        cache=cache, settings=replace(config, budget_usd=budget_usd), price_of=config.price_of
    )


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def send_requests(
    config: JudgeConfig, cache: Cache, stage: Stage, requests: list[Request]
) -> tuple[SendStats, dict[str, Outcome]]:
    """Sends one stage's requests from this process (async, ``concurrency`` at a time, or one
    Batch API upload); every answer is stored in ``cache`` as it arrives."""
    outcomes: dict[str, Outcome] = {}
    if stage.backend == "batch":
        from trueneg.judge.batch_api import run_batch

        stats = run_batch(config, cache, stage, requests)
        return stats, outcomes
    sender = make_sender(config, cache, config.budget_usd)
    stats = asyncio.run(sender.send_all(requests, on_done=lambda o: outcomes.__setitem__(o.key, o)))
    return stats, outcomes


def run_cascade(
    coll: Collection,
    config: JudgeConfig,
    cache: Cache,
    *,
    dry_run: bool = False,
    offline: bool = False,
    engine: Engine | None = None,
) -> tuple[JudgeSummary, pa.Table]:
    """Run every stage over the collection. Returns the summary and the judge stages' judgment rows.

    ``dry_run`` sends nothing and estimates worst-case cost (every call of every stage, the full
    ``max_completion_tokens`` of output); ``offline`` sends nothing and judges from the cache only.
    ``engine`` sends the requests (default: this process; the Ray engine spreads them over
    workers); it stores every answer in ``cache`` before it returns."""
    send = (engine or LocalEngine()).send
    t0 = time.perf_counter()
    text = CollectionText(coll)
    summaries: list[StageSummary] = []
    rows: list[pa.Table] = []
    prev_flagged: CallPlan | None = None
    for si, stage in enumerate(config.stages, start=1):
        if stage.is_local:
            run_local = _qrels_stage if stage.backend == "qrels" else _local_stage
            summ, table, prev_flagged = run_local(text, stage, si, prev_flagged, dry_run)
            summaries.append(summ)
            rows.append(table)
            continue
        if stage.method == "arhn":
            summ, table, prev_flagged = _arhn_stage(
                text, stage, si, prev_flagged, config, cache, send, dry_run=dry_run, offline=offline
            )
            summaries.append(summ)
            rows.append(table)
            continue
        prompt = load_prompt(stage.prompt)
        pointwise = prompt.kind == "pointwise"
        summ = StageSummary(stage.name, stage.model)
        if stage.trigger == "all" or dry_run:
            plan = plan_stage(text, stage, pointwise)
        else:
            plan = (
                prev_flagged
                if prev_flagged is not None
                else CallPlan(*(np.zeros(0, np.int64),) * 3)
            )
        summ.calls = len(plan)
        flagged_idx: list[np.ndarray] = []
        examples_fn: set[int] = set()
        fetch = fetcher(config, cache, stage, send, summ, offline=offline)
        bar = progress(total=len(plan), desc=f"judge {stage.name}", unit=" calls")
        for sl in _chunks(len(plan), config.chunk_calls):
            part = plan.take(np.arange(sl.start, sl.stop))
            prompts = render_calls(text, stage, part)
            if dry_run:
                worst, expected, n_in = exact_estimate(stage, prompts, config, sample=2000)
                summ.estimated_cost_usd += worst
                summ.expected_cost_usd += expected
                summ.prompt_tokens += n_in
                bar.update(len(part))
                continue
            requests = make_requests(stage, prompts, config)
            summ.estimated_cost_usd += sum(r.est_cost for r in requests)
            keys = [r.key for r in requests]
            found, why = fetch(requests)
            rows.append(
                _judge_rows(
                    text,
                    stage,
                    si,
                    prompt.name,
                    part,
                    keys,
                    found,
                    why,
                    pointwise,
                    summ,
                    flagged_idx,
                    examples_fn,
                    sl.start,
                )
            )
            bar.update(len(part))
        bar.close()
        summ.examples_with_false_negatives = len(examples_fn)
        fi = np.concatenate(flagged_idx) if flagged_idx else np.zeros(0, np.int64)
        prev_flagged = plan.take(fi)
        summaries.append(summ)
    table = pa.concat_tables(rows) if rows else judgments.empty()
    fin = judgments.final_flags(table) if len(table) else table
    fin_flag = fin.filter(fin["flagged"]) if len(fin) else fin
    total_cost = sum(s.cost_usd for s in summaries)
    n_fn = len(fin_flag)
    summary = JudgeSummary(
        stages=summaries,
        false_negatives=n_fn,
        examples_with_false_negatives=len(np.unique(fin_flag["example"].to_numpy())) if n_fn else 0,
        cost_usd=total_cost,
        cost_per_false_negative=(total_cost / n_fn) if n_fn else None,
        seconds=time.perf_counter() - t0,
        dry_run=dry_run,
    )
    return summary, table


def _arhn_stage(
    text: CollectionText,
    stage: Stage,
    stage_index: int,
    prev: CallPlan | None,
    config: JudgeConfig,
    cache: Cache,
    send: Any,
    *,
    dry_run: bool,
    offline: bool,
) -> tuple[StageSummary, pa.Table, CallPlan]:
    """An ARHN stage (:mod:`trueneg.judge.arhn`) over every example, or over the negatives of
    the calls the previous stage passed on. Its false negatives are the relabelled negatives; the
    calls of examples with a relabelled or ambiguous negative go on to the next stage."""
    from trueneg.judge.arhn import run_arhn

    plan = (
        plan_stage(text, stage, False)
        if stage.trigger == "all" or dry_run or prev is None
        else prev
    )
    summ = StageSummary(stage.name, stage.model)
    spans: dict[int, list[tuple[int, int]]] = {}
    for e, s, t in zip(plan.example.tolist(), plan.start.tolist(), plan.end.tolist(), strict=True):
        spans.setdefault(e, []).append((s, t))

    def estimate(prompts: list[str], output_tokens: int) -> None:
        if not prompts:
            return
        per_call = replace(stage, expected_completion_tokens=output_tokens // len(prompts))
        worst, expected, n_in = exact_estimate(per_call, prompts, config, sample=2000)
        summ.estimated_cost_usd += worst
        summ.expected_cost_usd += expected
        summ.prompt_tokens += n_in

    def account(a: Answer, key: str) -> None:
        summ.prompt_tokens += a.prompt_tokens or 0
        summ.completion_tokens += a.completion_tokens or 0
        if a.source in ("api", "batch"):
            summ.cost_usd += a.cost_usd or 0.0

    fetch = fetcher(config, cache, stage, send, summ, offline=offline)
    table, flagged_rows, statuses, calls = run_arhn(
        text,
        stage,
        stage_index,
        config,
        spans,
        fetch,
        account,
        dry_run_estimate=estimate if dry_run else None,
    )
    summ.calls = calls
    summ.statuses = statuses
    if len(table):
        flags = table["flagged"].to_numpy(zero_copy_only=False)
        summ.false_negatives = int(flags.sum())
        summ.examples_with_false_negatives = len(set(table["example"].to_numpy()[flags].tolist()))
    passed = np.isin(plan.example, np.asarray(flagged_rows, np.int64))
    summ.flagged_calls = int(passed.sum())
    return summ, table, plan.take(np.flatnonzero(passed))


def _local_plan(
    text: CollectionText, stage: Stage, prev: CallPlan | None
) -> tuple[StageSummary, CallPlan]:
    """A local stage's calls (all, or those the previous stage passed on) and its summary."""
    plan = plan_stage(text, stage, False) if stage.trigger == "all" or prev is None else prev
    summ = StageSummary(stage.name, stage.model)
    summ.calls = len(plan)
    return summ, plan


def _local_stage(
    text: CollectionText, stage: Stage, stage_index: int, prev: CallPlan | None, dry_run: bool
) -> tuple[StageSummary, pa.Table, CallPlan]:
    """A local scorer: each negative's score for its query (embedding cosine, or a cross-encoder's
    logit) against the lowest positive's. Negatives at or above ``p - |p| * local_margin`` are
    "uncertain" and their calls go on to the next stage; the rest are "not_relevant". It flags no
    false negative itself (unless ``local_flags``: then the uncertain ones are its false
    negatives) and costs nothing; the scores are kept in the ``similarity`` column."""
    summ, plan = _local_plan(text, stage, prev)
    if dry_run or not len(plan):
        return summ, judgments.empty(), plan
    score = _local_scores(text, stage, plan)
    ex_col: list[int] = []
    pid_col: list[int] = []
    label_col: list[str] = []
    sim_col: list[float] = []
    flag_col: list[bool] = []
    examples_fn: set[int] = set()
    flagged_calls: list[int] = []
    for i, (e, s, t) in enumerate(
        zip(plan.example.tolist(), plan.start.tolist(), plan.end.tolist(), strict=True)
    ):
        bound = uncertain_bound(score, text.positives[e], e, stage.local_margin)
        negs = text.negatives[e][s:t]
        sims = [score[(e, p)] for p in negs]
        uncertain = [x >= bound for x in sims]
        if any(uncertain):
            flagged_calls.append(i)
            summ.flagged_calls += 1
            if stage.local_flags:
                summ.false_negatives += sum(uncertain)
                examples_fn.add(e)
        flag_col.extend(uncertain if stage.local_flags else [False] * len(negs))
        ex_col.extend([e] * len(negs))
        pid_col.extend(negs)
        sim_col.extend(sims)
        label_col.extend("uncertain" if u else "not_relevant" for u in uncertain)
    summ.statuses = {"ok": len(plan)}
    table = stage_rows(
        text,
        stage,
        stage_index,
        ex_col,
        pid_col,
        label=label_col,
        flagged=flag_col,
        status=["ok"] * len(ex_col),
        similarity=sim_col,
    )
    summ.examples_with_false_negatives = len(examples_fn)
    return summ, table, plan.take(np.asarray(flagged_calls, np.int64))


def uncertain_bound(
    score: dict[tuple[int, int], float], positives: list[int], example: int, margin: float
) -> float:
    """The score at or above which a negative of ``example`` is uncertain for a local stage:
    ``p - |p| * margin``, ``p`` the lowest score of its positives."""
    ref = min(score[(example, p)] for p in positives)
    return ref - abs(ref) * margin


def _qrels_stage(
    text: CollectionText, stage: Stage, stage_index: int, prev: CallPlan | None, dry_run: bool
) -> tuple[StageSummary, pa.Table, CallPlan]:
    """Human labels as a judge: each negative looked up in the qrels by (query id, docid).
    Labels "relevant" (flagged: a false negative) or "not_relevant"; a pair the qrels do not
    judge gets status "unjudged" and no label. Calls with a flagged pair go on."""
    from trueneg.formats.beir import read_qrels

    summ, plan = _local_plan(text, stage, prev)
    if dry_run or not len(plan):
        return summ, judgments.empty(), plan
    assert stage.qrels is not None
    qrels = read_qrels(stage.qrels)
    query_ids = text.coll.queries["query_id"].to_pylist()
    docids = text.coll.passages["docid"].to_pylist()
    if all(q is None for q in query_ids):
        raise InputError(
            f"stage {stage.name}: the collection has no query ids to look up in the qrels "
            "(ingest a format with ids: BEIR, Tevatron, tevatron-v2)"
        )
    ex_col: list[int] = []
    pid_col: list[int] = []
    label_col: list[str | None] = []
    flag_col: list[bool] = []
    status_col: list[str] = []
    examples_fn: set[int] = set()
    flagged_calls: list[int] = []
    for i, (e, s, t) in enumerate(
        zip(plan.example.tolist(), plan.start.tolist(), plan.end.tolist(), strict=True)
    ):
        judged = qrels.get(query_ids[int(text.qids[e])] or "", {})
        negs = text.negatives[e][s:t]
        any_flag = False
        for p in negs:
            grade = judged.get(docids[p] or "")
            flag = grade is not None and grade >= stage.relevance_threshold
            any_flag |= flag
            ex_col.append(e)
            pid_col.append(p)
            flag_col.append(flag)
            if grade is None:
                label_col.append(None)
                status_col.append("unjudged")
            else:
                label_col.append("relevant" if flag else "not_relevant")
                status_col.append("ok")
            summ.statuses[status_col[-1]] = summ.statuses.get(status_col[-1], 0) + 1
        if any_flag:
            flagged_calls.append(i)
            summ.flagged_calls += 1
            examples_fn.add(e)
    summ.false_negatives = sum(flag_col)
    summ.examples_with_false_negatives = len(examples_fn)
    table = stage_rows(
        text,
        stage,
        stage_index,
        ex_col,
        pid_col,
        label=label_col,
        flagged=flag_col,
        status=status_col,
    )
    return summ, table, plan.take(np.asarray(flagged_calls, np.int64))


def _local_scores(
    text: CollectionText, stage: Stage, plan: CallPlan
) -> dict[tuple[int, int], float]:
    """Score of every (example, passage) the plan needs: its positives and its negatives."""
    ex_ids = np.unique(plan.example).tolist()
    if stage.local_scorer == "cross-encoder":
        from trueneg.models import Reranker

        pairs = [
            (e, p) for e in ex_ids for p in dict.fromkeys(text.positives[e] + text.negatives[e])
        ]
        rr = Reranker(stage.model)
        sc = rr.score([text.query[e] for e, _ in pairs], [text.model_passage[p] for _, p in pairs])
        return {k: float(v) for k, v in zip(pairs, sc.tolist(), strict=True)}
    from trueneg.models import Encoder, EncoderConfig

    enc = Encoder(EncoderConfig(model=None if stage.model in ("", "default") else stage.model))
    pids = sorted({p for e in ex_ids for p in text.positives[e] + text.negatives[e]})
    pe = enc.encode([text.model_passage[p] for p in pids], "passage", desc=f"{stage.name} passages")
    qe = enc.encode([text.query[e] for e in ex_ids], "query", desc=f"{stage.name} queries")
    row_of = {p: i for i, p in enumerate(pids)}
    return {
        (e, p): float(pe[row_of[p]] @ qe[qi])
        for qi, e in enumerate(ex_ids)
        for p in text.positives[e] + text.negatives[e]
    }


def _judge_rows(
    text: CollectionText,
    stage: Stage,
    stage_index: int,
    prompt_name: str,
    part: CallPlan,
    keys: list[str],
    found: dict[str, Answer],
    why: dict[str, tuple[str, str]],
    pointwise: bool,
    summ: StageSummary,
    flagged_idx: list[np.ndarray],
    examples_fn: set[int],
    offset: int,
) -> pa.Table:
    ex_col: list[int] = []
    pid_col: list[int] = []
    label_col: list[str | None] = []
    flag_col: list[bool] = []
    status_col: list[str] = []
    key_col: list[str] = []
    reason_col: list[str | None] = []
    flagged_here: list[int] = []
    counted: set[str] = set()
    for i, (e, s, t, k) in enumerate(
        zip(part.example.tolist(), part.start.tolist(), part.end.tolist(), keys, strict=True)
    ):
        pids = text.negatives[e][s:t]
        a = found.get(k)
        if a is None:
            status, reason = why.get(k, ("missing", "no answer in the cache"))
            labels: list[str | None] = [None] * len(pids)
            flags = [False] * len(pids)
        else:
            if k not in counted:
                counted.add(k)
                summ.prompt_tokens += a.prompt_tokens or 0
                summ.completion_tokens += a.completion_tokens or 0
                if a.source in ("api", "batch"):
                    summ.cost_usd += a.cost_usd or 0.0
            if pointwise:
                sc = parse_pointwise(a.content, finish_reason=a.finish_reason, refusal=a.refusal)
                status, reason = sc.status, None
                labels = [None if sc.score is None else str(sc.score)]
                flags = [sc.score is not None and sc.score >= stage.min_score]
                trig = flags[0]
            else:
                v = parse_listwise(
                    a.content, len(pids), finish_reason=a.finish_reason, refusal=a.refusal
                )
                status, reason = v.status, ("; ".join(v.notes) or None)
                labels = v.labels(len(pids))
                fl = set(v.flagged(stage.flag_rule))
                flags = [j in fl for j in range(len(pids))]
                trig = bool(v.flagged(stage.trigger_rule))
            if trig:
                flagged_here.append(offset + i)
        summ.statuses[status] = summ.statuses.get(status, 0) + 1
        if any(flags):
            summ.flagged_calls += 1
            examples_fn.add(e)
            summ.false_negatives += sum(flags)
        ex_col.extend([e] * len(pids))
        pid_col.extend(pids)
        label_col.extend(labels)
        flag_col.extend(flags)
        status_col.extend([status] * len(pids))
        key_col.extend([k] * len(pids))
        reason_col.extend([reason] * len(pids))
    flagged_idx.append(np.asarray(flagged_here, np.int64))
    return stage_rows(
        text,
        stage,
        stage_index,
        ex_col,
        pid_col,
        prompt=prompt_name,
        label=label_col,
        flagged=flag_col,
        status=status_col,
        request_key=key_col,
        reason=reason_col,
    )


def stage_rows(
    text: CollectionText,
    stage: Stage,
    stage_index: int,
    examples: list[int],
    pids: list[int],
    *,
    prompt: str | None = None,
    **columns: Any,
) -> pa.Table:
    """A stage's judgment rows: one per (example, pid), the stage's name, index, model and
    prompt on each, and the per-row ``columns`` (label, flagged, status, ...)."""
    n = len(examples)
    return judgments.table(
        {
            "example": examples,
            "qid": text.qids[np.asarray(examples, np.int64)] if n else [],
            "pid": pids,
            "stage": [stage.name] * n,
            "stage_index": [stage_index] * n,
            "model": [stage.model] * n,
            "prompt": [prompt] * n,
            **columns,
        }
    )
