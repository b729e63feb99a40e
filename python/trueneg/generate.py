"""Generated hard negatives (SyNeg, Li et al., arXiv 2412.17250): an LLM writes hard negatives
from (query, positive), and they are mixed with the mined ones per example.

One call per example asks for ``per_call`` negatives with SyNeg's prompt structure (context: the
task, what a hard negative is, a JSON output format; attributes: domain, difficulty, length;
reflection: reasoning before the answer; ``judge/prompts/syneg.txt``). Each generated passage is
checked: JSON read, length within ``min_words``..``max_words``, not a near-duplicate (MinHash
Jaccard of word 5-grams, the dedup kernel, at or above ``max_similarity``) of a positive, of an
existing negative or of another generated one, and, with a ``judge``, not flagged as relevant by
it. Passing ones become passages of the output collection (interned by content, docid
``gen-<hash>``, ``extra.provenance = "generated:<model>"``) and enter examples two ways:

- **mix**: ``mix_ratio`` of each example's negatives are generated ones (SyNeg mixes per
  instance; pure synthetic negatives train unstably): the easiest mined ones (the tail of the
  list) are replaced, the hardest kept;
- **refill**: an example with fewer than ``refill_to`` negatives (after remove-hn or relabel)
  gets generated ones appended up to it (None: the collection's median count; 0: no refill).

Requests go through the judge's machinery: the same answer cache, budget, Batch API, resume
(a rerun sends only what is missing) and secrets handling.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from trueneg import _core
from trueneg._io import prepare_output
from trueneg.collection import EXAMPLE_SCHEMA, PASSAGE_SCHEMA, Collection, refresh_extras
from trueneg.collection.schema import hash_columns, keys_to_binary, string_buffers
from trueneg.config import at_least, check_keys, from_table, load_toml, one_of, within
from trueneg.exceptions import InputError
from trueneg.judge.client import SendSettings, fetcher

__all__ = ["GenerateConfig", "GenerateReport", "generate_collection", "parse_generated"]

PROMPTS_DIR = Path(__file__).parent / "judge" / "prompts"
_PLACEHOLDER = re.compile(r"\{(domain|query_json|positive_json|num|difficulty|length)\}")


@dataclass(frozen=True)
class GenerateConfig(SendSettings):
    """``trueneg generate`` / the ``[generate]`` table / :func:`trueneg.generate`."""

    model: str = "gpt-4o-mini"
    #: a bundled prompt ("syneg") or a template file with the same placeholders
    prompt: str = "syneg"
    #: openai (any OpenAI-compatible endpoint), batch (the Batch API), replay (cache only)
    backend: str = "openai"
    #: negatives asked for per example (one call); spares cover the ones that fail the checks
    per_call: int = 4
    #: share of each example's negatives replaced by generated ones (0: none)
    mix_ratio: float = 0.25
    #: examples with fewer negatives get generated ones appended up to this many (None: the
    #: collection's median negatives count; 0: no refill)
    refill_to: int | None = None
    #: SyNeg's attributes: the difficulty asked for, and the domain (None: the example's subset)
    difficulty: str = "hard"
    domain: str | None = None
    #: accepted lengths, in words (the length asked for is the positive's, within these bounds)
    min_words: int = 15
    max_words: int = 400
    #: a generated passage whose MinHash Jaccard (word 5-grams) with a positive, a negative of
    #: its example or another generated one reaches this is a near-duplicate and is not used
    max_similarity: float = 0.5
    temperature: float = 0.7
    max_completion_tokens: int = 4096
    #: dollars per 1M tokens for models without an OpenAI list price (as the judge's ``prices``)
    prices: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: where to look the generated negatives over before use: a judge TOML file (its cascade
    #: judges them as negatives of their example; flagged ones are not used); None: no check
    judge: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("backend", self.backend, ("openai", "batch", "replay"))
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError("model must name the LLM (e.g. 'gpt-4o-mini')")
        within("per_call", self.per_call, 1, 50)
        within("mix_ratio", self.mix_ratio, 0.0, 1.0)
        at_least("refill_to", self.refill_to, 0, optional=True)
        at_least("min_words", self.min_words, 1)
        at_least("max_words", self.max_words, self.min_words)
        within("max_similarity", self.max_similarity, 0.0, 1.0)
        within("temperature", self.temperature, 0.0, 2.0)
        at_least("max_completion_tokens", self.max_completion_tokens, 1)
        at_least("budget_usd", self.budget_usd, 0.0, optional=True)
        if self.judge is not None and not Path(self.judge).is_file():
            raise InputError("judge must name a judge TOML file", path=self.judge)
        load_template(self.prompt)

    @classmethod
    def from_toml(cls, path: str | Path) -> GenerateConfig:
        data = load_toml(path)
        if "generate" in data:
            check_keys(data, ("generate",), "the generate file", str(path), noun="table")
        return from_table(cls, data.get("generate", data), "[generate]", str(path))

    def judge_config(self) -> Any:
        """The sending settings as a one-stage judge config (the judge's sender, cache, budget
        and Batch API send the generation requests)."""
        from trueneg.judge import JudgeConfig, Stage

        send = {f: getattr(self, f) for f in SendSettings.__dataclass_fields__}
        stage = Stage(
            "generate",
            self.model,
            self.prompt,
            backend=self.backend,
            temperature=self.temperature,
            max_completion_tokens=self.max_completion_tokens,
            max_completion_tokens_cap=max(16384, self.max_completion_tokens),
        )
        return JudgeConfig(**send, stages=(stage,), prices=dict(self.prices))


def load_template(name: str) -> str:
    p = PROMPTS_DIR / f"{name}.txt"
    if not p.is_file():
        p = Path(name)
        if not p.is_file():
            raise InputError(
                f"unknown generation prompt {name!r} (bundled: syneg; or a template file)"
            )
    return p.read_text(encoding="utf-8")


def render(template: str, **values: str) -> str:
    """Placeholders replaced in one pass (inserted text is never scanned again)."""
    missing = {m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values)
    if missing:
        raise InputError(f"the generation prompt needs {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass
class Generated:
    status: str
    texts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_generated(
    content: str | None, *, finish_reason: str | None = "stop", refusal: str | None = None
) -> Generated:
    """The JSON answer (``{"reasoning": ..., "hard_negatives": [...]}``; fenced, after a
    <think> block or with text around it): the strings of ``hard_negatives``."""
    from trueneg.judge.parse import call_failure, json_object

    bad = call_failure(content, finish_reason, refusal)
    if bad is not None:
        return Generated(bad)
    obj, _ = json_object(content or "")
    items = obj.get("hard_negatives") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return Generated("parse_error", notes=['no JSON object with a "hard_negatives" list'])
    texts = [" ".join(x.split()) for x in items if isinstance(x, str) and x.strip()]
    g = Generated("ok", texts)
    if len(texts) < len(items):
        g.notes.append(f"{len(items) - len(texts)} entries are not text")
    return g


@dataclass
class GenerateReport:
    examples: int
    calls: int
    sent: int
    cache_hits: int
    failed_calls: int
    statuses: dict[str, int]
    generated: int
    #: per check, how many generated passages failed it
    rejected: dict[str, int]
    used: int
    mixed: int
    refilled: int
    refill_to: int
    examples_refilled: int
    examples_still_short: int
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    seconds: float = 0.0
    dry_run: bool = False
    estimated_cost_usd: float = 0.0
    expected_cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _needs(n_neg: np.ndarray, mix_ratio: float, refill_to: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example: generated negatives to mix in (replacing mined ones) and to append."""
    mix = np.floor(n_neg * mix_ratio + 0.5).astype(np.int64)
    refill = np.maximum(0, refill_to - n_neg).astype(np.int64)
    return mix, refill


