"""A fake OpenAI-compatible chat-completions server for tests: a real HTTP server on 127.0.0.1.

It answers from a table image sha256 -> answer (so it knows each row's answer from the PNG bytes it
was sent, which also proves they are the row's own bytes), and can be told to misbehave: wrong or
garbage answers, 429 with Retry-After, 500s, hangs, 401/404, and the replies of a broken server or
proxy (BROKEN: a 200 that carries no answer, a body that is not JSON, a dropped connection), or odd
but real answers (ODD: over 1 MiB of text, a lone surrogate). `storm` mixes all of them. It counts
requests per image, the answers it sent and the most requests in flight at once."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# replies that carry no answer (a failed try of the row)
BROKEN = ("empty-choices", "null-content", "other-shape", "empty-text", "not-json", "html", "reset")
# answers that are odd but answers: what eval stores must still be what `linebench score` accepts
ODD = ("huge", "surrogate")
HUGE_PAD = "and so on " * 110_000  # 1.1 MB after the answer: a line over score's 1 MiB


@dataclass
class Behaviour:
    mode: str = "correct"  # correct, wrong, garbage, 401, 404, or one of BROKEN / ODD for every request
    fail_first: int = 0  # per image: the first N requests fail with `fail_status`
    fail_status: int = 429
    retry_after: float | None = None
    bad_first: int = 0  # per image: the first N requests get the `bad` reply (one of BROKEN), then the answer
    bad: str = "empty-choices"
    hang_first: int = 0  # per image: the first N requests sleep `hang_s` before answering
    hang_s: float = 3.0
    delay_s: float = 0.0  # every request
    stall_after: int | None = None  # requests after the first N (all images together) sleep `stall_s`
    stall_s: float = 30.0
    key: str | None = None  # expected bearer token
    # storm: each request misbehaves with probability `storm` (429, 500, a hang, a slow reply, one of
    # BROKEN or ODD, drawn from a seeded hash of the image and the try, so a run is reproducible);
    # the images whose hash falls below `storm_dead` never get an answer
    storm: float = 0.0
    storm_dead: float = 0.0
    storm_seed: int = 0
    storm_hang_s: float = 1.5
    storm_slow_s: float = 0.2


STORM = ("429", "500", "hang", "slow", *BROKEN, *ODD)


def _storm(b: Behaviour, digest: str, n: int) -> str:
    """The reply for try `n` of an image in a storm: "correct" or one of STORM."""
    if random.Random(f"{b.storm_seed}:{digest}").random() < b.storm_dead:
        return BROKEN[n % len(BROKEN)]
    rng = random.Random(f"{b.storm_seed}:{digest}:{n}")
    return STORM[rng.randrange(len(STORM))] if rng.random() < b.storm else "correct"


@dataclass
class FakeServer:
    answers: dict[str, str]
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)  # per image: 200s that carried an answer
    headers_seen: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    total: int = 0
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
                self._open = True
                try:
                    self._answer(body)
                finally:
                    self._done()

            def _done(self):
                """The request stops counting as in flight before its reply is sent: the client may
                send its next request the moment it has the reply, before this thread gets to
                count down afterwards (max_in_flight read concurrency + 1, seen once in CI)."""
                if getattr(self, "_open", False):
                    self._open = False
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
                    server.total += 1
                    n, total = server.requests[digest], server.total
                if b.delay_s:
                    time.sleep(b.delay_s)
                if b.stall_after is not None and total > b.stall_after:
                    time.sleep(b.stall_s)
                if n <= b.hang_first:
                    time.sleep(b.hang_s)
                if n <= b.fail_first:
                    headers = {"Retry-After": str(b.retry_after)} if b.retry_after is not None else {}
                    return self._send(b.fail_status, {"error": {"message": "slow down"}}, headers)
                mode = b.bad if n <= b.bad_first else b.mode
                if b.storm or b.storm_dead:
                    mode = _storm(b, digest, n)
                    if mode in ("429", "500"):
                        return self._send(int(mode), {"error": {"message": "storm"}})
                    if mode in ("hang", "slow"):
                        time.sleep(b.storm_hang_s if mode == "hang" else b.storm_slow_s)
                        mode = "correct"
                truth = server.answers.get(digest)
                wrong = "(9, 9)" if str(truth).startswith(("(", "[")) else str(int(truth or 0) + 1)
                text = {"wrong": wrong, "garbage": "I cannot tell.", "huge": f"{truth}. {HUGE_PAD}", "surrogate": f"{truth} \ud800"}.get(mode, truth)
                text = text if truth else "unknown image"
                if mode == "reset":  # the connection dropped without a reply (RST)
                    self.close_connection = True
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return None
                if mode == "not-json":
                    return self._send_raw(200, b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "mess', "application/json")
                if mode == "html":
                    return self._send_raw(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
                message = {"role": "assistant", "content": {"null-content": None, "empty-text": ""}.get(mode, text)}
                reply = {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [] if mode == "empty-choices" else [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }  # fmt: skip
                if mode == "other-shape":
                    reply = {"result": {"text": text}}
                if mode not in BROKEN:
                    with server.lock:
                        server.answered[digest] += 1
                self._send(200, reply)

            def _send(self, status, obj, headers=None):
                self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)  # ensure_ascii: a lone surrogate goes as \ud800

            def _send_raw(self, status, data, content_type, headers=None):
                self._done()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request, client_address):  # a client that went away: nothing to report
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
