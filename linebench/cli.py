"""The `linebench` command: a thin skin over the library (parse, call, report progress and errors)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .version import __version__
from .errors import LinebenchError, UsageError
from .grids import DEFAULT_MAPS

try:  # typer ships its own click (see `generate`); its errors are not the click package's
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - a typer on the click package
    from click.exceptions import ClickException as _ClickException
from typer.core import TyperGroup

out_console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)


def _fail(message: str, code: int = 2) -> None:
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
        _fail(" ".join(e.format_message().split()).rstrip(".") + hint, e.exit_code)


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
            _fail(str(e), getattr(e, "exit_code", 2))
        except KeyboardInterrupt as e:  # Ctrl-C (130) or SIGTERM (143) outside a command's own handling
            _fail("interrupted", getattr(e, "exit_code", 130))

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


def _progress() -> Progress:
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


def _parse_part(text: str | None) -> tuple[int, int] | None:
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


def _out_path(text: str | None) -> Path | None:
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
    from .tasks import CANVAS_MAX, CANVAS_MIN

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


SPEC_FIXES = ("task", "n", "split", "seed", "difficulty", "knob", "canvas", "maps", "map_target", "map_neighbour", "map_floor", "map_radius", "shard_size")


@app.command()
@friendly
def generate(
    ctx: typer.Context,
    spec_file: Optional[str] = typer.Option(
        None, "--spec", "-s", help="Generate a whole release (every split) from a spec file or an official spec name: tracing, intersection, grid_patch."
    ),
    task: str = typer.Option("tracing", "--task", "-t", help="Task to generate (see `linebench tasks`)."),
    n: int = typer.Option(1000, "--n", "-n", help="Number of samples."),
    out_text: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: data/<task>)."),
    split: str = typer.Option("train", "--split", help="Split name: train, validation, test or ood."),
    seed: int = typer.Option(0, "--seed", help="Base seed; every sample's seed derives from (seed, task, split, index)."),
    difficulty: str = typer.Option("mixed", "--difficulty", "-d", help="A level (easy, medium, hard, ood), mixed (a level drawn per sample, ood excluded) or stratified (levels in turn, equal shares)."),
    knob: List[str] = typer.Option([], "--knob", "-k", help="Override a knob: NAME=VALUE or NAME=LO..HI (repeatable; see `linebench tasks`)."),
    canvas: str = typer.Option("448", "--canvas", help="Image size: WIDTH or WIDTHxHEIGHT px."),
    maps: Optional[str] = typer.Option(
        None,
        "--maps",
        help=f"Attention maps to store, comma-separated model profiles (see `linebench grids`) or uniform grids (gridN, gridRxC). Default: {','.join(DEFAULT_MAPS)} (llava-1.5-pad on a non-square canvas, where llava-1.5 crops).",
        show_default=False,
    ),
    map_target: float = typer.Option(0.80, help="Map mass on target tokens."),
    map_neighbour: float = typer.Option(0.15, help="Map mass on the neighbours of target tokens."),
    map_floor: float = typer.Option(0.05, help="Map mass on every other token."),
    map_radius: int = typer.Option(1, help="Neighbourhood radius in tokens."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Worker processes (default: all cores); output does not depend on it."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Rows per parquet shard."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing linebench dataset folder."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (same arguments); the result is byte-identical."),
    part_text: Optional[str] = typer.Option(
        None, "--part", help="Make only part K of N (0 <= K < N: every N-th shard, from shard K), to run anywhere; join the parts with `linebench merge`."
    ),
) -> None:
    """Generate a dataset folder that `datasets.load_dataset(FOLDER)` loads."""
    from functools import partial

    from .dataset import generate

    out = _out_path(out_text)
    part = _parse_part(part_text)
    run = partial(generate, part=part) if part else generate
    from .grids import canonical_maps, default_maps
    from .maps import MapParams
    from .samples import SPLITS, RunSpec
    from .tasks import ParamSpec, get_task, parse_overrides

    if spec_file is not None:
        # typer ships its own click: compare the source by name, not by enum class
        given = [f"--{name.replace('_', '-')}" for name in SPEC_FIXES if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        if given:
            raise UsageError(f"--spec fixes every split's parameters; drop {', '.join(given)} (or copy the spec and edit it)")
        from .release import load_release

        rel = load_release(spec_file)
        specs = rel.run_specs()
        _run_with_progress(
            lambda report: run(specs, out or Path("data") / rel.task, workers=workers, shard_size=rel.shard_size, overwrite=overwrite, resume=resume, progress=report, command=rel.command),
            f"{rel.task}/{'+'.join(rel.splits)}",
            sum(sp.n for sp in specs),
            out or Path("data") / rel.task,
        )
        return
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    t = get_task(task)
    size = parse_canvas(canvas)
    profiles = tuple(p.strip() for p in maps.split(",") if p.strip()) if maps is not None else default_maps(size)
    if not profiles:
        raise UsageError("--maps names no profile")
    profiles = canonical_maps(profiles, size)
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
    _run_with_progress(
        lambda report: run(spec, folder, workers=workers, shard_size=shard_size, overwrite=overwrite, resume=resume, progress=report),
        f"{t.name}/{split}",
        n,
        folder,
    )


def _run_with_progress(job: Callable, label: str, total: int, folder: Path) -> None:
    """Run `job(report)` under a progress bar and print what it wrote. The bar starts at the
    first report, i.e. after the arguments and the folder passed their checks, so bad input
    prints one line and nothing else."""
    bar = _progress()
    tid = None

    def report(done: int, total: int) -> None:
        nonlocal tid
        if tid is None:  # the first report carries what a resumed run already has: not counted in the rate
            bar.start()
            tid = bar.add_task(label, total=total, completed=done)
        bar.update(tid, completed=done)

    try:
        result = job(report)
    finally:
        if bar.live.is_started:
            bar.stop()
    rate = result.rows_written / result.seconds if result.seconds else 0.0
    by_run = f"{result.written} shard(s) written by this run" + (f", {result.damaged} damaged one(s) rewritten" if result.damaged else "")
    out_console.print(
        Text(f"wrote {result.rows:,} rows in {result.shards} shard(s) to {folder} ({result.seconds:.1f} s, {rate:,.0f} samples/s; {by_run})"),
        soft_wrap=True,
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
    out_console.print(
        "Set a knob with --knob NAME=VALUE or NAME=LO..HI. --difficulty mixed draws a level per sample and "
        "stratified takes easy, medium, hard in turn (neither ever draws ood); official releases: --spec TASK."
    )


@app.command()
@friendly
def verify(
    folder: Path = typer.Argument(..., help="A dataset folder written by `linebench generate`."),
    all_rows: bool = typer.Option(False, "--all", help="Re-render every row (default: an even sample)."),
    sample: int = typer.Option(32, "--sample", help="How many rows to re-render without --all."),
    spec_file: Optional[str] = typer.Option(
        None, "--spec", "-s", help="Also certify the folder as a copy of this release: its content checksums must match the spec's."
    ),
    write_checksums: bool = typer.Option(
        False, "--write-checksums", help="With --spec: after the checks pass, write this folder's content checksums into the spec file."
    ),
) -> None:
    """Check every published file against manifest.json and every row's identity, and rebuild rows
    from the run's specs; with --spec, certify the folder against an official release's checksums."""
    from .dataset import read_manifest
    from .verify import verify as run

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if write_checksums and spec_file is None:
        raise UsageError("--write-checksums needs --spec (the file to write them into)")
    rel = None
    if spec_file is not None:
        from .release import check_release, layout_problems, load_release, split_digests, write_checksums as write

        rel = load_release(spec_file)
    with _progress() as bar:
        tid = bar.add_task("verify", total=None)
        report = run(folder, all_rows=all_rows, sample=sample, progress=lambda d, t: bar.update(tid, completed=d, total=t))
        if rel is not None:
            bar.update(tid, description="checksums")
            manifest = read_manifest(folder)
            if write_checksums:
                report.problems.extend(layout_problems(folder, manifest, rel))
                if report.ok:
                    write(rel, manifest["generator_version"], split_digests(folder, manifest))
            else:
                problems, notes = check_release(folder, manifest, rel)
                report.problems.extend(problems)
                report.notes.extend(notes)
    for note in report.notes:
        err_console.print(Text(f"note: {note}"), soft_wrap=True)
    for p in report.problems[:50]:
        err_console.print(Text(f"mismatch: {p}"), soft_wrap=True)
    if len(report.problems) > 50:
        err_console.print(f"... and {len(report.problems) - 50} more")
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    certified = ""
    if rel is not None and report.ok:
        certified = f"; checksums written to {rel.path}" if write_checksums else f"; content matches {rel.path}"
        if report.notes and not write_checksums:
            certified += " (images: see the note above)"
    out_console.print(f"{status}: {report.shards} shard(s) checked, {report.rows_checked} row(s) re-rendered{certified}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@friendly
def score(
    folder: Path = typer.Argument(..., help="A dataset folder written by `linebench generate`."),
    predictions: Path = typer.Option(..., "--predictions", "-p", help='JSONL, one {"id": ..., "prediction": ...} per line (see docs/scoring.md).'),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here (default: PREDICTIONS with .score.json)."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the report as markdown here (default: PREDICTIONS with .score.md)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (the report is deterministic given it)."),
    missing_as_wrong: bool = typer.Option(False, "--missing-as-wrong", help="Score dataset rows without a prediction as wrong (default: leave them out, and report them)."),
) -> None:
    """Score model predictions: accuracy overall and per split, level and knob, with bootstrap intervals."""
    from .fsio import check_output, write_outputs
    from .score import default_outputs, problems, score as run, summary, fmt_acc, fmt_ci

    default_json, default_md = default_outputs(predictions)
    outputs = {"json": json_out or default_json, "markdown": markdown_out or default_md}
    for path in outputs.values():
        check_output(path)
    if outputs["json"].resolve() == outputs["markdown"].resolve():
        raise UsageError("--json and --markdown must be different files")
    report = run(folder, predictions, bootstrap=bootstrap, seed=seed, missing_as_wrong=missing_as_wrong)

    table = Table(title=f"{', '.join(report.tasks)}: {report.scored} scored rows", title_justify="left")
    table.add_column("group", overflow="fold")
    table.add_column("value", overflow="fold")
    for name in ("n", "accuracy", "95% CI", "unparseable"):
        table.add_column(name, justify="left" if name == "95% CI" else "right", no_wrap=True)
    by = None
    for g in report.groups:
        if by is not None and g.by != by:
            table.add_section()
        table.add_row(g.by if g.by != by else "", g.value, str(g.n), fmt_acc(g.accuracy), fmt_ci(g), str(g.unparseable))
        by = g.by
    out_console.print(table)
    for line in problems(report):
        err_console.print(Text(f"warning: {line}"), soft_wrap=True)
    write_outputs({outputs["json"]: report.to_json(), outputs["markdown"]: report.to_markdown()})
    out_console.print(Text(summary(report)), soft_wrap=True)
    out_console.print(Text(f"wrote {outputs['json']} and {outputs['markdown']}"), soft_wrap=True)


@app.command()
@friendly
def merge(
    parts: List[Path] = typer.Argument(..., help="The part folders (made by `linebench generate ... --part K/N`)."),
    out_text: str = typer.Option(..., "--out", "-o", help="The dataset folder to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing linebench dataset folder (kept until the merge is complete)."),
) -> None:
    """Join the parts of one run into the folder a single run makes, byte for byte."""
    from .dataset import merge as run

    out = _out_path(out_text)
    _run_with_progress(lambda report: run(parts, out, overwrite=overwrite, progress=report), "merge", 0, out)


@app.command("maps")
@friendly
def maps_cmd(
    dataset: str = typer.Argument(..., help="An HF dataset: a local folder, parquet/JSON(L) files, or a Hub id in your cache."),
    maps: str = typer.Option(..., "--maps", help="Profiles to add maps for, comma-separated (see `linebench grids`)."),
    out_text: str = typer.Option(..., "--out", "-o", help="Output folder (Hub-ready: load_dataset and `linebench push` read it)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Column layout of a known dataset: pixmo-points (points in percent) or refcoco (bbox xywh px, centre region)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split (default: every split)."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (default: image)."),
    points_column: Optional[str] = typer.Option(None, "--points-column", help="Column of points: [[x, y], ...] or [{x, y}, ...]."),
    boxes_column: Optional[str] = typer.Option(None, "--boxes-column", help="Column of boxes: one box or a list of them."),
    polygons_column: Optional[str] = typer.Option(None, "--polygons-column", help="Column of COCO polygons ([x1, y1, x2, y2, ...] lists)."),
    masks_column: Optional[str] = typer.Option(None, "--masks-column", help="Column of COCO RLE masks ({size, counts}) or 0/1 arrays."),
    box_format: Optional[str] = typer.Option(None, "--box-format", help="xyxy (x1, y1, x2, y2) or xywh (x, y, width, height). Default: xyxy."),
    coords: Optional[str] = typer.Option(None, "--coords", help="px, norm (0-1) or percent (0-100). Default: px."),
    box_mode: Optional[str] = typer.Option(None, "--box-mode", help="area (the whole box) or centre (its middle half each way). Default: area."),
    point_radius: Optional[float] = typer.Option(None, "--point-radius", help="Disc around each point: < 1 is a fraction of the short side (default 0.02), >= 1 is px."),
    size_columns: Optional[str] = typer.Option(None, "--size-columns", help="WIDTH,HEIGHT columns, for rows without image bytes."),
    question_column: Optional[str] = typer.Option(None, "--question-column", help="Question column (checked to exist; trainer and eval read it)."),
    answer_column: Optional[str] = typer.Option(None, "--answer-column", help="Answer column (checked to exist)."),
    map_target: float = typer.Option(0.8, help="Map mass on target tokens (target + neighbour + floor = 1)."),
    map_neighbour: float = typer.Option(0.15, help="Map mass on tokens next to a target."),
    map_floor: float = typer.Option(0.05, help="Map mass spread over every other token."),
    map_radius: int = typer.Option(1, help="Neighbourhood radius in tokens."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Rows per parquet shard."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Worker processes (default: all cores); output does not depend on it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the folder (the old one stays until the new one is complete)."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (same arguments)."),
) -> None:
    """Add exact ground-truth attention maps to a real grounding dataset (points, boxes, polygons, masks)."""
    from dataclasses import replace

    from .annotate import PRESETS, Options, add_maps
    from .maps import MapParams

    out = _out_path(out_text)
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    opts = PRESETS[preset] if preset else Options()
    given = {k: v for k, v in (("points", points_column), ("boxes", boxes_column), ("polygons", polygons_column), ("masks", masks_column)) if v}
    if len(given) > 1:
        raise UsageError("name one annotation column: --points-column, --boxes-column, --polygons-column or --masks-column")
    if given:
        kind, column = next(iter(given.items()))
        opts = replace(opts, kind=kind, column=column)
    elif preset is None:
        raise UsageError("name the annotation column (--points-column, --boxes-column, --polygons-column or --masks-column) or a --preset")
    changes = {"image_column": image_column, "box_format": box_format, "coords": coords, "box_mode": box_mode,
               "point_radius": point_radius, "question_column": question_column, "answer_column": answer_column}
    opts = replace(opts, **{k: v for k, v in changes.items() if v is not None})
    if size_columns is not None:
        cols = tuple(c.strip() for c in size_columns.split(","))
        if len(cols) != 2 or not all(cols):
            raise UsageError(f"--size-columns takes WIDTH,HEIGHT column names, got {size_columns!r}")
        opts = replace(opts, size_columns=cols)
    profiles = tuple(p.strip() for p in maps.split(",") if p.strip())
    mp_ = MapParams(map_target, map_neighbour, map_floor, map_radius)
    command = _maps_command(dataset, profiles, opts, split, mp_, shard_size)
    _run_with_progress(
        lambda report: add_maps(dataset, out, maps=profiles, opts=opts, split=split, map_params=mp_,
                                shard_size=shard_size, workers=workers, overwrite=overwrite, resume=resume, progress=report, command=command),
        f"maps {Path(dataset).name or dataset}",
        0,
        out,
    )


def _maps_command(dataset: str, profiles, opts, split, mp_, shard_size: int) -> str:
    """The command that remakes a `maps` folder, spelled out (no output path: it says nothing about the data)."""
    from shlex import quote

    parts = ["linebench maps", quote(dataset), f"--maps {','.join(profiles)}"]
    parts += [f"--split {quote(split)}"] if split else []
    parts += [f"--image-column {quote(opts.image_column)}", f"--{opts.kind}-column {quote(opts.column)}", f"--coords {opts.coords}"]
    parts += [f"--box-format {opts.box_format} --box-mode {opts.box_mode}"] if opts.kind == "boxes" else []
    parts += [f"--point-radius {opts.point_radius}"] if opts.kind == "points" and opts.point_radius is not None else []
    parts += [f"--size-columns {','.join(opts.size_columns)}"] if opts.size_columns else []
    parts += [f"--{w}-column {quote(c)}" for w, c in (("question", opts.question_column), ("answer", opts.answer_column)) if c]
    parts.append(f"--map-target {mp_.target} --map-neighbour {mp_.neighbour} --map-floor {mp_.floor} --map-radius {mp_.radius}")
    parts.append(f"--shard-size {shard_size}")
    return " ".join(parts)


@app.command()
@friendly
def grids(
    canvas: str = typer.Option("448", "--canvas", help="Image size: WIDTH or WIDTHxHEIGHT px."),
    profile: List[str] = typer.Option([], "--profile", "-p", help="Only these profiles (repeatable; NAME or NAME:key=value)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: every grid with its canvas edges."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a markdown table (as in docs/attention-maps.md)."),
) -> None:
    """Print each model profile's token layout for a canvas: grids in token order and token counts."""
    import json

    from .grids import get_profile, layout, parse_profile, profile_names

    size = parse_canvas(canvas)
    if json_out and markdown:
        raise UsageError("--json and --markdown exclude each other: choose one")
    names = profile or profile_names()
    lays, failed = [], {}
    for name in names:
        try:
            lays.append(layout(name, size))
        except UsageError as e:
            if profile:  # asked for by name: its error is the answer
                raise
            failed[name] = str(e)  # one profile that cannot take this canvas does not hide the others
    if json_out:
        out_console.print_json(json.dumps([
            {
                "profile": lay.profile,
                "params": dict(lay.params),
                "tokens": lay.num_tokens,
                "placeholders": lay.num_placeholders,
                "grids": [
                    {"label": g.label, "rows": g.rows, "cols": g.cols, "newline": g.newline, "before": g.before,
                     "x_edges": [round(float(v), 4) for v in g.x_edges], "y_edges": [round(float(v), 4) for v in g.y_edges]}
                    for g in lay.grids
                ],
                "after": lay.after,
            }
            for lay in lays
        ] + [{"profile": name, "error": why} for name, why in failed.items()]))
        return
    header = ("profile", "grids in token order", "tokens", "in input_ids", "preprocessing")
    rows = []
    for lay in lays:
        name, _ = parse_profile(lay.profile)
        summary = "uniform grid over the canvas" if name.startswith("grid") else get_profile(name).summary
        if lay.params:
            summary += " (" + ", ".join(f"{k}={v}" for k, v in lay.params.items()) + ")"
        rows.append((lay.profile, lay.describe().split(" = ")[0], str(lay.num_tokens), str(lay.num_placeholders), summary))
    for name, why in failed.items():
        rows.append((name, "n/a", "n/a", "n/a", why.split(": ", 1)[-1]))
    if markdown:
        print("| " + " | ".join(header) + " |\n|---|---|--:|--:|---|")
        for r in rows:
            print("| " + " | ".join(f"`{c}`" if i == 0 else c.replace("|", "\\|") for i, c in enumerate(r)) + " |")
        return
    table = Table(title=f"token layouts for a {size[0]}x{size[1]} canvas", title_justify="left")
    for i, col in enumerate(header):
        table.add_column(col, no_wrap=i == 0, justify="right" if i in (2, 3) else "left", overflow="fold")
    for r in rows:
        table.add_row(*r)
    out_console.print(table)
    out_console.print("'in input_ids' counts the image tokens the model's processor inserts (with per-row newline tokens). Parameters: NAME:key=value.")


