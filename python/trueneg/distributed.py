"""Ray Data engine: the pipeline's heavy stages (embedding, mining, judge calls) as
``map_batches`` over Parquet shards, with the single-machine semantics kept.

Everything a worker gets is picklable: plain config dicts and numpy arrays. Models and API clients
are built inside each worker (``EmbedShard``, ``Judge``), never shipped. The judge keeps the
answer ledger's rule: a worker commits every paid answer to the SQLite ledger named by
``cache_path`` before returning it, and checks it before sending, so when a worker dies and Ray
retries its task, what was already paid is read back, not bought again. On one machine that is the
run's own ledger; on a multi-node cluster give every node the same path on shared storage (or
accept that a task retried on another node re-asks the answers of its lost shard). The driver then
stores the returned answers in the run's ledger and assembles the judgments from it exactly as the
local engine does, so both engines give the same tables.

Batch functions for your own Ray pipelines: :func:`embed_shard` (via :class:`EmbedShard`),
:func:`mine_shard`, :func:`build_requests`, :func:`parse_responses`, and the :class:`Judge` class.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from trueneg.exceptions import TruenegError

if TYPE_CHECKING:
    from trueneg.engine import Kind
    from trueneg.judge.cache import Cache
    from trueneg.judge.client import Outcome, Request, SendStats
    from trueneg.judge.config import JudgeConfig, Stage
    from trueneg.mine import Selection
    from trueneg.models import EncoderConfig

Batch = dict[str, np.ndarray]


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise TruenegError("the Ray engine needs ray[data]: pip install 'trueneg[ray]'") from None
    return ray


# ---------------------------------------------------------------------------------------------
# Batch functions (pure, picklable arguments)


class EmbedShard:
    """``map_batches`` class: embeds the ``text`` column with an encoder built in the worker.
    Adds ``embedding`` (float32, one row per text)."""

    def __init__(self, encoder: dict[str, Any], kind: str = "passage", threads: int = 1) -> None:
        import torch

        from trueneg.models import Encoder, EncoderConfig

        torch.set_num_threads(threads)
        self.encoder = Encoder(EncoderConfig(**{**encoder, "cache_dir": None}))
        self.kind = kind

    def __call__(self, batch: Batch) -> Batch:
        return {**batch, "embedding": embed_shard(self.encoder, batch, self.kind)}


def embed_shard(encoder: Any, batch: Batch, kind: str = "passage") -> np.ndarray:
    emb: np.ndarray = encoder.encode([str(t) for t in batch["text"]], kind, desc="embed shard")
    return emb


def mine_shard(batch: Batch, *, corpus: Any, params: dict[str, Any]) -> Batch:
    """Negatives for a shard of examples: ``query_embedding`` (one row per example) and
    ``positives`` (lists of corpus rows) in; ``negatives``, ``scores``, ``eligible``, ``band_ids``,
    ``band_scores``, ``out_of_bounds`` out, by the same :func:`trueneg.mine.select_negatives` as
    the local engine. ``corpus`` may be a Ray object ref."""
    from trueneg.mine import select_negatives

    if not isinstance(corpus, np.ndarray):
        corpus = require_ray().get(corpus)
    q = np.stack(list(batch["query_embedding"])).astype(np.float32)
    pos = [[int(x) for x in p] for p in batch["positives"]]
    ex = np.asarray(batch["example"], np.int64)
    # random sampling draws per global example: each run of consecutive examples is one call
    # with its first example as the offset (a shard is one run unless Ray reordered rows)
    cuts = np.flatnonzero(np.diff(ex) != 1) + 1
    out: dict[str, list[Any]] = {k: [] for k in ("negatives", "scores", "band_ids", "band_scores")}
    eligible, dropped = [], []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ex)], strict=True):
        sel = select_negatives(q[a:b], corpus, pos[a:b], query_offset=int(ex[a]), **params)
        for i in range(b - a):
            o, bo = (
                slice(sel.offsets[i], sel.offsets[i + 1]),
                slice(sel.band_offsets[i], sel.band_offsets[i + 1]),
            )
            out["negatives"].append(sel.ids[o])
            out["scores"].append(sel.scores[o])
            out["band_ids"].append(sel.band_ids[bo])
            out["band_scores"].append(sel.band_scores[bo])
        eligible.append(sel.eligible.astype(np.int64))
        assert sel.out_of_bounds is not None  # one call: filled
        dropped.append(sel.out_of_bounds.astype(np.int64))
    return {
        "example": batch["example"],
        **{k: _objects(v) for k, v in out.items()},
        "eligible": np.concatenate(eligible) if eligible else np.zeros(0, np.int64),
        "out_of_bounds": np.concatenate(dropped) if dropped else np.zeros(0, np.int64),
    }


def _objects(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def build_requests(batch: Batch, *, config: dict[str, Any], stage: str) -> Batch:
    """Judge requests of a shard of calls: columns ``query``, ``positives`` (lists of texts) and
    ``negatives`` (lists of texts) in; ``key``, ``prompt``, ``est_tokens``, ``est_cost`` out (the
    same rendering and keys as the local engine)."""
    from trueneg.judge.cascade import make_requests
    from trueneg.judge.config import JudgeConfig
    from trueneg.judge.render import load_prompt, render_listwise, render_pointwise

    cfg = JudgeConfig.from_dict(config)
    st = {s.name: s for s in cfg.stages}[stage]
    prompt = load_prompt(st.prompt)
    prompts = [
        render_pointwise(prompt, str(q), str(next(iter(n))))
        if prompt.kind == "pointwise"
        else render_listwise(prompt, str(q), [str(x) for x in p], [str(x) for x in n])
        for q, p, n in zip(batch["query"], batch["positives"], batch["negatives"], strict=True)
    ]
    reqs = make_requests(st, prompts, cfg)
    return {
        "key": np.array([r.key for r in reqs], dtype=object),
        "prompt": np.array(prompts, dtype=object),
        "est_tokens": np.array([r.est_tokens for r in reqs], np.int64),
        "est_cost": np.array([r.est_cost for r in reqs], np.float64),
    }


def parse_responses(
    batch: Batch, *, prompt: str, rule: str = "better", min_score: int = 2
) -> Batch:
    """Verdicts of a shard of answers: ``content``, ``finish_reason``, ``refusal`` and ``n_docs``
    in; ``status`` and ``flagged`` (document numbers, 1-based) out. ``rule`` and ``min_score`` are
    the stage's (listwise flag rule; pointwise scores at or above ``min_score`` flag)."""
    from trueneg.judge.parse import parse_listwise, parse_pointwise
    from trueneg.judge.render import load_prompt

    kind = load_prompt(prompt).kind
    status, flagged = [], []
    for c, f, r, n in zip(
        batch["content"], batch["finish_reason"], batch["refusal"], batch["n_docs"], strict=True
    ):
        c, f, r = (None if x is None else str(x) for x in (c, f, r))
        if kind == "pointwise":
            s = parse_pointwise(c, finish_reason=f, refusal=r)
            status.append(s.status)
            flagged.append([1] if s.score is not None and s.score >= min_score else [])
        else:
            v = parse_listwise(c, int(n), finish_reason=f, refusal=r)
            status.append(v.status)
            flagged.append(v.flagged(rule))
    return {"status": np.array(status, dtype=object), "flagged": _objects(flagged)}


