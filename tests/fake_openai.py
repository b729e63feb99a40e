"""A real HTTP server speaking the OpenAI chat-completions and Batch APIs, for tests and benches.

It replays recorded answers (looked up by the sha256 of the user message), answers everything else
with an empty RLHN verdict, and injects faults on request: 429 with Retry-After, 500, timeouts,
garbage bodies, truncated output (finish_reason "length"), refusals. It counts the completions it
fully delivered per prompt: usable ones ("paid") and cut-off or refused ones ("paid_unusable"), so
tests can prove no usable answer is bought twice.

Run standalone: ``python tests/fake_openai.py --latency 0.05`` prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EMPTY_VERDICT = (
    "<thinking>none of the documents answers the question</thinking>\n<preference></preference>\n"
    "<verdict> \n<better> Preferred over ground truth: [] </better>, \n"
    "<worse> Relevant but not preferred over ground truth:  [] </worse>\n</verdict>"
)
FAULTS = ("429", "500", "timeout", "garbage", "truncated", "refusal")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class State:
    def __init__(
        self,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        timeout_sleep: float = 3.0,
        echo_auth_on_400: bool = False,
    ) -> None:
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.rng = random.Random(seed)
        self.timeout_sleep = timeout_sleep
        self.echo_auth_on_400 = echo_auth_on_400
        self.replay: dict[str, str] = {}
        #: the answer to a prompt that has no recorded one
        self.default_answer = EMPTY_VERDICT
        #: a scripted model: called with the request body, its answer (None: the default) is sent
        self.responder: Callable[[dict[str, Any]], str | None] | None = None
        #: the ``response_format`` of every chat request that had one
        self.response_formats: list[Any] = []
        self.paid: Counter[str] = Counter()
        self.paid_unusable: Counter[str] = Counter()
        self.requests = 0
        self.fault_counts: Counter[str] = Counter()
        self.bad_request_for: set[str] = set()
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_until_done = 1
        #: answer every chat request with this HTTP status (401: a wrong key)
        self.status_for_all: int | None = None
        #: cut every answer off (finish_reason "length") while max_completion_tokens is below this
        self.truncate_below = 0
        self.max_tokens_seen: list[int] = []

    def add_rlhn_answers(self, rows: list[dict[str, Any]], template: str) -> None:
        """Record the answers of RLHN rows under the prompts the reference builds."""
        for r in rows:
            gt = "".join("P(0): " + p["text"] + "\n\n" for p in r["positive_passages"]).strip()
            docs = "".join(
                f"Doc ({i}): " + p["text"] + "\n\n" for i, p in enumerate(r["negative_passages"], 1)
            ).strip()
            values = {"question": r["query"], "ground_truth": gt, "documents": docs}
            prompt = re.sub(
                r"\{(question|ground_truth|documents)\}",
                lambda m, v=values: v[m.group(1)],
                template,
            )
            self.replay[content_hash(prompt)] = r["response"]

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.fault_rate and self.rng.random() < self.fault_rate:
                # the kinds in turn, so every kind occurs once a few faults have
                f = self.faults[sum(self.fault_counts.values()) % len(self.faults)]
                self.fault_counts[f] += 1
                return f
        return None

    def completion(
        self, body: dict[str, Any], fault: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        user = body["messages"][-1]["content"]
        h = content_hash(user)
        content = self.replay.get(h)
        if content is None and self.responder is not None:
            content = self.responder(body)
        if content is None:
            content = self.default_answer
        if "response_format" in body:
            with self.lock:
                self.response_formats.append(body["response_format"])
        finish, refusal = "stop", None
        budget = int(body.get("max_completion_tokens") or 0)
        with self.lock:
            self.max_tokens_seen.append(budget)
        if budget < self.truncate_below:
            fault = "truncated"
        if fault == "truncated":
            content, finish = content[: len(content) // 3], "length"
        elif fault == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        return 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                }
            ],
            "usage": {
                "prompt_tokens": max(1, len(user) // 4),
                "completion_tokens": max(1, len(content or "x") // 4),
                "total_tokens": 0,
            },
        }


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self,
            code: int,
            payload: bytes,
            headers: dict[str, str] | None = None,
            ctype: str = "application/json",
        ) -> bool:
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                return True
            except (BrokenPipeError, ConnectionResetError):
                return False

        def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> bool:
            return self._send(code, json.dumps(obj).encode(), headers)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length", "0"))
            try:
                return self.rfile.read(n)
            except (ConnectionResetError, BrokenPipeError):
                return b""

        def handle(self) -> None:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError, TimeoutError):
                super().handle()  # a client killed mid-request is not an error here

        def do_GET(self) -> None:
            if self.path == "/stats":
                with state.lock:
                    self._json(
                        200,
                        {
                            "requests": state.requests,
                            "paid": dict(state.paid),
                            "paid_unusable": dict(state.paid_unusable),
                            "faults": dict(state.fault_counts),
                        },
                    )
                return
            m = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
            if m:
                b = state.batches.get(m.group(1))
                if b is None:
                    self._json(404, {"error": {"message": "no such batch"}})
                    return
                b["_polls"] += 1
                if b["_polls"] >= state.batch_polls_until_done and b["status"] != "completed":
                    self._run_batch(b)
                self._json(200, {k: v for k, v in b.items() if not k.startswith("_")})
                return
            m = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
            if m and m.group(1) in state.files:
                self._send(200, state.files[m.group(1)], ctype="application/octet-stream")
                return
            self._json(404, {"error": {"message": "not found"}})

        def _run_batch(self, b: dict[str, Any]) -> None:
            out_lines = []
            for line in state.files[b["input_file_id"]].decode().splitlines():
                if not line.strip():
                    continue
                req = json.loads(line)
                _, comp = state.completion(req["body"])
                with state.lock:
                    state.paid[content_hash(req["body"]["messages"][-1]["content"])] += 1
                out_lines.append(
                    json.dumps(
                        {
                            "id": "batch_req_" + uuid.uuid4().hex[:8],
                            "custom_id": req["custom_id"],
                            "response": {"status_code": 200, "request_id": "r", "body": comp},
                            "error": None,
                        }
                    )
                )
            out_lines.reverse()  # the Batch API does not keep order
            fid = "file-" + uuid.uuid4().hex[:12]
            state.files[fid] = ("\n".join(out_lines) + "\n").encode()
            b.update(
                status="completed",
                output_file_id=fid,
                request_counts={"total": len(out_lines), "completed": len(out_lines), "failed": 0},
            )

        def do_POST(self) -> None:
            raw = self._body()
            self.path = self.path.split("?", 1)[0]
            if self.path == "/v1/files":
                # multipart/form-data: take the part named "file"
                ctype = self.headers.get("Content-Type", "")
                boundary = ctype.split("boundary=")[-1].strip('"').encode()
                content = b""
                for part in raw.split(b"--" + boundary):
                    if b'name="file"' in part:
                        content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
                fid = "file-" + uuid.uuid4().hex[:12]
                state.files[fid] = content
                self._json(
                    200,
                    {
                        "id": fid,
                        "object": "file",
                        "bytes": len(content),
                        "created_at": int(time.time()),
                        "filename": "batch.jsonl",
                        "purpose": "batch",
                        "status": "processed",
                    },
                )
                return
            if self.path == "/v1/batches":
                body = json.loads(raw)
                bid = "batch_" + uuid.uuid4().hex[:12]
                b = {
                    "id": bid,
                    "object": "batch",
                    "endpoint": body["endpoint"],
                    "input_file_id": body["input_file_id"],
                    "completion_window": body.get("completion_window", "24h"),
                    "status": "in_progress",
                    "created_at": int(time.time()),
                    "output_file_id": None,
                    "error_file_id": None,
                    "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "_polls": 0,
                }
                state.batches[bid] = b
                self._json(200, {k: v for k, v in b.items() if not k.startswith("_")})
                return
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": "not found"}})
                return
            if not raw:
                return
            with state.lock:
                state.requests += 1
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "bad json"}})
                return
            if state.latency:
                time.sleep(state.latency)
            user = body["messages"][-1]["content"]
            if state.status_for_all is not None:
                self._json(
                    state.status_for_all,
                    {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                        }
                    },
                )
                return
            if content_hash(user) in state.bad_request_for:
                msg = "context length exceeded"
                if state.echo_auth_on_400:
                    msg += " for " + self.headers.get("Authorization", "")
                self._json(400, {"error": {"message": msg, "type": "invalid_request_error"}})
                return
            fault = state.pick_fault()
            if fault == "429":
                self._json(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.05"})
                return
            if fault == "500":
                self._json(500, {"error": {"message": "boom"}})
                return
            if fault == "timeout":
                time.sleep(state.timeout_sleep)
                return
            if fault == "garbage":
                self._send(200, b"<html>this is not json", ctype="application/json")
                return
            code, comp = state.completion(body, fault)
            if self._json(code, comp):
                with state.lock:
                    ch = comp["choices"][0]
                    bad = ch["finish_reason"] == "length" or ch["message"]["refusal"] is not None
                    ledger = state.paid_unusable if bad else state.paid
                    ledger[content_hash(user)] += 1

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog of 5 drops connections under concurrency 64
    daemon_threads = True


class FakeOpenAI:
    """The server on a background thread: ``with FakeOpenAI() as srv: srv.base_url``."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or State()
        self.httpd = _Server(("127.0.0.1", 0), make_handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def serve_fast(state: State, port: int = 0) -> None:
    """A lean asyncio HTTP/1.1 server for throughput benchmarks: chat completions only, no faults."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = json.loads(await reader.readexactly(length))
                if state.latency:
                    await asyncio.sleep(state.latency)
                _, comp = state.completion(body)
                payload = json.dumps(comp).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                await writer.drain()
                state.requests += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def load_rlhn(state: State, data_dir: Path, prompts_dir: Path) -> None:
    for f in sorted(data_dir.glob("*.jsonl")):
        template = (
            prompts_dir / ("gpt-4o.txt" if "stage_2" in f.name else "gpt-4o-mini.txt")
        ).read_text()
        state.add_rlhn_answers(
            [json.loads(x) for x in f.read_text().splitlines() if x.strip()], template
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--replay-rlhn", type=Path, default=None)
    ap.add_argument("--prompts", type=Path, default=None)
    ap.add_argument("--timeout-sleep", type=float, default=3.0)
    ap.add_argument("--fast", action="store_true", help="lean asyncio server (benchmarks)")
    a = ap.parse_args()
    st = State(latency=a.latency, fault_rate=a.fault_rate, timeout_sleep=a.timeout_sleep)
    if a.replay_rlhn:
        load_rlhn(st, a.replay_rlhn, a.prompts)
    if a.fast:
        import asyncio

        try:
            import uvloop

            uvloop.run(serve_fast(st))
        except ImportError:
            asyncio.run(serve_fast(st))
        raise SystemExit(0)
    srv = FakeOpenAI(st)
    srv.thread.start()
    print(f"PORT {srv.httpd.server_address[1]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
