"""Options that several commands take, declared once (typer `Annotated` aliases, as the
huggingface_hub CLI declares `RepoIdArg`, `TokenOpt`): the same flag has the same name, help and
type everywhere. A command gives the default: `workers: Workers = ALL_CORES`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

ALL_CORES = os.cpu_count() or 1

Folder = Annotated[Path, typer.Argument(help="A dataset folder written by `linebench generate`.")]
Canvas = Annotated[str, typer.Option("--canvas", help="Image size: WIDTH or WIDTHxHEIGHT px.")]
Workers = Annotated[int, typer.Option("--workers", "-w", help="Worker processes (default: all cores); the output does not depend on it.")]
ShardSize = Annotated[int, typer.Option("--shard-size", help="Rows per parquet shard.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing linebench folder (the old one stays until the new one is complete).")]
Resume = Annotated[bool, typer.Option("--resume", help="Finish an interrupted run (same arguments); the result is byte-identical.")]

# The map levels (docs/attention-maps.md). `show` leaves them unset: a row's own levels.
MapTarget = Annotated[Optional[float], typer.Option("--map-target", help="Map mass on target tokens (target + neighbour + floor = 1).")]
MapNeighbour = Annotated[Optional[float], typer.Option("--map-neighbour", help="Map mass on the neighbours of target tokens.")]
MapFloor = Annotated[Optional[float], typer.Option("--map-floor", help="Map mass on every other token.")]
MapRadius = Annotated[Optional[int], typer.Option("--map-radius", help="Neighbourhood radius in tokens.")]