class Judge:
    """``map_batches`` class: sends a shard of judge requests (columns ``key``, ``model``,
    ``messages`` JSON, ``params`` JSON, ``est_tokens``, ``est_cost``) with the configured client,
    built in the worker. Answers are committed to the ledger at ``cache_path`` before they are
    returned; keys already there are returned without a call."""

    def __init__(
        self, config: dict[str, Any], cache_path: str, budget_usd: float | None = None
    ) -> None:
        from trueneg.judge.cache import Cache
        from trueneg.judge.config import JudgeConfig

        self.config = JudgeConfig.from_dict(config)
        self.cache = Cache(cache_path)
        self.budget = budget_usd

    def __call__(self, batch: Batch) -> Batch:
        from trueneg.judge.cascade import make_sender
        from trueneg.judge.client import Request

        cfg = self.config
        reqs = [
            Request(
                key=str(k),
                model=str(m),
                messages=tuple(orjson.loads(msg)),
                params=tuple((a, b) for a, b in orjson.loads(p)),
                est_tokens=int(t),
                est_cost=float(c),
            )
            for k, m, msg, p, t, c in zip(
                batch["key"],
                batch["model"],
                batch["messages"],
                batch["params"],
                batch["est_tokens"],
                batch["est_cost"],
                strict=True,
            )
        ]
        have = self.cache.get_many([r.key for r in reqs])
        missing = [r for r in reqs if r.key not in have]
        outcomes: dict[str, Any] = {}
        if missing:
            sender = make_sender(cfg, self.cache, self.budget)
            asyncio.run(sender.send_all(missing, on_done=lambda o: outcomes.__setitem__(o.key, o)))
            _crash_for_tests()
            have.update(self.cache.get_many([r.key for r in missing]))
        rows: dict[str, list[Any]] = {
            k: [] for k in (*ANSWER_FIELDS, "status", "message", "http_status", "fresh")
        }
        for r in reqs:
            a = have.get(r.key)
            o = outcomes.get(r.key)
            d: dict[str, Any] = asdict(a) if a is not None else dict.fromkeys(ANSWER_FIELDS)
            d["key"] = r.key
            for f in ANSWER_FIELDS:
                rows[f].append(d[f])
            rows["status"].append("ok" if a is not None else (o.status if o else "missing"))
            rows["message"].append("" if a is not None or o is None else o.message)
            rows["http_status"].append(-1 if o is None or o.http_status is None else o.http_status)
            rows["fresh"].append(o is not None and a is not None)
        return {k: np.array(v, dtype=object) for k, v in rows.items()}