def generate_collection(
    path: str | Path,
    out: str | Path,
    config: GenerateConfig | None = None,
    *,
    cache_path: str | Path | None = None,
    dry_run: bool = False,
    offline: bool = False,
    overwrite: bool = False,
) -> GenerateReport:
    """Write at ``out`` a copy of the collection with generated hard negatives mixed in and
    short examples refilled; ``generate.json`` holds the report. With ``dry_run`` nothing is
    sent or written: the report has the calls and their estimated cost."""
    from trueneg.judge import CACHE_FILE, Cache
    from trueneg.judge.cascade import exact_estimate, make_requests, send_requests
    from trueneg.judge.config import JudgeConfig

    t0 = time.perf_counter()
    cfg = config or GenerateConfig()
    coll = Collection.load(path)
    if not dry_run:
        prepare_output(out, [coll.path], overwrite=overwrite)
    ex = coll.examples
    n = len(ex)
    negs = ex["negatives"].to_pylist()
    poss = ex["positives"].to_pylist()
    n_neg = np.fromiter((len(x) for x in negs), np.int64, n)
    refill_to = cfg.refill_to if cfg.refill_to is not None else (int(np.median(n_neg)) if n else 0)
    mix, refill = _needs(n_neg, cfg.mix_ratio, refill_to)
    rows = np.flatnonzero((mix + refill) > 0).tolist()
    texts = coll.passages["text"].to_pylist()
    q_text = coll.queries["text"].to_pylist()
    q_subset = coll.queries["subset"].to_pylist()
    qids = ex["qid"].to_pylist()
    template = load_template(cfg.prompt)
    prompts = []
    for r in rows:
        pos = texts[poss[r][0]] if poss[r] else ""
        length = int(np.clip(len(pos.split()), cfg.min_words, cfg.max_words))
        prompts.append(
            render(
                template,
                domain=cfg.domain or str(q_subset[qids[r]] or "general"),
                query_json=orjson.dumps(q_text[qids[r]]).decode(),
                positive_json=orjson.dumps(pos).decode(),
                num=str(cfg.per_call),
                difficulty=cfg.difficulty,
                length=str(length),
            )
        )
    jcfg: JudgeConfig = cfg.judge_config()
    stage = jcfg.stages[0]
    report = GenerateReport(
        examples=len(rows),
        calls=len(prompts),
        sent=0,
        cache_hits=0,
        failed_calls=0,
        statuses={},
        generated=0,
        rejected={},
        used=0,
        mixed=0,
        refilled=0,
        refill_to=refill_to,
        examples_refilled=0,
        examples_still_short=0,
        cost_usd=0.0,
        prompt_tokens=0,
        completion_tokens=0,
        dry_run=dry_run,
    )
    if dry_run:
        est_stage = replace(stage, expected_completion_tokens=160 * cfg.per_call)
        worst, expected, n_in = exact_estimate(est_stage, prompts, jcfg, sample=2000)
        report.estimated_cost_usd, report.expected_cost_usd = worst, expected
        report.prompt_tokens = n_in
        report.seconds = time.perf_counter() - t0
        return report
    cache_file = Path(cache_path) if cache_path is not None else coll.path / CACHE_FILE
    requests = make_requests(stage, prompts, jcfg)
    with Cache(cache_file) as cache:
        tally = SimpleNamespace(unique_requests=0, cache_hits=0, sent=0, failed=0, send={})
        found, failures = fetcher(jcfg, cache, stage, send_requests, tally, offline=offline)(
            requests
        )
        report.cache_hits, report.sent, report.failed_calls = (
            tally.cache_hits,
            tally.sent,
            tally.failed,
        )
        why = {k: status for k, (status, _) in failures.items()}
    generated: dict[int, list[str]] = {}
    for r, req in zip(rows, requests, strict=True):
        a = found.get(req.key)
        if a is None:
            st = why.get(req.key, "missing")
            report.statuses[st] = report.statuses.get(st, 0) + 1
            continue
        if a.source in ("api", "batch"):
            report.cost_usd += a.cost_usd or 0.0
        report.prompt_tokens += a.prompt_tokens or 0
        report.completion_tokens += a.completion_tokens or 0
        g = parse_generated(a.content, finish_reason=a.finish_reason, refusal=a.refusal)
        report.statuses[g.status] = report.statuses.get(g.status, 0) + 1
        generated[r] = g.texts
        report.generated += len(g.texts)
    accepted = _check(coll, cfg, generated, poss, negs, texts, report)
    if cfg.judge is not None and accepted:
        accepted = _judge_check(coll, cfg, accepted, cache_file, report)
    new, passages = _assemble(coll, cfg, accepted, mix, refill, report)
    changed = np.asarray(
        [
            len(a) != len(b) or a != b
            for a, b in zip(new["negatives"].to_pylist(), negs, strict=True)
        ],
        bool,
    )
    new, fields = refresh_extras(coll, new, changed, passages["docid"].to_pylist())
    report.seconds = time.perf_counter() - t0
    _write(coll, out, new, passages, cfg, report, fields, overwrite)
    return report


