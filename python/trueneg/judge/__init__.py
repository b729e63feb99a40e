"""The LLM judge: RLHN's cascade (GPT-4o-mini then GPT-4o by default) over any OpenAI-compatible
backend or the Batch API, with a durable answer cache, cost estimates and a budget cap."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trueneg import judgments
from trueneg._io import atomic_file
from trueneg.collection import Collection, parquet_options, step_record, write_manifest
from trueneg.engine import Engine
from trueneg.judge.cache import Cache, request_key
from trueneg.judge.cascade import JudgeSummary, run_cascade
from trueneg.judge.client import JudgeError, redact_url
from trueneg.judge.config import RLHN_STAGES, JudgeConfig, Stage

__all__ = [
    "RLHN_STAGES",
    "Cache",
    "JudgeConfig",
    "JudgeSummary",
    "Stage",
    "judge_collection",
    "request_key",
]

logger = logging.getLogger(__name__)

CACHE_FILE = "judge-cache.sqlite"


def default_cache(coll: Collection) -> Path:
    return coll.path / CACHE_FILE


def judge_collection(
    path: str | Path,
    config: JudgeConfig | None = None,
    *,
    cache_path: str | Path | None = None,
    dry_run: bool = False,
    offline: bool = False,
    engine: Engine | None = None,
) -> JudgeSummary:
    """Judge a collection in place: the judge stages' rows of ``judgments.parquet`` are replaced (the
    dedup rows kept), ``judge-summary.json`` written and the step added to the manifest. Answers
    live in the cache (default: ``judge-cache.sqlite`` in the collection), so a rerun pays nothing.
    ``engine`` sends the requests (default: this process; see :mod:`trueneg.engine`)."""
    coll = Collection.load(path)
    cfg = config or JudgeConfig()
    cache_file = Path(cache_path) if cache_path is not None else default_cache(coll)
    with Cache(cache_file) as cache:
        summary, table = run_cascade(
            coll, cfg, cache, dry_run=dry_run, offline=offline, engine=engine
        )
    if dry_run:
        return summary
    old = judgments.load(coll.path)
    names = [s.name for s in cfg.stages]
    keep = old.filter(pc.invert(pc.is_in(old["stage"], pa.array(names)))) if len(old) else old
    merged = pa.concat_tables([keep, table])
    with atomic_file(coll.path / judgments.FILE) as f:
        pq.write_table(merged, f, **parquet_options())
    with atomic_file(coll.path / "judge-summary.json") as f:
        # the cache's place, so the report can quote the judge's reasoning
        record = {**summary.as_dict(), "cache": str(cache_file.resolve())}
        f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    manifest = dict(coll.manifest)
    manifest["steps"] = [
        *manifest.get("steps", []),
        step_record(
            "judge",
            stages=[s.__dict__ for s in cfg.stages],
            base_url=redact_url(cfg.base_url),
            offline=offline,
            false_negatives=summary.false_negatives,
            cost_usd=summary.cost_usd,
        ),
    ]
    write_manifest(coll.path, manifest)
    _raise_if_every_send_failed(summary, table, cfg)
    return summary


def _raise_if_every_send_failed(summary: JudgeSummary, table: pa.Table, cfg: JudgeConfig) -> None:
    """A run that sent requests and got not one answer back (a wrong key, a dead endpoint) is an
    error, not an empty result. Its judgments are written before (all failed, with reasons)."""
    attempted = sum(s.send.get("sent", 0) for s in summary.stages)
    answered = sum(s.sent for s in summary.stages)
    failed = sum(s.failed for s in summary.stages)
    if attempted == 0 or answered > 0 or failed == 0:
        return
    reasons = table.filter(pc.is_valid(table["reason"]))["reason"] if len(table) else None
    first = reasons[0].as_py() if reasons is not None and len(reasons) else "no answer"
    where = redact_url(cfg.base_url) or "the OpenAI API"
    raise JudgeError(f"all {failed:,} requests to {where} failed ({first}); nothing was paid")