ANSWER_FIELDS = (
    "key",
    "model",
    "content",
    "refusal",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "source",
)


def _crash_for_tests() -> None:
    """TRUENEG_RAY_CRASH_ONCE=<marker file>: the first worker to get here dies (after its
    answers were committed), so tests can check that Ray's retry pays nothing twice."""
    marker = os.environ.get("TRUENEG_RAY_CRASH_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)


# ---------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class RayConfig:
    #: Ray cluster address (None: the one in RAY_ADDRESS, else a local cluster)
    address: str | None = None
    #: parallel workers per stage (None: one per CPU of the cluster for embedding and mining,
    #: 4 for judging)
    workers: int | None = None
    #: rows per Parquet shard written for the workers
    shard_rows: int = 2048
    #: judge requests per worker batch
    judge_batch: int = 256

    def __post_init__(self) -> None:
        from trueneg.config import at_least

        at_least("workers", self.workers, 1, optional=True)
        at_least("shard_rows", self.shard_rows, 1)
        at_least("judge_batch", self.judge_batch, 1)


class RayEngine:
    """Runs embedding, mining and judge sends on a Ray cluster; results equal the local engine's."""

    def __init__(self, config: RayConfig | None = None, workdir: str | Path | None = None) -> None:
        self.ray = require_ray()
        self.config = cfg = config or RayConfig()
        if not self.ray.is_initialized():
            self.ray.init(
                address=cfg.address or os.environ.get("RAY_ADDRESS"),
                ignore_reinit_error=True,
                log_to_driver=False,
                include_dashboard=False,
            )
        ctx = self.ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="trueneg-ray-"))

    def _workers(self, default: int | None = None) -> int:
        if self.config.workers:
            return self.config.workers
        return default or max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def _cpus_each(self, workers: int) -> float:
        """The cluster's CPUs minus one (for the Parquet listing and read tasks), shared."""
        return max(0.1, (float(self.ray.cluster_resources().get("CPU", 1)) - 1) / workers)

    def _pool(self, workers: int, cpus_each: float | None = None) -> dict[str, Any]:
        """Actor-pool arguments: ``workers`` actors sharing the cluster's CPUs minus one left for
        the Parquet listing and read tasks (a pool that takes every CPU starves its own input).
        Ray Data restarts a dead actor and retries its batch."""
        each = cpus_each if cpus_each is not None else self._cpus_each(workers)
        return {
            "compute": self.ray.data.ActorPoolStrategy(size=workers),
            "num_cpus": each,
        }

    def _shards(self, name: str, columns: dict[str, Any], rows: int | None = None) -> Any:
        """Writes the columns as Parquet shards under the work folder and reads them as a Dataset."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.workdir / "ray" / name
        if d.exists():
            for f in d.glob("*.parquet"):
                f.unlink()
        d.mkdir(parents=True, exist_ok=True)
        t = pa.table(columns)
        n = max(1, rows or self.config.shard_rows)
        for i, s in enumerate(range(0, max(len(t), 1), n)):
            pq.write_table(t.slice(s, n), d / f"part-{i:05d}.parquet")
        return self.ray.data.read_parquet(str(d), file_extensions=["parquet"])

    def embed(self, encoder: EncoderConfig, texts: Sequence[str], kind: Kind) -> np.ndarray:
        ds = self._shards(f"embed-{kind}", {"row": np.arange(len(texts)), "text": texts})
        n = self._workers()
        pool = self._pool(n)
        out = ds.map_batches(
            EmbedShard,
            fn_constructor_kwargs={
                "encoder": asdict(encoder),
                "kind": kind,
                "threads": max(1, int(pool["num_cpus"])),
            },
            batch_size=self.config.shard_rows,
            batch_format="numpy",
            **pool,
        )
        rows, emb = [], []
        for b in out.iter_batches(batch_format="numpy", batch_size=None):
            rows.append(b["row"])
            emb.append(
                np.stack(list(b["embedding"])) if b["embedding"].dtype == object else b["embedding"]
            )
        order = np.concatenate(rows)
        res = np.concatenate(emb).astype(np.float32)
        out_arr = np.empty_like(res)
        out_arr[order] = res
        return out_arr

    def select(
        self, queries: np.ndarray, corpus: np.ndarray, positives: list[list[int]], **params: Any
    ) -> Selection:
        """:func:`trueneg.mine.select_negatives` over shards of queries on the workers (the corpus
        shipped once through the object store); the same :class:`~trueneg.mine.Selection`."""
        from trueneg.mine import Selection

        q = np.ascontiguousarray(queries, np.float32)
        ref = self.ray.put(np.ascontiguousarray(corpus, np.float32))
        ds = self._shards(
            "mine",
            {"example": np.arange(len(q)), "query_embedding": list(q), "positives": positives},
            rows=min(self.config.shard_rows, -(-len(q) // self._workers())),
        )
        out = ds.map_batches(
            mine_shard,
            fn_kwargs={"corpus": ref, "params": params},
            batch_size=None,
            batch_format="numpy",
            num_cpus=self._cpus_each(self._workers()),
        )
        n_q = len(q)
        negs: list[Any] = [None] * n_q
        scores: list[Any] = [None] * n_q
        band: list[Any] = [None] * n_q
        band_scores: list[Any] = [None] * n_q
        eligible = np.zeros(n_q, np.uint32)
        dropped = np.zeros(n_q, np.uint32)
        for b in out.iter_batches(batch_format="numpy", batch_size=None):
            for j, e in enumerate(b["example"].tolist()):
                negs[e] = np.asarray(b["negatives"][j], np.uint32)
                scores[e] = np.asarray(b["scores"][j], np.float32)
                band[e] = np.asarray(b["band_ids"][j], np.uint32)
                band_scores[e] = np.asarray(b["band_scores"][j], np.float32)
                eligible[e] = b["eligible"][j]
                dropped[e] = b["out_of_bounds"][j]
        return Selection(
            _offsets(negs),
            _cat(negs, np.uint32),
            _cat(scores, np.float32),
            eligible,
            _offsets(band),
            _cat(band, np.uint32),
            _cat(band_scores, np.float32),
            dropped,
        )

    def send(
        self, config: JudgeConfig, cache: Cache, stage: Stage, requests: list[Request]
    ) -> tuple[SendStats, dict[str, Outcome]]:
        """The ``send`` hook of :func:`trueneg.judge.cascade.run_cascade`: the missing requests of a
        chunk go to ``Judge`` workers; their answers land in the driver's ledger."""
        from trueneg.judge.cache import Answer
        from trueneg.judge.client import Outcome, SendStats

        if stage.backend == "batch":  # the Batch API is one upload: nothing to spread
            from trueneg.judge.cascade import send_requests

            return send_requests(config, cache, stage, requests)
        stats = SendStats()
        if not requests:
            return stats, {}
        budget = None
        if config.budget_usd is not None:
            budget = max(0.0, config.budget_usd - cache.spent()) / self._workers(4)
        ds = self._shards(
            "judge",
            {
                "key": [r.key for r in requests],
                "model": [r.model for r in requests],
                "messages": [orjson.dumps(list(r.messages)).decode() for r in requests],
                "params": [orjson.dumps(list(r.params)).decode() for r in requests],
                "est_tokens": [r.est_tokens for r in requests],
                "est_cost": [r.est_cost for r in requests],
            },
            rows=min(self.config.judge_batch, -(-len(requests) // self._workers(4))),
        )
        out = ds.map_batches(
            Judge,
            fn_constructor_kwargs={
                "config": config.as_dict(),
                "cache_path": str(cache.path),
                "budget_usd": budget,
            },
            batch_size=self.config.judge_batch,
            batch_format="numpy",
            **self._pool(self._workers(4), cpus_each=0.1),  # waits on the network, not the CPU
        )
        answers, outcomes = [], {}
        for b in out.iter_batches(batch_format="numpy", batch_size=None):
            for i in range(len(b["key"])):
                key = str(b["key"][i])
                if b["status"][i] == "ok":
                    a = Answer(**{f: _none(b[f][i]) for f in ANSWER_FIELDS})
                    answers.append(a)
                    outcomes[key] = Outcome(key, answer=a)
                    stats.answered += bool(b["fresh"][i])
                    stats.spent_usd += (a.cost_usd or 0.0) if b["fresh"][i] else 0.0
                else:
                    hs = int(b["http_status"][i])
                    outcomes[key] = Outcome(
                        key,
                        status=str(b["status"][i]),
                        http_status=None if hs < 0 else hs,
                        message=str(b["message"][i]),
                    )
                    stats.failed += 1
                    if b["status"][i] == "budget":
                        stats.stopped_by_budget += 1
                    elif b["status"][i] == "api_error":
                        cache.record_failure(
                            key, "api_error", None if hs < 0 else hs, str(b["message"][i])
                        )
        cache.put_many(answers)
        stats.sent = stats.answered + stats.failed
        return stats, outcomes


def _none(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, float) and np.isnan(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


__all__ = [
    "EmbedShard",
    "Judge",
    "RayConfig",
    "RayEngine",
    "build_requests",
    "embed_shard",
    "mine_shard",
    "parse_responses",
]


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(x) for x in parts])]).astype(np.int64)


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
