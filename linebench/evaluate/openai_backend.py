"""Any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp server, hosted APIs) through
the official `openai` client.

The image goes as a PNG data URL of the row's own bytes (never re-encoded or resized: thin lines
are the task). A reply counts only if it carries an answer: a JSON object whose first choice's
message has a non-empty text. Everything else is a failed try of that row and is retried with
exponential backoff and jitter (honouring Retry-After): 408, 409, 429 and 5xx, timeouts, dropped
connections, a body that is not JSON (an HTML error page from a proxy), empty `choices`, `content:
null` or another shape. After the retries the row raises `NoAnswer` with the reason; nothing is
stored for it, so a rerun asks it again. Another 4xx (the request itself refused) fails the row
at once. 401, 403 and 404 stop the run with one line. The API key is read from an environment
variable and goes nowhere else: not into the run folder, not into any message.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_any
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import UsageError

MAX_BACKOFF_S = 8.0  # the longest wait between two tries of a row (as the openai client's own)
MAX_RETRY_AFTER_S = 120.0  # a longer Retry-After fails the row instead of holding a worker
GIVE_UP_ROWS = 16  # rows in a row without an answer (and at least 2 x --concurrency) that stop a run


@dataclass(frozen=True)
class OpenAISettings:
    model: str
    base_url: str
    api_key_env: str | None = None  # the variable holding the key; None: no key ("EMPTY", as vLLM accepts)
    temperature: float = 0.0
    max_tokens: int = 32
    timeout_s: float = 60.0
    retries: int = 5
    system: str | None = None
    backoff_s: float = 0.5  # the wait before the first retry; doubled for each further one, up to MAX_BACKOFF_S


class NoAnswer(Exception):
    """A row the server gave no answer for, after the retries; the message says why."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _mime(data: bytes) -> str:
    """The image type of the bytes as sent (real grounding datasets store JPEG, linebench PNG)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/png"


def messages(prompt: str, png: bytes, system: str | None) -> list[dict[str, Any]]:
    url = f"data:{_mime(png)};base64," + base64.b64encode(png).decode("ascii")
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]})
    return out


def reply_text(body: bytes, content_type: str = "") -> tuple[str, dict[str, Any]]:
    """(the answer's text, usage) of a 200 reply's body; `_Retry` with the reason when it carries no
    answer. The text is as the server sent it (lone surrogates included; the writer cleans it)."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        kind = content_type.split(";")[0].strip() or "no content type"
        raise _Retry(f"the reply is not JSON ({kind})") from None
    if not isinstance(obj, dict):
        raise _Retry("the reply is not a JSON object")
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Retry("the reply has no choices" if choices in (None, []) else "the reply's choices are not a list")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: the text ones, joined
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(p for p in parts if isinstance(p, str)) if parts else None
    if not isinstance(content, str):
        raise _Retry(f"the reply has no text (content: {json.dumps(content)[:20] if content is not None else 'null'})")
    if not content.strip():
        raise _Retry("the reply's text is empty")
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    count = lambda k: usage.get(k) if isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool) else None  # noqa: E731
    return content, {"prompt_tokens": count("prompt_tokens"), "completion_tokens": count("completion_tokens")}


