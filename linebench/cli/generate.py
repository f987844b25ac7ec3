"""`linebench generate`: a dataset folder (one split, or a release's splits from a spec)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UsageError
from ..grids import DEFAULT_MAPS
from .base import app, friendly, out_path, parse_canvas, parse_part, run_with_progress
from .options import ALL_CORES, Canvas, MapFloor, MapNeighbour, MapRadius, MapTarget, Overwrite, Resume, ShardSize, Workers


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
    canvas: Canvas = "448",
    maps: Optional[str] = typer.Option(
        None,
        "--maps",
        help=f"Attention maps to store, comma-separated model profiles (see `linebench grids`) or uniform grids (gridN, gridRxC). Default: {','.join(DEFAULT_MAPS)} (llava-1.5-pad on a non-square canvas, where llava-1.5 crops).",
        show_default=False,
    ),
    map_target: MapTarget = 0.80,
    map_neighbour: MapNeighbour = 0.15,
    map_floor: MapFloor = 0.05,
    map_radius: MapRadius = 1,
    workers: Workers = ALL_CORES,
    shard_size: ShardSize = 1000,
    overwrite: Overwrite = False,
    resume: Resume = False,
    part_text: Optional[str] = typer.Option(
        None, "--part", help="Make only part K of N (0 <= K < N: every N-th shard, from shard K), to run anywhere; join the parts with `linebench merge`."
    ),
) -> None:
    """Generate a dataset folder that `datasets.load_dataset(FOLDER)` loads."""
    from functools import partial

    from ..dataset import generate

    out = out_path(out_text)
    part = parse_part(part_text)
    run = partial(generate, part=part) if part else generate
    from ..grids import canonical_maps, default_maps
    from ..maps import MapParams
    from ..samples import SPLITS, RunSpec
    from ..tasks import ParamSpec, get_task, parse_overrides

    if spec_file is not None:
        # typer ships its own click: compare the source by name, not by enum class
        given = [f"--{name.replace('_', '-')}" for name in SPEC_FIXES if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        if given:
            raise UsageError(f"--spec fixes every split's parameters; drop {', '.join(given)} (or copy the spec and edit it)")
        from ..release import load_release

        rel = load_release(spec_file)
        specs = rel.run_specs()
        run_with_progress(
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
    run_with_progress(
        lambda report: run(spec, folder, workers=workers, shard_size=shard_size, overwrite=overwrite, resume=resume, progress=report),
        f"{t.name}/{split}",
        n,
        folder,
    )
