"""The answer cache and ledger: SQLite in WAL mode, keyed by the hash of the request.

Every answer is committed the moment it arrives, before it is parsed or used, so a process killed at
any point loses nothing it paid for and a rerun sends only what is missing. The key covers the
model, the rendered messages, the sampling parameters and the response schema; never the API key.

An answer is *final* unless it is unusable in a way a new request can mend: cut off by the token
limit (``finish_reason = "length"``), or empty (no content, no refusal, not a content filter). A
non-final answer stays in ``responses`` only until a better one arrives; it then moves to
``superseded`` (still paid for: :meth:`Cache.spent` counts it), and a later run sends its request
again. Answers the sender retried within a run (a truncation, a refusal) go to ``superseded``
directly.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: the columns of an answer, after its key (``responses`` and ``superseded`` share them)
ANSWER_COLUMNS = """
    model TEXT NOT NULL,
    content TEXT,
    refusal TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    source TEXT NOT NULL,
    created REAL NOT NULL"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY,{ANSWER_COLUMNS});
CREATE TABLE IF NOT EXISTS superseded (key TEXT NOT NULL,{ANSWER_COLUMNS});
CREATE INDEX IF NOT EXISTS superseded_key ON superseded(key);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    message TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_key ON failures(key);
CREATE TABLE IF NOT EXISTS batches (
    chunk TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    input_file_id TEXT,
    batch_id TEXT,
    status TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    keys TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def request_key(
    model: str, messages: Sequence[dict[str, Any]], params: dict[str, Any], schema: Any = None
) -> str:
    """sha256 of the canonical JSON of (model, messages, sampling params, response schema)."""
    payload = {"model": model, "messages": list(messages), "params": params, "schema": schema}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


#: SQL condition of a stored answer that a new request may replace
NON_FINAL = (
    "(finish_reason = 'length' OR (content IS NULL AND refusal IS NULL"
    " AND coalesce(finish_reason, '') != 'content_filter'))"
)


def is_final(a: Answer) -> bool:
    """The Python side of :data:`NON_FINAL`: not cut off, not empty."""
    if a.finish_reason == "length":
        return False
    return not (a.content is None and a.refusal is None and a.finish_reason != "content_filter")


@dataclass
class Answer:
    key: str
    model: str
    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    source: str


class Cache:
    """Thread-safe handle on the SQLite ledger (one connection, a lock around writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=60
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answers ---------------------------------------------------------------------------

    @staticmethod
    def _row(a: Answer) -> tuple[Any, ...]:
        return (
            a.key,
            a.model,
            a.content,
            a.refusal,
            a.finish_reason,
            a.prompt_tokens,
            a.completion_tokens,
            a.cost_usd,
            a.source,
            time.time(),
        )

    def put(self, a: Answer) -> bool:
        """Store an answer (committed on return): a new key, or in place of a non-final answer
        (which moves to ``superseded``). False when a final answer was there already."""
        with self._lock:
            self._db.execute("BEGIN")
            added = self._store(self._row(a))
            self._db.execute("COMMIT")
            return added == 1

    def _store(self, row: tuple[Any, ...]) -> int:
        """Inside a transaction: a non-final answer under the row's key moves to ``superseded``,
        then the row goes in unless a final answer is there. 1 when stored, else 0."""
        self._db.execute(
            f"INSERT INTO superseded SELECT * FROM responses WHERE key=? AND {NON_FINAL}",
            (row[0],),
        )
        self._db.execute(f"DELETE FROM responses WHERE key=? AND {NON_FINAL}", (row[0],))
        return int(
            self._db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?)", row
            ).rowcount
        )

    def put_superseded(self, a: Answer) -> None:
        """Keep a paid answer that will not be used (the sender is asking again)."""
        with self._lock:
            self._db.execute("INSERT INTO superseded VALUES (?,?,?,?,?,?,?,?,?,?)", self._row(a))

    def put_many(self, answers: Iterable[Answer]) -> int:
        """Store many answers in one transaction (as :meth:`put`); returns how many were new."""
        rows = [self._row(a) for a in answers]
        added = 0
        with self._lock:
            self._db.execute("BEGIN")
            for r in rows:
                added += self._store(r)
            self._db.execute("COMMIT")
        return added

    def _select_in(self, sql: str, keys: Sequence[str], suffix: str = "") -> list[tuple[Any, ...]]:
        """Rows of ``sql WHERE key IN (...)`` for many keys, in chunks SQLite accepts."""
        uniq = list(dict.fromkeys(keys))
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for i in range(0, len(uniq), 900):
                part = uniq[i : i + 900]
                rows.extend(
                    self._db.execute(
                        f"{sql} WHERE key IN ({','.join('?' * len(part))}){suffix}", part
                    )
                )
        return rows

    def get_many(self, keys: Sequence[str]) -> dict[str, Answer]:
        sql = (
            "SELECT key, model, content, refusal, finish_reason, prompt_tokens, completion_tokens, cost_usd,"
            " source FROM responses"
        )
        return {r[0]: Answer(*r) for r in self._select_in(sql, keys)}

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone()
                is not None
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])

    def spent(self) -> float:
        """Dollars paid for answers from the API, used or superseded (imports cost nothing)."""
        with self._lock:
            v = sum(
                self._db.execute(
                    f"SELECT coalesce(sum(cost_usd), 0) FROM {t} WHERE source IN ('api', 'batch')"
                ).fetchone()[0]
                for t in ("responses", "superseded")
            )
        return float(v)

    def newest(self) -> float | None:
        """When the newest answer was stored (epoch seconds), None for an empty cache."""
        with self._lock:
            v = self._db.execute("SELECT max(created) FROM responses").fetchone()[0]
        return None if v is None else float(v)

    def superseded_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM superseded").fetchone()[0])

    # -- failures --------------------------------------------------------------------------

    def record_failure(self, key: str, status: str, http_status: int | None, message: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO failures VALUES (?,?,?,?,?)",
                (key, status, http_status, message[:2000], time.time()),
            )

    def last_failures(self, keys: Sequence[str]) -> dict[str, tuple[str, int | None, str]]:
        rows = self._select_in(
            "SELECT key, status, http_status, message FROM failures", keys, " ORDER BY created"
        )
        return {k: (st, h, m) for k, st, h, m in rows}

    # -- batch jobs ------------------------------------------------------------------------

    def save_batch(self, chunk: str, model: str, keys: Sequence[str], **fields: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO batches (chunk, model, keys, created) VALUES (?,?,?,?)",
                (chunk, model, orjson.dumps(list(keys)).decode(), time.time()),
            )
            for k, v in fields.items():
                if k not in (
                    "input_file_id",
                    "batch_id",
                    "status",
                    "output_file_id",
                    "error_file_id",
                ):
                    raise ValueError(k)
                self._db.execute(f"UPDATE batches SET {k}=? WHERE chunk=?", (v, chunk))

    def batches(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT chunk, model, input_file_id, batch_id, status, output_file_id,"
                " error_file_id, keys FROM batches ORDER BY created"
            )
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur]
        for r in rows:
            r["keys"] = orjson.loads(r["keys"])
        return rows