def _similar(sig: np.ndarray, a: int, others: list[int], threshold: float) -> bool:
    if not others:
        return False
    agree = (sig[others] == sig[a]).mean(axis=1)
    return bool((agree >= threshold).any())


def _check(
    coll: Collection,
    cfg: GenerateConfig,
    generated: dict[int, list[str]],
    poss: list[list[int]],
    negs: list[list[int]],
    texts: list[str],
    report: GenerateReport,
) -> dict[int, list[str]]:
    """The generated passages that pass the length and near-duplicate checks, per example."""
    rejected = report.rejected
    flat: list[str] = []
    spans: dict[int, tuple[int, int, int, int]] = {}
    for r, gen in generated.items():
        ctx = [texts[p] for p in poss[r]] + [texts[p] for p in negs[r]]
        s = len(flat)
        flat += ctx + gen
        spans[r] = (s, s + len(poss[r]), s + len(ctx), s + len(ctx) + len(gen))
    if not flat:
        return {}
    sig = _core.minhash_signatures(
        string_buffers(pa.array(flat, pa.string())), num_perm=128, seed=1, unit="word", ngram=5
    )
    out: dict[int, list[str]] = {}
    for r, gen in generated.items():
        s, p_end, c_end, _ = spans[r]
        kept: list[int] = []
        for j, text in enumerate(gen):
            i = c_end + j
            words = len(text.split())
            reason = None
            if words < cfg.min_words:
                reason = "too_short"
            elif words > cfg.max_words:
                reason = "too_long"
            elif _similar(sig, i, list(range(s, p_end)), cfg.max_similarity):
                reason = "near_duplicate_of_positive"
            elif _similar(sig, i, list(range(p_end, c_end)), cfg.max_similarity):
                reason = "near_duplicate_of_negative"
            elif _similar(sig, i, kept, cfg.max_similarity):
                reason = "near_duplicate_of_generated"
            if reason is not None:
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            kept.append(i)
        out[r] = [flat[i] for i in kept]
    return out


