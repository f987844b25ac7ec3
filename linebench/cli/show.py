"""`linebench show`: one sample with its maps, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from .base import app, friendly, out_console, out_path
from .options import Folder, MapFloor, MapNeighbour, MapRadius, MapTarget


@app.command()
@friendly
def show(
    folder: Folder,
    index: int = typer.Option(0, "--index", "-i", help="Row index within the split."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the folder's first)."),
    maps: Optional[str] = typer.Option(None, "--maps", help="Profiles to show, comma-separated (default: the maps stored in the folder)."),
    out_text: Optional[str] = typer.Option(None, "--out", "-o", help="PNG to write (default: show-<row id>.png in the current folder)."),
    map_target: MapTarget = None,
    map_neighbour: MapNeighbour = None,
    map_floor: MapFloor = None,
    map_radius: MapRadius = None,
) -> None:
    """Write a PNG of one sample with its attention map(s) over it (target / neighbour / floor); the map
    levels are the row's own unless --map-* options say otherwise."""
    import json

    import cv2

    from ..dataset import read_row
    from ..maps import attention_map
    from ..show import decode, map_panels, sheet

    from ..fsio import check_output, check_path_text, write_output

    out = out_path(out_text)
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
