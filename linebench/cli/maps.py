"""`linebench maps`: add ground-truth maps to a real grounding dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .base import app, friendly, out_path, run_with_progress
from .options import ALL_CORES, MapFloor, MapNeighbour, MapRadius, MapTarget, Overwrite, Resume, ShardSize, Workers


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
    map_target: MapTarget = 0.8,
    map_neighbour: MapNeighbour = 0.15,
    map_floor: MapFloor = 0.05,
    map_radius: MapRadius = 1,
    shard_size: ShardSize = 1000,
    workers: Workers = ALL_CORES,
    overwrite: Overwrite = False,
    resume: Resume = False,
) -> None:
    """Add exact ground-truth attention maps to a real grounding dataset (points, boxes, polygons, masks)."""
    from ..annotate import add_maps, maps_command, options_for
    from ..maps import MapParams

    out = out_path(out_text)
    opts = options_for(
        preset, {"points": points_column, "boxes": boxes_column, "polygons": polygons_column, "masks": masks_column}, size_columns,
        image_column=image_column, box_format=box_format, coords=coords, box_mode=box_mode, point_radius=point_radius,
        question_column=question_column, answer_column=answer_column,
    )  # fmt: skip
    profiles = tuple(p.strip() for p in maps.split(",") if p.strip())
    mp_ = MapParams(map_target, map_neighbour, map_floor, map_radius)
    command = maps_command(dataset, profiles, opts, split, mp_, shard_size)
    run_with_progress(
        lambda report: add_maps(dataset, out, maps=profiles, opts=opts, split=split, map_params=mp_,
                                shard_size=shard_size, workers=workers, overwrite=overwrite, resume=resume, progress=report, command=command),
        f"maps {Path(dataset).name or dataset}",
        0,
        out,
    )
