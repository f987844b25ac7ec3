"""`linebench export`: a folder made runnable in lmms-eval or VLMEvalKit."""

from __future__ import annotations

from typing import Optional

import typer
from rich.text import Text

from .base import app, friendly, lazy_progress, out_console, out_path


@app.command()
@friendly
def export(
    data: str = typer.Argument(..., metavar="DATA", help="A linebench folder (generated, a release, `linebench maps` output) or a dataset Hub id in your cache."),
    to: str = typer.Option(..., "--to", help="The harness: lmms-eval (a task folder for --include_path) or vlmevalkit (a TSV and its --data-config)."),
    out_text: str = typer.Option(..., "--out", "-o", help="The folder to write (new or empty, or an earlier export with --overwrite)."),
    split: Optional[str] = typer.Option(None, "--split", help="The split to export (default: test, or the folder's only split)."),
    name: Optional[str] = typer.Option(None, "--name", help="The task / dataset name in the harness (default: linebench_<folder>_<split>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export at --out (the old one stays until the new one is complete)."),
) -> None:
    """Export one split of a linebench folder (generated, a release, `linebench maps` output, or a
    dataset Hub id in your cache) for lmms-eval or VLMEvalKit, scored as `linebench score` scores.

    Example: linebench export data/tracing-test --to lmms-eval --out exports/lmms (docs/eval.md)."""
    from ..harnesses.export import export as run

    out = out_path(out_text)

    def log(line: str) -> None:
        out_console.print(Text(line), soft_wrap=True)

    with lazy_progress(f"export {to}") as report:
        result = run(data, to, out, split=split, name=name, overwrite=overwrite, log=log, progress=report)
    out_console.print(Text(f"wrote {result.name} ({result.rows:,} rows of split {result.split}) for {result.to} to {result.out}: {', '.join(result.files)}"), soft_wrap=True)
    out_console.print(Text("run it with:"))
    for command in result.commands:
        out_console.print(Text(f"  {command}"), soft_wrap=True)