def _judge_check(
    coll: Collection,
    cfg: GenerateConfig,
    accepted: dict[int, list[str]],
    cache_file: Path,
    report: GenerateReport,
) -> dict[int, list[str]]:
    """The judge's cascade over the generated passages as negatives of their example: flagged
    ones (relevant after all) are dropped. Its answers share the cache."""
    import tempfile

    from trueneg import judgments
    from trueneg.collection import CollectionBuilder
    from trueneg.fix import false_negative_pairs
    from trueneg.judge import JudgeConfig, judge_collection

    assert cfg.judge is not None
    jc = JudgeConfig.from_toml(cfg.judge)
    if cfg.budget_usd is not None:  # the run's budget caps the check too
        jc = replace(jc, budget_usd=cfg.budget_usd)
    texts = coll.passages["text"].to_pylist()
    q_text = coll.queries["text"].to_pylist()
    ex = coll.examples
    qids, poss = ex["qid"].to_pylist(), ex["positives"].to_pylist()
    order = [r for r in sorted(accepted) if accepted[r]]
    with tempfile.TemporaryDirectory(prefix="trueneg-generate-") as tmp:
        folder = Path(tmp) / "generated"
        with CollectionBuilder(folder, source_format="generated") as b:
            for line, r in enumerate(order):
                b.add_example(
                    query=q_text[qids[r]],
                    subset="generated",
                    positives=[(f"p{p}", None, texts[p], None) for p in poss[r]],
                    negatives=[(f"g{r}-{j}", None, t, None) for j, t in enumerate(accepted[r])],
                    line=line,
                )
        summary = judge_collection(folder, jc, cache_path=cache_file)
        report.cost_usd += summary.cost_usd
        fn = false_negative_pairs(judgments.load(folder))
        docids = Collection.load(folder).passages["docid"].to_pylist()
        flagged = {docids[p] for p in fn["pid"].to_pylist()}
    out: dict[int, list[str]] = {}
    for r, gen in accepted.items():
        keep = [t for j, t in enumerate(gen) if f"g{r}-{j}" not in flagged]
        if len(keep) < len(gen):
            report.rejected["relevant"] = report.rejected.get("relevant", 0) + len(gen) - len(keep)
        out[r] = keep
    return out