@app.command()
@friendly
def show(
    folder: Path = typer.Argument(..., help="A dataset folder written by `linebench generate`."),
    index: int = typer.Option(0, "--index", "-i", help="Row index within the split."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the folder's first)."),
    maps: Optional[str] = typer.Option(None, "--maps", help="Profiles to show, comma-separated (default: the maps stored in the folder)."),
    out_text: Optional[str] = typer.Option(None, "--out", "-o", help="PNG to write (default: show-<row id>.png in the current folder)."),
    map_target: Optional[float] = typer.Option(None, help="Map mass on target tokens (default: the row's; target + neighbour + floor must sum to 1)."),
    map_neighbour: Optional[float] = typer.Option(None, help="Map mass on neighbours (default: the row's)."),
    map_floor: Optional[float] = typer.Option(None, help="Map mass on every other token (default: the row's)."),
    map_radius: Optional[int] = typer.Option(None, help="Neighbourhood radius in tokens (default: the row's)."),
) -> None:
    """Write a PNG of one sample with its attention map(s) over it (target / neighbour / floor)."""
    import json

    import cv2

    from .dataset import read_row
    from .maps import attention_map
    from .show import decode, map_panels, sheet

    from .fsio import check_output, check_path_text, write_output

    out = _out_path(out_text)
    if out is not None:
        check_path_text(out, "--out")
        if out.suffix.lower() != ".png":
            raise UsageError(f"--out must end in .png, got {out}")
        check_output(out)  # before any work: a missing folder, a loop, a read-only place
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    row = read_row(folder, index, split)
    stored = json.loads(row["params"]).get("maps", {}).get("profiles", [])
    profiles = [p.strip() for p in maps.split(",") if p.strip()] if maps is not None else stored
    if not profiles:
        raise UsageError("this folder stores no maps; pass --maps")
    overrides = {k: v for k, v in {"target": map_target, "neighbour": map_neighbour, "floor": map_floor, "radius": map_radius}.items() if v is not None}
    image = decode(row["image"])
    panels = [panel for p in profiles for panel in map_panels(image, attention_map(row, p, **overrides))]
    picture = sheet(panels, f"{row['id']}: {row['question']} -> {row['answer']}")
    path = out or Path(f"show-{row['id']}.png")
    ok, data = cv2.imencode(".png", picture)
    if not ok:
        raise UsageError("could not encode the picture as PNG")
    write_output(path, data.tobytes())  # atomic (or through, for a device); one line on failure
    out_console.print(f"wrote {path} ({', '.join(profiles)}; row {row['id']})")


@app.command()
@friendly
def push(
    folder: Path = typer.Argument(..., help="A dataset folder written by `linebench generate`."),
    repo_id: str = typer.Option(..., "--repo-id", "-r", help="The Hub dataset repo, ORG/NAME (e.g. linebench/tracing); created if missing."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (refused if it exists and is public)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created if missing; default: main)."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing to the branch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be uploaded and validate the card; upload nothing."),
) -> None:
    """Publish a dataset folder to the Hugging Face Hub in one commit (token: HF_TOKEN or `hf auth login`)."""
    from .hub import dry_run as plan_only, push as run

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True)
    tid = bar.add_task("checking shards (sha256)", total=None)

    def checking(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(tid, completed=done, total=total)
        if done == total:
            bar.stop()

    if dry_run:
        try:
            the_plan, validation = plan_only(folder, repo_id, checking)
        finally:
            bar.stop()
        table = Table(title=f"would upload to https://huggingface.co/datasets/{repo_id}" + (f" ({revision})" if revision else ""))
        table.add_column("file")
        table.add_column("bytes", justify="right")
        for path, size in the_plan.files:
            table.add_row(path, f"{size:,}")
        table.add_row(f"{len(the_plan.files)} files", f"{the_plan.total_bytes:,}")
        out_console.print(table)
        out_console.print(Text(f"config: {the_plan.config}; card: {validation}"), soft_wrap=True)
        out_console.print(Text(f"commit message: {the_plan.commit_message}"), soft_wrap=True)
        if the_plan.tag and not create_pr and revision in (None, "main"):
            out_console.print(Text(f"tag: {the_plan.tag}"), soft_wrap=True)
        return
    try:
        result = run(folder, repo_id, private=private, revision=revision, create_pr=create_pr, progress=checking)
    finally:
        bar.stop()
    out_console.print(Text(f"pushed {folder} to {result.url}"), soft_wrap=True)
    out_console.print(Text(f"commit: {result.commit_url}"), soft_wrap=True)
    if result.pr_url:
        out_console.print(Text(f"pull request: {result.pr_url}"), soft_wrap=True)
    if result.tag:
        out_console.print(Text(f"tagged {result.tag}: load_dataset({repo_id!r}, revision={result.tag!r})"), soft_wrap=True)
    for note in result.notes:
        out_console.print(Text(note), soft_wrap=True)


@app.command()
@friendly
def train(
    model: str = typer.Option("tiny", "--model", "-m", help="tiny (a small random-init LLaVA, built locally), tiny-qwen2.5-vl, a checkpoint folder, or a Hub id already in your cache (never downloaded): LLaVA-1.5, Qwen2-VL, Qwen2.5-VL."),
    data: Optional[str] = typer.Option(None, "--data", help="A linebench folder or a cached Hub id (linebench/tracing). Default: generate --n rows of --task."),
    task: str = typer.Option("grid_patch", "--task", "-t", help="Task to generate when --data is not given."),
    n: int = typer.Option(2000, "--n", "-n", help="Rows to generate when --data is not given."),
    difficulty: str = typer.Option("easy", "--difficulty", "-d", help="Level of the generated rows."),
    canvas: Optional[str] = typer.Option(None, "--canvas", help="Canvas of the generated rows (default: 224 for the tiny models, else 448)."),
    split: str = typer.Option("train", "--split", help="Split of --data to train on (held out: validation or test if there, else its last rows)."),
    eval_n: int = typer.Option(128, "--eval-n", help="Held-out rows evaluated before, during and after training."),
    out_text: str = typer.Option("runs/train", "--out", "-o", help="Run folder: metrics, plots, checkpoints, the trained model."),
    klal: bool = typer.Option(False, "--klal/--no-klal", help="Add lambda * KLAL to the next-token loss (without it: the NTP-only baseline, same data, order and seed)."),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of KLAL."),
    layers: str = typer.Option("all", "--klal-layers", help="Supervised decoder layers: all, last:K or i,j,..."),
    query: str = typer.Option("answer-content", "--klal-query", help="Which query attends: answer-content (the queries that produce the answer's letters and digits, never a format token such as ')'), last-answer, answer-start, all-answer, at-last-label (docs/klal.md)."),
    map_target: float = typer.Option(0.80, help="Map mass on target tokens."),
    map_neighbour: float = typer.Option(0.15, help="Map mass on their neighbours."),
    map_floor: float = typer.Option(0.05, help="Map mass on every other token."),
    map_radius: int = typer.Option(1, help="Neighbourhood radius in tokens."),
    lora: bool = typer.Option(False, "--lora/--full", help="LoRA on the language model's linear layers (never the vision tower), or full fine-tuning (default)."),
    lora_rank: int = typer.Option(16, "--lora-rank", help="LoRA rank."),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 weights and autocast (GPUs)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Non-reentrant activation checkpointing."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine schedule; 1e-3 suits the tiny models, ~1e-5 full fine-tuning of 7B models)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Per-device batch size."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Gradient accumulation steps."),
    steps: int = typer.Option(600, "--steps", help="Optimizer steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the model's data order and initialisation."),
    eval_every: int = typer.Option(0, "--eval-every", help="Also evaluate every this many steps (0: before and after only)."),
    save_every: int = typer.Option(200, "--save-every", help="Checkpoint every this many steps (for --resume)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Truncate sequences (default: never; a cut image is refused)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest complete checkpoint (same options; damaged or unfinished checkpoints are removed, saying so)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Processes for generating data."),
    backend: str = typer.Option("auto", "--klal-backend", help="The KLAL op: auto (Triton kernels on CUDA), triton, torch."),
) -> None:
    """Fine-tune a VLM with L = L_NTP + lambda * L_KLAL (docs/training.md). With no options: the tiny
    default model on 2,000 generated grid-patch rows, on the CPU, in a few minutes."""
    from .train.run import TrainOptions, train as run_train

    out = _out_path(out_text)
    opts = TrainOptions(
        model=model, data=data, task=task, n=n, difficulty=difficulty, canvas=parse_canvas(canvas) if canvas else None, split=split,
        eval_n=eval_n, out=str(out), klal=klal, lam=lam, layers=layers, query=query,
        map_params=dict(target=map_target, neighbour=map_neighbour, floor=map_floor, radius=map_radius), lora=lora, lora_rank=lora_rank,
        bf16=bf16, gradient_checkpointing=gradient_checkpointing, learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum,
        steps=steps, seed=seed, eval_every=eval_every, save_every=save_every, max_length=max_length, resume=resume,
        overwrite=overwrite, workers=workers, backend=backend,
    )  # fmt: skip
    command = "linebench " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("linebench") else "linebench train"
    result = run_train(opts, command=command, log=lambda m: err_console.print(Text(m), soft_wrap=True))
    from .evaluate.diagnostics import layer_mean

    b, a = result["before"], result["after"]
    out_console.print(Text(f"accuracy {b.get('accuracy', float('nan')):.3f} -> {a['accuracy']:.3f} on {a['rows']} held-out rows; "
                           f"attention ratio (target / visual, mean over layers) {layer_mean(b, 'ratio'):.3f} -> {layer_mean(a, 'ratio'):.3f}; "
                           f"KL {layer_mean(b, 'kl'):.3f} -> {layer_mean(a, 'kl'):.3f}"), soft_wrap=True)
    if a.get("diagnostics", {}).get("rows"):
        from .evaluate.diagnostics import describe

        out_console.print(Text(f"after: {describe(a['diagnostics'])}"), soft_wrap=True)
    out_console.print(Text(f"wrote {result['out']}: metrics.jsonl, eval.json, loss.png, accuracy.png, attention.png, model/"), soft_wrap=True)


@app.command(name="eval")
@friendly
def eval_(
    data: Optional[str] = typer.Argument(None, help="A linebench folder, or a dataset Hub id in your cache (linebench/tracing)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="hf: a checkpoint folder, a cached Hub id or tiny; openai: the served model's name."),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf (default for a local or cached checkpoint) or openai (default with --base-url)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: test, or the folder's only split).", show_default=False),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N rows only."),
    out_text: Optional[str] = typer.Option(None, "--out", "-o", help="Run folder (default runs/eval/<model>--<data>--<split>); locked while the run lasts."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="hf: rows per generate() call."),
    dtype: str = typer.Option("auto", "--dtype", help="hf: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16."),
    device: str = typer.Option("auto", "--device", help="hf: auto, cpu, cuda, cuda:N, or device_map (device_map='auto' across GPUs)."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer generated."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: the server, e.g. http://localhost:8000/v1 (vLLM, SGLang, llama.cpp server, hosted APIs)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai: the environment variable holding the API key (the key itself is never printed or written)."),
    concurrency: int = typer.Option(8, "--concurrency", help="openai: requests in flight."),
    temperature: float = typer.Option(0.0, "--temperature", help="openai: sampling temperature (0: greedy, comparable across models)."),
    timeout: float = typer.Option(60.0, "--timeout", help="openai: seconds per request before it is retried."),
    retries: int = typer.Option(5, "--retries", help="openai: retries of a row on 429, 5xx, timeouts, dropped connections and replies without an answer (exponential backoff, Retry-After honoured); then the row is reported as failed and a rerun asks it again."),
    backoff: float = typer.Option(0.5, "--backoff", help="openai: seconds before a row's first retry, doubled for each further one (up to 8 s)."),
    prompt_suffix: str = typer.Option("", "--prompt-suffix", help="Text appended to every question (default none: the questions say how to answer)."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for every request."),
    attention: bool = typer.Option(False, "--attention", help="hf: attention diagnostics per layer and level, and overlays (image | attention | ground truth)."),
    force: bool = typer.Option(False, "--force", help="Reuse an --out folder that holds another evaluation."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="Put these eval folders side by side (no model run): --compare DIR --compare DIR ..."),
) -> None:
    """Run a VLM over a benchmark and score it: local HF checkpoints (with attention diagnostics) or
    any OpenAI-compatible server; predictions stream to disk and a killed run resumes (docs/eval.md)."""
    if compare:
        from .evaluate.report import compare as run_compare

        target = _out_path(out_text) or Path("runs") / "compare"
        path = run_compare([str(d) for d in compare], target)
        out_console.print(Text(path.read_text()), soft_wrap=True)
        out_console.print(Text(f"wrote {target}: compare.md, compare.png, compare.html"), soft_wrap=True)
        return
    if data is None or model is None:
        raise UsageError("linebench eval needs DATA and --model (or --compare DIR ...)")
    from .evaluate.run import EvalOptions, evaluate_folder, failure_line

    out = _out_path(out_text)
    opts = EvalOptions(
        data=data, model=model, backend=backend, split=split, limit=limit, out=str(out) if out else None, batch_size=batch_size,
        dtype=dtype, device=device, max_new_tokens=max_new_tokens, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
        temperature=temperature, timeout_s=timeout, retries=retries, backoff_s=backoff, prompt_suffix=prompt_suffix, system=system,
        attention=attention, force=force,
    )  # fmt: skip
    bar = _progress()
    task_id = None

    def report(done: int, total: int) -> None:
        nonlocal task_id
        if task_id is None:
            bar.start()
            task_id = bar.add_task(f"{model}", total=total, completed=done)
        bar.update(task_id, completed=done)

    try:
        res = evaluate_folder(opts, progress=report, log=lambda m: err_console.print(Text(m), soft_wrap=True))
    finally:
        bar.stop()
    acc = res["accuracy"]
    out_console.print(Text(f"accuracy {100 * acc:.1f}% on {res['scored']} of {res['rows']} rows ({res['asked']} asked now, {res['unparseable']} unparseable)"), soft_wrap=True)
    if res["attention"]:
        layers = res["attention"]["layers"]
        ratios = ", ".join(f"{r['ratio']:.2f}" for r in layers)
        out_console.print(Text(f"attention ratio (target / visual) per layer: {ratios}"), soft_wrap=True)
    out_console.print(Text(f"wrote {res['out']}: predictions.jsonl, score.json, score.md, report.html"), soft_wrap=True)
    if res["failed"]:  # the run is incomplete: exit 1 (2 is for bad input)
        _fail(failure_line(res["failed"], res["rows"]), 1)


def run() -> None:  # pragma: no cover - the console script; tests call `app` in-process
    """The `linebench` console script: `app`, then a hard exit once the output is flushed.

    pyarrow's background threads can abort the interpreter's own teardown after a run that has
    finished (apache/arrow#45214: "terminate called without an active exception", exit 134),
    which would turn a successful `generate` or `push` into a failure for scripts and CI. All
    work and files are complete by the time `app` returns, so nothing is lost by skipping it."""
    def terminate(signum, frame):  # SIGTERM: stop like Ctrl-C (workers stopped, finished shards kept), exit 143
        from .errors import Terminated

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


if __name__ == "__main__":  # pragma: no cover
    run()
