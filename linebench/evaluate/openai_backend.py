"""Any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp server, hosted APIs) through
the official `openai` client.

The image goes as a PNG data URL of the row's own bytes (never re-encoded or resized: thin lines
are the task). Retries on 429, 5xx, timeouts and dropped connections are the client's own
(exponential backoff with jitter, honouring Retry-After); 401 and 404 stop the run with one line.
The API key is read from an environment variable and goes nowhere else: not into the run folder,
not into any message.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import UsageError


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


class OpenAIBackend:
    """`ask(prompt, png)` -> (text, {latency_s, prompt_tokens, completion_tokens}); thread-safe."""

    def __init__(self, s: OpenAISettings):
        import openai

        self.s = s
        key = "EMPTY"
        if s.api_key_env:
            key = os.environ.get(s.api_key_env, "")
            if not key:
                raise UsageError(f"--api-key-env {s.api_key_env}: the variable is not set (or empty)")
        self.client = openai.OpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout_s, max_retries=s.retries)
        self._openai = openai

    def ask(self, prompt: str, png: bytes) -> tuple[str, dict[str, Any]]:
        o = self._openai
        t0 = time.perf_counter()
        try:
            r = self.client.chat.completions.create(
                model=self.s.model, messages=messages(prompt, png, self.s.system), temperature=self.s.temperature, max_tokens=self.s.max_tokens,
            )  # fmt: skip
        except o.AuthenticationError:
            who = f"the key in ${self.s.api_key_env}" if self.s.api_key_env else "no key (pass --api-key-env VAR)"
            raise UsageError(f"{self.s.base_url}: 401 unauthorized with {who}") from None
        except o.PermissionDeniedError:
            raise UsageError(f"{self.s.base_url}: 403 forbidden for model {self.s.model!r}") from None
        except o.NotFoundError:
            raise UsageError(f"{self.s.base_url}: 404: no model {self.s.model!r} there (or not an OpenAI-compatible /chat/completions)") from None
        except o.APIConnectionError as e:  # after the client's retries (timeouts included)
            raise UsageError(f"{self.s.base_url}: cannot reach the server ({type(e).__name__}) after {self.s.retries} retries") from None
        except o.APIStatusError as e:  # 429 / 5xx after the retries, or another 4xx
            raise UsageError(f"{self.s.base_url}: HTTP {e.status_code} after {self.s.retries} retries") from None
        latency = time.perf_counter() - t0
        text = (r.choices[0].message.content or "") if r.choices else ""
        usage = getattr(r, "usage", None)
        return text, {
            "latency_s": round(latency, 4),
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        }


def row_png(row: Mapping[str, Any]) -> bytes:
    """The row's own image bytes (PNG for linebench rows, often JPEG for real datasets), as stored."""
    img = row["image"]
    if isinstance(img, Mapping) and img.get("bytes"):
        return img["bytes"]
    if isinstance(img, (bytes, bytearray)):
        return bytes(img)
    raise UsageError("the rows' images must be stored bytes (load the image column with decode=False)")
