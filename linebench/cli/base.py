"""What every `linebench` command shares: the app, one-line errors, progress bars, argument parsing,
the console script."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ..errors import LinebenchError, UsageError
from ..version import __version__

try:  # typer ships its own click (see `generate`); its errors are not the click package's
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - a typer on the click package
    from click.exceptions import ClickException as _ClickException
from typer.core import TyperGroup

out_console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)


def fail(message: str, code: int = 2) -> None:
    err_console.print(Text(f"error: {message}"), soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _one_line_usage_errors():
    try:
        yield
    except _ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `linebench` alone: the help, as before
            raise
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        fail(" ".join(e.format_message().split()).rstrip(".") + hint, e.exit_code)


class OneLineErrors(TyperGroup):
    """click's own errors (an unknown option, a bad or missing value, a missing argument) as one
    line and exit 2, like every other error, instead of a usage block and a boxed panel: the one
    place they are formatted (parsing the command line, and the subcommand's)."""

    def make_context(self, *args, **kwargs):
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(
    help="Synthetic visual-grounding benchmarks with exact geometry and ground-truth attention maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def friendly(fn: Callable) -> Callable:
    """Library errors become one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LinebenchError as e:
            fail(str(e), getattr(e, "exit_code", 2))
        except KeyboardInterrupt as e:  # Ctrl-C (130) or SIGTERM (143) outside a command's own handling
            fail("interrupted", getattr(e, "exit_code", 130))

    return wrapper


def _rate(task) -> float | None:
    """Items per second made by this run (a resumed run's first value is not counted)."""
    elapsed = task.elapsed
    made = task.completed - task.fields.get("first", 0)
    return made / elapsed if elapsed and made > 0 else None


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = _rate(task)
        return Text(f"{speed:,.0f} samples/s" if speed else "… samples/s", style="progress.data.speed")


class LineProgress(Progress):
    """A rich progress bar on a terminal; elsewhere (CI logs, pipes, where a bar would only be
    drawn at the end) also a plain line every LOG_EVERY seconds."""

    LOG_EVERY = 5.0

    def __init__(self, *columns, **kwargs):
        super().__init__(*columns, **kwargs)
        self._last_log = time.monotonic()

    def add_task(self, description, start=True, total=100.0, completed=0, visible=True, **fields):
        fields.setdefault("first", completed)
        return super().add_task(description, start, total, completed, visible, **fields)

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        now = time.monotonic()
        if not self.console.is_terminal and now - self._last_log >= self.LOG_EVERY:
            self._last_log = now
            self.console.print(Text(self.line(task_id)), soft_wrap=True)

    def line(self, task_id) -> str:
        task = self._tasks[task_id]
        done, total, rate = task.completed, task.total, _rate(task)
        text = f"{task.description}: {done:,.0f}" + (f"/{total:,.0f} ({100 * done / total:.0f}%)" if total else "")
        if rate:
            text += f", {rate:,.0f}/s"
            if total and total > done:
                text += f", about {int((total - done) / rate)} s left"
        return text


def progress_bar() -> Progress:
    return LineProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
    )


def parse_part(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, sep, n = text.partition("/")
    try:
        part = (int(k), int(n))
    except ValueError:
        raise UsageError(f"--part takes K/N (e.g. 0/4 for the first of four parts), got {text!r}") from None
    if not sep or not 0 <= part[0] < part[1]:
        raise UsageError(f"--part takes K/N with 0 <= K < N, got {text!r}")
    return part


def out_path(text: str | None) -> Path | None:
    """--out as typed: an empty string is an error (not the current folder)."""
    if text is None:
        return None
    if not text.strip():
        raise UsageError("--out is empty: name a path")
    return Path(text)


def parse_canvas(text: str) -> tuple[int, int]:
    """'448' -> (448, 448); '640x480' -> (640, 480) as (width, height)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--canvas takes WIDTH or WIDTHxHEIGHT in pixels, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    from ..tasks import CANVAS_MAX, CANVAS_MIN

    if len(parts) != 2 or min(parts) < CANVAS_MIN or max(parts) > CANVAS_MAX:
        raise UsageError(f"--canvas takes WIDTH or WIDTHxHEIGHT, each within {CANVAS_MIN}..{CANVAS_MAX} px, got {text!r}")
    return parts[0], parts[1]


def version_callback(value: bool) -> None:
    if value:
        out_console.print(f"linebench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


@contextlib.contextmanager
def lazy_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar as `report(done, total)`: it starts at the first report, i.e. after the
    arguments and the folder passed their checks, so bad input prints one line and nothing else,
    and stops when the block ends."""
    bar = progress_bar()
    tid = None

    def report(done: int, total: int) -> None:
        nonlocal tid
        if tid is None:  # the first report carries what a resumed run already has: not counted in the rate
            bar.start()
            tid = bar.add_task(label, total=total, completed=done)
        bar.update(tid, completed=done)

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()


def run_with_progress(job: Callable, label: str, total: int, folder: Path) -> None:
    """Run `job(report)` under a progress bar (`lazy_progress`) and print what it wrote."""
    with lazy_progress(label) as report:
        result = job(report)
    rate = result.rows_written / result.seconds if result.seconds else 0.0
    by_run = f"{result.written} shard(s) written by this run" + (f", {result.damaged} damaged one(s) rewritten" if result.damaged else "")
    out_console.print(
        Text(f"wrote {result.rows:,} rows in {result.shards} shard(s) to {folder} ({result.seconds:.1f} s, {rate:,.0f} samples/s; {by_run})"),
        soft_wrap=True,
    )


def run() -> None:  # pragma: no cover - the console script; tests call `app` in-process
    """The `linebench` console script: `app`, then a hard exit once the output is flushed.

    pyarrow's background threads can abort the interpreter's own teardown after a run that has
    finished (apache/arrow#45214: "terminate called without an active exception", exit 134),
    which would turn a successful `generate` or `push` into a failure for scripts and CI. All
    work and files are complete by the time `app` returns, so nothing is lost by skipping it."""
    def terminate(signum, frame):  # SIGTERM: stop like Ctrl-C (workers stopped, finished shards kept), exit 143
        from ..errors import Terminated

        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        app()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            err_console.print(e.code)
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

