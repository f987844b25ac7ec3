"""The few exception classes users see. The CLI prints their message on one line and exits with
their `exit_code` (2 for bad input)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator


class LinebenchError(Exception):
    """Base class: the message says what was wrong and what to do about it."""

    exit_code = 2


class UsageError(LinebenchError):
    """Bad arguments: unknown task, impossible knobs, a bad output folder."""


class GenerationError(LinebenchError):
    """A task could not produce a valid sample with the given parameters."""


class MapError(LinebenchError):
    """A sample's targets are seen by no token of a layout (a model that crops the canvas)."""


class Interrupted(LinebenchError):
    """A run stopped by Ctrl-C (exit 130) or SIGTERM (exit 143); the message says what was kept."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """Raised in the main process by the CLI's SIGTERM handler, so a `kill` unwinds like Ctrl-C
    (workers stopped, temporary files removed, one line saying what was kept)."""

    exit_code = 143


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM inside the block take effect when it ends (their handler then runs as it
    would have). For pyarrow work on extension types: pyarrow calls Python code (datasets'
    `__arrow_ext_deserialize__`) from C++, and an exception a signal handler raises there is printed
    and dropped half-way, leaving a broken type, so a `kill` ended in ArrowInvalid and exit 1
    instead of a clean stop (seen once in CI). Outside the main thread it holds nothing (Python
    runs handlers in the main thread only, and sets them there only)."""
    watched = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or any(signal.getsignal(s) is None for s in watched):
        yield  # (a handler installed outside Python could not be put back)
        return
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in watched}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            first = caught[0]
            handler = old[first]
            if callable(handler):
                handler(first, sys._getframe())
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), first)