def _retry_after(headers) -> float | None:
    """Seconds a Retry-After (or retry-after-ms) header asks for, None if absent or unreadable."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None


class OpenAIBackend:
    """`ask(prompt, png)` -> (text, {latency_s, prompt_tokens, completion_tokens, tries}) or `NoAnswer`;
    thread-safe. `stop()` makes every `ask` give up at its next try or wait (Ctrl-C)."""

    def __init__(self, s: OpenAISettings):
        import openai

        self.s = s
        key = "EMPTY"
        if s.api_key_env:
            key = os.environ.get(s.api_key_env, "")
            if not key:
                raise UsageError(f"--api-key-env {s.api_key_env}: the variable is not set (or empty)")
        # the retries are ours (every kind of failed try alike, the backoff set by --backoff)
        self.client = openai.OpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout_s, max_retries=0)
        self._openai = openai
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def ask(self, prompt: str, png: bytes) -> tuple[str, dict[str, Any]]:
        msgs = messages(prompt, png, self.s.system)
        reason, wait = "", None
        for attempt in range(self.s.retries + 1):
            if attempt:
                delay = wait if wait is not None else min(self.s.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S) * (1 - 0.25 * random.random())
                if self._stop.wait(max(delay, 0.0)):
                    break
            if self._stop.is_set():
                break
            t0 = time.perf_counter()
            try:
                text, usage = self._once(msgs)
            except _Retry as e:
                reason, wait = str(e), e.retry_after
                continue
            return text, {"latency_s": round(time.perf_counter() - t0, 4), **usage, "tries": attempt + 1}
        if self._stop.is_set():
            raise NoAnswer("stopped (interrupted)")
        tries = self.s.retries + 1
        raise NoAnswer(f"{reason}, after {tries} tr{'y' if tries == 1 else 'ies'}")

    def _once(self, msgs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        o = self._openai
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.s.model, messages=msgs, temperature=self.s.temperature, max_tokens=self.s.max_tokens,
            )  # fmt: skip
            body, content_type = raw.content, raw.headers.get("content-type", "")
        except o.AuthenticationError:
            who = f"the key in ${self.s.api_key_env}" if self.s.api_key_env else "no key (pass --api-key-env VAR)"
            raise UsageError(f"{self.s.base_url}: 401 unauthorized with {who}") from None
        except o.PermissionDeniedError:
            raise UsageError(f"{self.s.base_url}: 403 forbidden for model {self.s.model!r}") from None
        except o.NotFoundError:
            raise UsageError(f"{self.s.base_url}: 404: no model {self.s.model!r} there (or not an OpenAI-compatible /chat/completions)") from None
        except o.APITimeoutError:
            raise _Retry(f"no reply within --timeout {self.s.timeout_s:g} s") from None
        except o.APIConnectionError as e:
            cause = type(e.__cause__).__name__ if e.__cause__ is not None else type(e).__name__
            raise _Retry(f"cannot reach the server ({cause})") from None
        except o.APIStatusError as e:
            code = e.status_code
            if code in (408, 409, 429) or code >= 500:
                after = _retry_after(e.response.headers)
                if after is not None and after > MAX_RETRY_AFTER_S:
                    raise NoAnswer(f"HTTP {code} with Retry-After {after:.0f} s") from None
                raise _Retry(f"HTTP {code}", after if after is not None and after > 0 else None) from None
            said = re.sub(r"^Error code: \d+ - ", "", str(e.message))[:120]  # the client's prefix: the code is said already
            raise NoAnswer(f"HTTP {code}: {said}") from None  # the request itself is refused: asking again gets the same
        except Exception as e:  # noqa: BLE001 - whatever else a broken reply makes the client raise: a failed try, never a traceback
            raise _Retry(f"the reply could not be read ({type(e).__name__})") from None
        return reply_text(body, content_type)


def ask_rows(
    backend: OpenAIBackend,
    jobs: Iterable[tuple[str, str, bytes]],
    concurrency: int,
    store: Callable[[str, str, dict[str, Any]], None],
    failed: dict[str, str],
    on_failure: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Ask every (row id, prompt, image bytes) with `concurrency` requests in flight. Each answer goes
    to `store(id, text, meta)` in the calling thread as it arrives; each row without an answer into
    `failed` (id -> why), which is returned. Rows are read from `jobs` as room frees up (at most
    4 x concurrency queued). On any exception, Ctrl-C included, the answers that came
    back are stored first, queued rows are dropped and requests in flight are not waited for; then
    it re-raises. max(GIVE_UP_ROWS, 2 x concurrency) rows in a row without an answer stop the run
    with one line: a server that is down would otherwise be asked every row, each with its retries."""
    give_up = max(GIVE_UP_ROWS, 2 * concurrency)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="linebench-eval")
    pending: dict[Future, str] = {}

    def take(fut: Future) -> bool:
        row_id = pending.pop(fut)
        try:
            text, meta = fut.result()
        except NoAnswer as e:
            failed[row_id] = str(e)
            if on_failure:
                on_failure()
            return False
        store(row_id, text, meta)
        return True

    streak = 0
    rows = iter(jobs)
    window = 4 * concurrency  # rows read and queued ahead: a 50,000-row split is not held in memory at once
    try:
        while True:
            for row_id, prompt, png in itertools.islice(rows, window - len(pending)):
                pending[pool.submit(backend.ask, prompt, png)] = row_id
            if not pending:
                break
            done, _ = wait_any(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                streak = 0 if take(fut) else streak + 1
                if streak >= give_up:
                    last = failed[next(reversed(failed))]
                    raise UsageError(
                        f"{backend.s.base_url}: {streak} rows in a row got no answer (the last: {last}), so the run stopped; "
                        "the answers so far are stored: run the same command again once the server answers"
                    )
    except BaseException:
        backend.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        for fut in [f for f in pending if f.done() and not f.cancelled()]:
            try:
                if fut.exception() is None:
                    take(fut)
            except Exception:  # noqa: BLE001 - keeping answers on the way out; the first error is the one raised
                pass
        raise
    pool.shutdown()
    return failed


def row_png(row: Mapping[str, Any]) -> bytes:
    """The row's own image bytes (PNG for linebench rows, often JPEG for real datasets), as stored."""
    img = row["image"]
    if isinstance(img, Mapping) and img.get("bytes"):
        return img["bytes"]
    if isinstance(img, (bytes, bytearray)):
        return bytes(img)
    raise UsageError("the rows' images must be stored bytes (load the image column with decode=False)")
