"""`linebench models`: the VLM families linebench trains and evaluates (the support matrix)."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from .base import app, friendly, out_console


@app.command()
@friendly
def models(
    markdown: bool = typer.Option(False, "--markdown", help="Print a markdown table (as in docs/training.md)."),
) -> None:
    """List the VLM families `linebench train` and `linebench eval --backend hf` support: model
    types, map profile, the tiny model to try each with, and what the tests check."""
    from ..families import matrix

    rows = matrix()
    header = list(rows[0])
    if markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(str(r[h]).replace("|", "\\|") for h in header) + " |")
        return
    table = Table(title="VLM families (train, LoRA, resume, eval, attention)", title_justify="left", show_lines=True)
    for h in ("family", "model_type", "map profile", "tiny model", "train", "checked"):
        table.add_column(h, overflow="fold", no_wrap=h in ("train",))
    for r in rows:
        table.add_row(r["family"], r["model_type"].replace("`", ""), r["map profile"].replace("`", ""), r["tiny model"].replace("`", ""),
                      "✓ all" if r["train"] == "✓" else "✗", r["checked"])  # fmt: skip
    out_console.print(table)
    out_console.print(Text("Try one: linebench train --model tiny-<family> --klal; a checkpoint of the same model type trains the same way."))
