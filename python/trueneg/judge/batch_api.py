"""The OpenAI Batch API backend: half price, answers within 24 h.

Missing requests are written as JSONL chunks of at most 50,000 lines whose ``custom_id`` is the
request key (deterministic, so a chunk is the same on every run); the ledger records each chunk
before upload and every id the API hands back (file, batch, output file), so a killed run resumes by
polling the batches it already created and re-submits only requests that no output answered.
Output lines come back in any order and are joined on ``custom_id``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from trueneg.judge.cache import Cache
from trueneg.judge.client import JudgeError, Request, SendStats, scrub
from trueneg.judge.importers import answer_from_batch_line

if TYPE_CHECKING:
    from trueneg.judge.config import JudgeConfig, Stage

logger = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "expired", "cancelled")


def _client(config: JudgeConfig) -> tuple[Any, str]:
    from openai import OpenAI

    key = os.environ.get(config.api_key_env)
    if not key:
        if config.base_url is None:
            raise JudgeError(f"no API key: set the environment variable {config.api_key_env}")
        key = "unused"
    return OpenAI(api_key=key, base_url=config.base_url, max_retries=3, timeout=config.timeout), key


def batch_line(r: Request) -> bytes:
    body = {"model": r.model, "messages": list(r.messages), **dict(r.params)}
    return (
        orjson.dumps(
            {"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
        + b"\n"
    )


def run_batch(
    config: JudgeConfig, cache: Cache, stage: Stage, requests: Sequence[Request]
) -> SendStats:
    stats = SendStats()
    t0 = time.perf_counter()
    client, secret = _client(config)
    by_key = {r.key: r for r in requests}
    # 1. resume the batches a killed run left behind
    for b in cache.batches():
        if b["status"] == "done" or not set(b["keys"]) & set(by_key):
            continue
        _finish(client, secret, config, cache, b, stats)
    # 2. submit what is still missing
    missing = [r for r in requests if r.key not in cache.get_many([r.key])]
    for i in range(0, len(missing), config.batch_max_lines):
        part = missing[i : i + config.batch_max_lines]
        keys = sorted(r.key for r in part)
        chunk = hashlib.sha256(("\n".join(keys) + stage.model).encode()).hexdigest()[:24]
        cache.save_batch(chunk, stage.model, keys, status="writing")
        data = b"".join(batch_line(r) for r in part)
        f = client.files.create(file=(f"trueneg-{chunk}.jsonl", data), purpose="batch")
        cache.save_batch(chunk, stage.model, keys, input_file_id=f.id, status="uploaded")
        bt = client.batches.create(
            input_file_id=f.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"trueneg_chunk": chunk, "stage": stage.name},
        )
        cache.save_batch(chunk, stage.model, keys, batch_id=bt.id, status=bt.status)
        stats.sent += len(part)
        row = next(b for b in cache.batches() if b["chunk"] == chunk)
        _finish(client, secret, config, cache, row, stats)
    stats.seconds = time.perf_counter() - t0
    return stats


def _finish(
    client: Any, secret: str, config: JudgeConfig, cache: Cache, b: dict[str, Any], stats: SendStats
) -> None:
    """Poll one batch to its end, then store its answers and failures."""
    chunk, keys = b["chunk"], b["keys"]
    if not b.get("batch_id"):
        if not b.get("input_file_id"):
            cache.save_batch(
                chunk, b["model"], keys, status="done"
            )  # never uploaded: resubmitted below
            return
        bt = client.batches.create(
            input_file_id=b["input_file_id"],
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"trueneg_chunk": chunk},
        )
        cache.save_batch(chunk, b["model"], keys, batch_id=bt.id, status=bt.status)
        b = {**b, "batch_id": bt.id}
    while True:
        bt = client.batches.retrieve(b["batch_id"])
        cache.save_batch(chunk, b["model"], keys, status=bt.status)
        if bt.status in TERMINAL:
            break
        time.sleep(config.batch_poll_seconds)
    answered: set[str] = set()
    if bt.output_file_id:
        cache.save_batch(chunk, b["model"], keys, output_file_id=bt.output_file_id)
        text = client.files.content(bt.output_file_id).content
        answers = []
        for line in text.splitlines():
            if not line.strip():
                continue
            a = answer_from_batch_line(orjson.loads(line), config)
            if a is not None:
                answers.append(a)
                answered.add(a.key)
        cache.put_many(answers)
        stats.answered += len(answers)
    if bt.error_file_id:
        cache.save_batch(chunk, b["model"], keys, error_file_id=bt.error_file_id)
        for line in client.files.content(bt.error_file_id).content.splitlines():
            if line.strip():
                e = orjson.loads(line)
                msg = scrub(str(e.get("error") or e.get("response") or {}), secret)
                cache.record_failure(str(e.get("custom_id")), "api_error", None, msg)
                stats.failed += 1
    cache.save_batch(chunk, b["model"], keys, status="done")
    logger.info("batch %s: %d answered of %d", b["batch_id"], len(answered), len(keys))
