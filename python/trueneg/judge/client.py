"""Sending chat requests through the official ``openai`` client (OpenAI or any OpenAI-compatible
server: vLLM, llama.cpp), with a concurrency cap, an RPM/TPM limiter, retries that honour
Retry-After, and a budget checked before every send. Answers go to the cache before anything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from trueneg.exceptions import TruenegError
from trueneg.judge.cache import Answer, Cache, is_final
from trueneg.judge.cost import Price

logger = logging.getLogger(__name__)

#: statuses retried with backoff (the client's own retries are off so attempts do not multiply)
RETRY_STATUS = {408, 409, 429}


class JudgeError(TruenegError):
    """A judge run that cannot go on (no API key, budget exhausted before starting, ...)."""


class BudgetExceeded(JudgeError):
    pass


@dataclass(frozen=True)
class Request:
    key: str
    model: str
    messages: tuple[dict[str, str], ...]
    params: tuple[tuple[str, Any], ...]
    #: worst-case cost and tokens, reserved against the budget and the TPM limit before sending
    est_tokens: int = 0
    est_cost: float = 0.0
    #: an answer cut off by the token limit is asked again with twice the output budget, up to
    #: this many tokens (0: never raised)
    max_tokens_cap: int = 0


@dataclass
class Outcome:
    key: str
    answer: Answer | None = None
    status: str = "ok"  # ok or api_error / budget
    http_status: int | None = None
    message: str = ""
    #: dollars paid for answers asked again (cut off, refused): not in ``answer``
    superseded_usd: float = 0.0


@dataclass
class SendStats:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    stopped_by_budget: int = 0
    #: answers that came back cut off, refused or empty and were asked again
    unusable: int = 0
    spent_usd: float = 0.0
    seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute token buckets (either may be off)."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        now = time.monotonic()
        self._r, self._t, self._last = float(rpm or 0), float(tpm or 0), now
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                dt, self._last = now - self._last, now
                if self.rpm:
                    self._r = min(self.rpm, self._r + dt * self.rpm / 60)
                if self.tpm:
                    self._t = min(self.tpm, self._t + dt * self.tpm / 60)
                need_t = min(tokens, self.tpm) if self.tpm else 0
                if (not self.rpm or self._r >= 1) and (not self.tpm or self._t >= need_t):
                    if self.rpm:
                        self._r -= 1
                    if self.tpm:
                        self._t -= need_t
                    return
                wait_r = (1 - self._r) * 60 / self.rpm if self.rpm and self._r < 1 else 0
                wait_t = (need_t - self._t) * 60 / self.tpm if self.tpm and self._t < need_t else 0
                await asyncio.sleep(max(wait_r, wait_t, 0.001))


def usable(a: Answer) -> bool:
    """An answer worth keeping as final: complete (not cut off), not refused, not empty."""
    return is_final(a) and not a.refusal


def redact_url(url: str | None) -> str | None:
    """An endpoint as it may be written down: a password in the URL (``https://user:KEY@host``)
    and query values (``?api-key=KEY``) replaced by ``***``."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    try:
        u = urlsplit(url)
    except ValueError:
        return "***"
    netloc = u.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = (user.split(":", 1)[0] + ":***@" if ":" in user else "***@") + host
    query = "&".join(
        (kv.split("=", 1)[0] + "=***") if "=" in kv else kv for kv in u.query.split("&") if kv
    )
    return urlunsplit((u.scheme, netloc, u.path, query, u.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of an endpoint URL (password, query values), to scrub from messages."""
    if not url:
        return []
    from urllib.parse import parse_qsl, urlsplit

    try:
        u = urlsplit(url)
    except ValueError:
        return [url]
    out = [u.password] if u.password else []
    out += [v for _, v in parse_qsl(u.query) if v]
    return [s for s in out if s]


def _split_query(url: str | None) -> tuple[str | None, dict[str, str]]:
    """``https://host/v1?api-key=K`` -> (``https://host/v1``, {"api-key": "K"}): the openai client
    appends paths to the base URL, so its query goes on every request instead."""
    if not url or "?" not in url:
        return url, {}
    from urllib.parse import parse_qsl

    base, _, q = url.partition("?")
    return base, dict(parse_qsl(q))


def _api_message(e: Any) -> str:
    """The server's own error message (the openai client prefixes "Error code: N - {...}")."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(e, "message", e))


class RedactSecrets:
    """Scrubs registered secrets from every log record of the process (httpx and openai log
    request URLs, which may carry a key), whichever logger makes it: installed as the log
    record factory the first time a secret is registered."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self._base: Callable[..., logging.LogRecord] | None = None

    def add(self, *secrets: str) -> None:
        self.secrets.update(s for s in secrets if s)
        if self.secrets and self._base is None:
            self._base = logging.getLogRecordFactory()
            logging.setLogRecordFactory(self._make)

    def _make(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        assert self._base is not None
        record = self._base(*args, **kwargs)
        try:
            msg = record.getMessage()
        except Exception:  # a record that cannot be formatted is left as it is
            return record
        clean = scrub(msg, None, *self.secrets)
        if clean != msg:
            record.msg, record.args = clean, None
        return record


_REDACT = RedactSecrets()


def scrub(message: str, secret: str | None, *more: str) -> str:
    """Remove an API key (and any other secrets given) from a message before it is stored or
    shown."""
    for s in (secret, *more):
        if s:
            message = message.replace(s, "***")
    return message


@dataclass(frozen=True, kw_only=True)
class SendSettings:
    """How requests reach one endpoint: the settings a :class:`Sender` and a ``JudgeConfig``
    share, checked once here (a concurrency of 0 or a negative rate limit would wait forever)."""

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    rpm: int | None = None
    tpm: int | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    #: extra sends of a prompt whose answer came back unusable (cut off, refused, empty); the
    #: paid answers are kept in the cache's ``superseded`` table
    unusable_retries: int = 3
    budget_usd: float | None = None

    def __post_init__(self) -> None:
        from trueneg.config import at_least, positive

        at_least("concurrency", self.concurrency, 1)
        at_least("rpm", self.rpm, 1, optional=True)
        at_least("tpm", self.tpm, 1, optional=True)
        positive("timeout", self.timeout)
        at_least("max_attempts", self.max_attempts, 1)
        at_least("unusable_retries", self.unusable_retries, 0)


@dataclass
class Sender:
    """Sends requests to one endpoint. Build inside each worker: the openai client is not picklable."""

    cache: Cache
    settings: SendSettings = SendSettings()
    max_backoff: float = 60.0
    price_of: Callable[[str], Price | None] = lambda m: None
    source: str = "api"

    def _scrub(self, message: str) -> str:
        """A message without the API key or the secrets of the endpoint URL."""
        return scrub(message, getattr(self, "_secret", None), *url_secrets(self.settings.base_url))

    def _client(self) -> Any:
        from openai import AsyncOpenAI

        key = os.environ.get(self.settings.api_key_env)
        if not key:
            if self.settings.base_url is None:
                raise JudgeError(
                    f"no API key: set the environment variable {self.settings.api_key_env}"
                )
            key = "unused"  # local OpenAI-compatible servers often need none
        self._secret = key
        _REDACT.add(*url_secrets(self.settings.base_url), *([key] if key != "unused" else []))
        base, query = _split_query(self.settings.base_url)
        return AsyncOpenAI(
            api_key=key,
            base_url=base,
            default_query=query or None,
            max_retries=0,
            timeout=self.settings.timeout,
        )

    async def send_all(
        self, requests: Sequence[Request], on_done: Callable[[Outcome], None] | None = None
    ) -> SendStats:
        stats = SendStats()
        if not requests:
            return stats
        client = self._client()
        sem = asyncio.Semaphore(self.settings.concurrency)
        limiter = RateLimiter(self.settings.rpm, self.settings.tpm)
        spent = self.cache.spent() if self.settings.budget_usd is not None else 0.0
        reserved = 0.0
        budget_lock = asyncio.Lock()
        t0 = time.perf_counter()

        async def one(req: Request) -> None:
            nonlocal spent, reserved
            async with sem:
                if self.settings.budget_usd is not None:
                    async with budget_lock:
                        if spent + reserved + req.est_cost > self.settings.budget_usd:
                            stats.stopped_by_budget += 1
                            out = Outcome(
                                req.key, status="budget", message="budget reached before sending"
                            )
                            if on_done:
                                on_done(out)
                            return
                        reserved += req.est_cost
                try:
                    out = await self._send(client, req, limiter, stats)
                finally:
                    if self.settings.budget_usd is not None:
                        async with budget_lock:
                            reserved -= req.est_cost
                spent += out.superseded_usd
                if out.answer is not None and out.answer.cost_usd:
                    spent += out.answer.cost_usd
                    stats.spent_usd += out.answer.cost_usd
                if on_done:
                    on_done(out)

        try:
            await asyncio.gather(*(one(r) for r in requests))
        finally:
            await client.close()
        stats.seconds = time.perf_counter() - t0
        return stats

    async def _send(
        self, client: Any, req: Request, limiter: RateLimiter, stats: SendStats
    ) -> Outcome:
        import openai

        params = dict(req.params)
        last_err = ""
        unusable = 0
        extra_usd = 0.0
        for attempt in range(self.settings.max_attempts + self.settings.unusable_retries):
            if attempt - unusable >= self.settings.max_attempts:
                break
            await limiter.acquire(req.est_tokens)
            stats.sent += 1
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=req.model, messages=list(req.messages), **params
                )
                body = raw.content
                answer = self._answer(req, body)
                if not usable(answer) and unusable < self.settings.unusable_retries:
                    self.cache.put_superseded(answer)  # paid: kept, not used
                    unusable += 1
                    stats.unusable += 1
                    if answer.cost_usd:
                        stats.spent_usd += answer.cost_usd
                        extra_usd += answer.cost_usd
                    if answer.finish_reason == "length":
                        cur = int(params.get("max_completion_tokens") or 0)
                        if req.max_tokens_cap and 0 < cur < req.max_tokens_cap:
                            params["max_completion_tokens"] = min(req.max_tokens_cap, 2 * cur)
                        elif cur >= req.max_tokens_cap:
                            # at the cap: asking again would be cut off again
                            self.cache.put(answer)
                            stats.answered += 1
                            return Outcome(req.key, answer=answer, superseded_usd=extra_usd)
                    continue
                self.cache.put(answer)  # committed before anything reads it
                stats.answered += 1
                return Outcome(req.key, answer=answer, superseded_usd=extra_usd)
            except openai.APIStatusError as e:
                code = e.status_code
                msg = self._scrub(f"HTTP {code}: {_api_message(e)}")
                if code in RETRY_STATUS or code >= 500:
                    last_err = msg
                    if code == 429:
                        stats.rate_limited += 1
                    delay = self._retry_after(e) if code == 429 else None
                    await self._backoff(attempt, delay, stats)
                    continue
                self.cache.record_failure(req.key, "api_error", code, msg)
                stats.failed += 1
                return Outcome(
                    req.key,
                    status="api_error",
                    http_status=code,
                    message=msg,
                    superseded_usd=extra_usd,
                )
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                last_err = self._scrub(f"{type(e).__name__}: {e}")
                await self._backoff(attempt, None, stats)
                continue
            except (ValueError, KeyError, TypeError) as e:  # a body that is not a chat completion
                msg = self._scrub(f"unreadable response: {e}")
                last_err = msg
                await self._backoff(attempt, None, stats)
                continue
        if not last_err:
            last_err = "every answer was unusable (cut off, refused or empty)"
        self.cache.record_failure(
            req.key,
            "api_error",
            None,
            f"gave up after {self.settings.max_attempts} attempts: {last_err}",
        )
        stats.failed += 1
        return Outcome(
            req.key,
            status="api_error",
            message=f"gave up after {self.settings.max_attempts} attempts: {last_err}",
            superseded_usd=extra_usd,
        )

    def _answer(self, req: Request, body: bytes) -> Answer:
        data = orjson.loads(body)
        choice = data["choices"][0]
        msg = choice.get("message") or {}
        usage = data.get("usage") or {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
        price = self.price_of(req.model)
        cost = (
            price.cost(pt or 0, ct or 0, cached, batch=False) if price and pt is not None else None
        )
        return Answer(
            key=req.key,
            model=req.model,
            content=msg.get("content"),
            refusal=msg.get("refusal"),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=pt,
            completion_tokens=ct,
            cost_usd=cost,
            source=self.source,
        )

    @staticmethod
    def _retry_after(e: Any) -> float | None:
        h = getattr(getattr(e, "response", None), "headers", None) or {}
        for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            v = h.get(name)
            if v is not None:
                try:
                    return max(0.0, float(v) * scale)
                except ValueError:
                    return None
        return None

    async def _backoff(self, attempt: int, retry_after: float | None, stats: SendStats) -> None:
        stats.retries += 1
        if retry_after is not None:
            delay = min(retry_after, self.max_backoff)
        else:
            delay = min(self.max_backoff, 0.5 * 2**attempt) * (1 - 0.25 * random.random())
        await asyncio.sleep(delay)


#: requests -> (answers by key, (status, message) of the last failure of each key left without)
Fetch = Callable[[list[Request]], tuple[dict[str, Answer], dict[str, tuple[str, str]]]]


def fetcher(
    config: Any,
    cache: Cache,
    stage: Any,
    send: Callable[..., tuple[Any, dict[str, Outcome]]],
    summ: Any,
    *,
    offline: bool,
) -> Fetch:
    """Answers for requests: the cache first, then the missing ones sent (unless offline or
    replay), each stored before it is used; for a request left without one, the status and
    message of its last failure (``budget``, ``api_error``, ...)."""
    sendable = not offline and stage.backend != "replay"

    def fetch(requests: list[Request]) -> tuple[dict[str, Answer], dict[str, tuple[str, str]]]:
        uniq: dict[str, Request] = {}
        for r in requests:
            uniq.setdefault(r.key, r)
        summ.unique_requests += len(uniq)
        found = cache.get_many(list(uniq))
        final = {k: a for k, a in found.items() if is_final(a)} if sendable else found
        summ.cache_hits += len(final)
        missing = [r for k, r in uniq.items() if k not in final]
        outcomes: dict[str, Outcome] = {}
        if missing and sendable:
            stats, outcomes = send(config, cache, stage, missing)
            summ.sent += stats.answered
            summ.failed += stats.failed
            for k, v in asdict(stats).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    summ.send[k] = summ.send.get(k, 0) + v
            found.update(cache.get_many([r.key for r in missing]))
        lost = [k for k in uniq if k not in found]
        why = {k: (f[0], f[2]) for k, f in cache.last_failures(lost).items()} if lost else {}
        for k in lost:  # this run's outcome first (a budget stop is not stored as a failure)
            o = outcomes.get(k)
            if o is not None and o.status != "ok":
                why[k] = (o.status, o.message or o.status)
        return found, why

    return fetch
