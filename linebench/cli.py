"""The `linebench` command: a thin skin over the library (parse, call, report progress and errors)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import LinebenchError, UsageError

app = typer.Typer(
    help="Synthetic visual-grounding benchmarks with exact geometry and ground-truth attention maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(Text(f"error: {message}"), soft_wrap=True)
    raise typer.Exit(code)


def friendly(fn: Callable) -> Callable:
    """Library errors become one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LinebenchError as e:
            _fail(str(e))

    return wrapper


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} samples/s" if speed else "… samples/s", style="progress.data.speed")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
    )


def parse_canvas(text: str) -> tuple[int, int]:
    """'448' -> (448, 448); '640x480' -> (640, 480) as (width, height)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--canvas takes WIDTH or WIDTHxHEIGHT in pixels, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32 or max(parts) > 8192:
        raise UsageError(f"--canvas takes WIDTH or WIDTHxHEIGHT, each within 32..8192 px, got {text!r}")
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


@app.command()
@friendly
def generate(
    task: str = typer.Option("tracing", "--task", "-t", help="Task to generate (see `linebench tasks`)."),
    n: int = typer.Option(1000, "--n", "-n", help="Number of samples."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: data/<task>)."),
    split: str = typer.Option("train", "--split", help="Split name: train, validation, test or ood."),
    seed: int = typer.Option(0, "--seed", help="Base seed; every sample's seed derives from (seed, task, split, index)."),
    difficulty: str = typer.Option("mixed", "--difficulty", "-d", help="easy, medium, hard, or mixed (a level drawn per sample)."),
    knob: List[str] = typer.Option([], "--knob", "-k", help="Override a knob: NAME=VALUE or NAME=LO..HI (repeatable; see `linebench tasks`)."),
    canvas: str = typer.Option("448", "--canvas", help="Image size: WIDTH or WIDTHxHEIGHT px."),
    maps: str = typer.Option("grid24,grid16", "--maps", help="Attention-map grids to store, comma-separated (gridN, gridRxC)."),
    map_target: float = typer.Option(0.80, help="Map mass on target tokens."),
    map_neighbour: float = typer.Option(0.15, help="Map mass on the neighbours of target tokens."),
    map_floor: float = typer.Option(0.05, help="Map mass on every other token."),
    map_radius: int = typer.Option(1, help="Neighbourhood radius in tokens."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Worker processes (default: all cores); output does not depend on it."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Rows per parquet shard."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing linebench dataset folder."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (same arguments); the result is byte-identical."),
) -> None:
    """Generate a dataset folder that `datasets.load_dataset(FOLDER)` loads."""
    from .dataset import generate as run
    from .grids import layout
    from .maps import MapParams
    from .samples import SPLITS, RunSpec
    from .tasks import ParamSpec, get_task, parse_overrides

    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    t = get_task(task)
    size = parse_canvas(canvas)
    profiles = tuple(p.strip() for p in maps.split(",") if p.strip())
    for p in profiles:
        layout(p, size)
    spec = RunSpec(
        task=t.name,
        split=split,
        n=n,
        seed=seed,
        params=ParamSpec(size, difficulty, parse_overrides(t, knob)),
        maps=profiles,
        map_params=MapParams(map_target, map_neighbour, map_floor, map_radius),
    )
    folder = out or Path("data") / t.name
    # The bar starts at the first report, i.e. after the arguments and the folder passed their
    # checks, so bad input prints one line and nothing else.
    bar = _progress()
    tid = bar.add_task(f"{t.name}/{split}", total=n)

    def report(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(tid, completed=done)

    try:
        result = run(spec, folder, workers=workers, shard_size=shard_size, overwrite=overwrite, resume=resume, progress=report)
    except KeyboardInterrupt:
        if bar.live.is_started:
            bar.stop()
        _fail(f"interrupted; finished shards are kept. Run the same command with --resume to finish {folder}", 130)
    finally:
        if bar.live.is_started:
            bar.stop()
    rate = result.rows / result.seconds if result.seconds else 0.0
    out_console.print(
        f"wrote {result.rows} rows in {result.shards} shard(s) to {folder} "
        f"({result.seconds:.1f} s, {rate:,.0f} samples/s; {result.written} shard(s) written by this run)"
    )


@app.command()
@friendly
def tasks() -> None:
    """List the installed tasks with their difficulty levels and knobs."""
    from .tasks import get_task, task_names

    names = task_names()
    if not names:
        raise UsageError("no tasks are installed (entry-point group linebench.tasks); is linebench installed?")
    for name in names:
        t = get_task(name)
        table = Table(title=f"{name} (v{t.version}): {t.description}", title_justify="left", show_lines=True)
        table.add_column("knob / meaning", min_width=24, ratio=1)
        table.add_column("type", no_wrap=True)
        table.add_column("default", no_wrap=True)
        table.add_column(" / ".join(t.levels), no_wrap=True)

        def fmt(v) -> str:
            if v is None:
                return "-"
            return f"{v[0]}..{v[1]}" if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)

        for k in t.knobs:
            kind = k.kind.__name__ + (", audit" if k.audit else "")
            per_level = " / ".join(fmt(t.levels[lv].get(k.name)) for lv in t.levels) if not k.audit else "-"
            table.add_row(Text.assemble((k.name, "bold"), "\n", (k.help, "dim")), kind, fmt(k.default), per_level)
        out_console.print(table)
    out_console.print("Set a knob with --knob NAME=VALUE or NAME=LO..HI; --difficulty mixed draws a level per sample.")


@app.command()
@friendly
def verify(
    folder: Path = typer.Argument(..., help="A dataset folder written by `linebench generate`."),
    all_rows: bool = typer.Option(False, "--all", help="Re-render every row (default: an even sample)."),
    sample: int = typer.Option(32, "--sample", help="How many rows to re-render without --all."),
) -> None:
    """Check shards against manifest.json and re-render rows from their stored seed and params."""
    from .verify import verify as run

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    with _progress() as bar:
        tid = bar.add_task("verify", total=None)
        report = run(folder, all_rows=all_rows, sample=sample, progress=lambda d, t: bar.update(tid, completed=d, total=t))
    for p in report.problems[:50]:
        err_console.print(Text(f"mismatch: {p}"), soft_wrap=True)
    if len(report.problems) > 50:
        err_console.print(f"... and {len(report.problems) - 50} more")
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    out_console.print(f"{status}: {report.shards} shard(s) checked, {report.rows_checked} row(s) re-rendered")
    if not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
