"""`linebench grids`: each model profile's token layout for a canvas."""

from __future__ import annotations

from typing import List

import typer
from rich.table import Table

from ..errors import UsageError
from .base import app, friendly, out_console, parse_canvas
from .options import Canvas


@app.command()
@friendly
def grids(
    canvas: Canvas = "448",
    profile: List[str] = typer.Option([], "--profile", "-p", help="Only these profiles (repeatable; NAME or NAME:key=value)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: every grid with its canvas edges."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a markdown table (as in docs/attention-maps.md)."),
) -> None:
    """Print each model profile's token layout for a canvas: grids in token order and token counts."""
    import json

    from ..grids import get_profile, layout, parse_profile, profile_names

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
