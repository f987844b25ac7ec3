"""`linebench merge`: join the parts of one run."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .base import app, friendly, out_path, run_with_progress
from .options import Overwrite


@app.command()
@friendly
def merge(
    parts: List[Path] = typer.Argument(..., help="The part folders (made by `linebench generate ... --part K/N`)."),
    out_text: str = typer.Option(..., "--out", "-o", help="The dataset folder to write."),
    overwrite: Overwrite = False,
) -> None:
    """Join the parts of one run into the folder a single run makes, byte for byte."""
    from ..dataset import merge as run

    out = out_path(out_text)
    run_with_progress(lambda report: run(parts, out, overwrite=overwrite, progress=report), "merge", 0, out)
