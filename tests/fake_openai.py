"""A fake OpenAI-compatible chat-completions server for tests: a real HTTP server on 127.0.0.1.

It answers from a table image sha256 -> answer (so it knows each row's answer from the PNG bytes it
was sent, which also proves they are the row's own bytes), and can be told to misbehave: wrong or
garbage answers, 429 with Retry-After, 500s, hangs, 401/404. It counts requests per image and the
most requests in flight at once."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    mode: str = "correct"  # correct, wrong, garbage, 401, 404
    fail_first: int = 0  # per image: the first N requests fail with `fail_status`
    fail_status: int = 429
    retry_after: float | None = None
    hang_first: int = 0  # per image: the first N requests sleep `hang_s` before answering
    hang_s: float = 3.0
    delay_s: float = 0.0  # every request
    key: str | None = None  # expected bearer token


@dataclass
class FakeServer:
    answers: dict[str, str]
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: Counter = field(default_factory=Counter)
    headers_seen: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FakeServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                    server.bodies.append(body)
                try:
                    self._answer(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body):
                b = server.behaviour
                if b.key is not None and self.headers.get("Authorization") != f"Bearer {b.key}" or b.mode == "401":
                    return self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                if b.mode == "404" or not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "model not found"}})
                url = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
                png = base64.b64decode(url.split(",", 1)[1])
                digest = hashlib.sha256(png).hexdigest()
                with server.lock:
                    server.requests[digest] += 1
                    n = server.requests[digest]
                if b.delay_s:
                    time.sleep(b.delay_s)
                if n <= b.hang_first:
                    time.sleep(b.hang_s)
                if n <= b.fail_first:
                    headers = {"Retry-After": str(b.retry_after)} if b.retry_after is not None else {}
                    return self._send(b.fail_status, {"error": {"message": "slow down"}}, headers)
                truth = server.answers.get(digest)
                wrong = "(9, 9)" if str(truth).startswith(("(", "[")) else str(int(truth or 0) + 1)
                text = {"correct": truth, "wrong": wrong, "garbage": "I cannot tell."}[b.mode] if truth else "unknown image"
                self._send(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                })  # fmt: skip

            def _send(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