def _assemble(
    coll: Collection,
    cfg: GenerateConfig,
    accepted: dict[int, list[str]],
    mix: np.ndarray,
    refill: np.ndarray,
    report: GenerateReport,
) -> tuple[pa.Table, pa.Table]:
    """The new examples (generated pids mixed in and appended) and the passages table with the
    generated passages added (a text already in the collection keeps its pid)."""
    p = coll.passages
    content = p["content_hash"].combine_chunks().to_pylist()
    pid_of = {h: i for i, h in reversed(list(enumerate(content)))}
    all_new = list(dict.fromkeys(t for r in sorted(accepted) for t in accepted[r]))
    keys = keys_to_binary(hash_columns([""] * len(all_new), all_new)).to_pylist() if all_new else []
    new_rows: dict[str, Any] = {k: [] for k in PASSAGE_SCHEMA.names}
    gen_pid: dict[str, int] = {}
    next_pid = len(p)
    provenance = orjson.dumps({"provenance": f"generated:{cfg.model}"}).decode()
    for t, h in zip(all_new, keys, strict=True):
        if h in pid_of:
            gen_pid[t] = pid_of[h]
            continue
        gen_pid[t] = pid_of[h] = next_pid
        new_rows["pid"].append(next_pid)
        new_rows["docid"].append("gen-" + h.hex()[:16])
        new_rows["title"].append(None)
        new_rows["text"].append(t)
        new_rows["extra"].append(provenance)
        new_rows["content_hash"].append(h)
        next_pid += 1
    passages = pa.concat_tables([p, pa.table(new_rows, schema=PASSAGE_SCHEMA)])
    ex = coll.examples
    negs = ex["negatives"].to_pylist()
    poss = ex["positives"].to_pylist()
    scores = ex["neg_scores"].to_pylist()
    new_negs, new_scores = [], []
    refilled_examples = short = 0
    for r, neg in enumerate(negs):
        gen = [gen_pid[t] for t in accepted.get(r, [])]
        taken = set(neg) | set(poss[r])  # a text already there (interned to its pid) is not new
        gen = [g for g in dict.fromkeys(gen) if g not in taken]
        sc = scores[r]
        m = min(int(mix[r]), len(gen))
        keep_n = len(neg) - m
        out, out_sc = neg[:keep_n] + gen[:m], (sc[:keep_n] + [float("nan")] * m) if sc else sc
        report.mixed += m
        add = min(int(refill[r]), len(gen) - m)
        out += gen[m : m + add]
        if out_sc is not None:
            out_sc = out_sc + [float("nan")] * add
        report.refilled += add
        refilled_examples += add > 0
        short += len(out) < report.refill_to
        new_negs.append(out)
        new_scores.append(out_sc)
    report.used = report.mixed + report.refilled
    report.examples_refilled = refilled_examples
    report.examples_still_short = short
    cols = {c: ex[c] for c in ex.column_names}
    cols["negatives"] = pa.array(new_negs, pa.list_(pa.uint32()))
    cols["neg_scores"] = pa.array(new_scores, pa.list_(pa.float64()))
    return pa.table(cols, schema=EXAMPLE_SCHEMA), passages


def _write(
    coll: Collection,
    out: str | Path,
    examples: pa.Table,
    passages: pa.Table,
    cfg: GenerateConfig,
    report: GenerateReport,
    fields: dict[str, dict[str, int]],
    overwrite: bool,
) -> None:
    import pyarrow.parquet as pq

    from trueneg._io import atomic_dir
    from trueneg.collection import parquet_options, step_record, write_manifest

    with atomic_dir(out, overwrite=overwrite, inputs=[coll.path]) as tmp:
        pq.write_table(passages, tmp / "passages.parquet", **parquet_options())
        (tmp / "queries.parquet").write_bytes((coll.path / "queries.parquet").read_bytes())
        pq.write_table(examples, tmp / "examples.parquet", **parquet_options())
        (tmp / "generate.json").write_bytes(
            orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2)
        )
        manifest = dict(coll.manifest)
        manifest["counts"] = {
            **manifest["counts"],
            "examples": len(examples),
            "passages": len(passages),
        }
        settings = {k: v for k, v in asdict(cfg).items() if k not in ("api_key_env",)}
        from trueneg.judge.client import redact_url

        settings["base_url"] = redact_url(cfg.base_url)
        manifest["steps"] = [
            *manifest.get("steps", []),
            step_record(
                "generate",
                source=str(coll.path),
                settings=settings,
                used=report.used,
                example_fields=fields,
            ),
        ]
        write_manifest(tmp, manifest)
