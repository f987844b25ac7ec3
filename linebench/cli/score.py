"""`linebench score`: score predictions against a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from .base import app, err_console, friendly, out_console
from .options import Folder


@app.command()
@friendly
def score(
    folder: Folder,
    predictions: Path = typer.Option(..., "--predictions", "-p", help='JSONL, one {"id": ..., "prediction": ...} per line (see docs/scoring.md).'),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here (default: PREDICTIONS with .score.json)."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the report as markdown here (default: PREDICTIONS with .score.md)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (the report is deterministic given it)."),
    missing_as_wrong: bool = typer.Option(False, "--missing-as-wrong", help="Score dataset rows without a prediction as wrong (default: leave them out, and report them)."),
) -> None:
    """Score model predictions: accuracy overall and per split, level and knob, with bootstrap intervals."""
    from ..fsio import check_output, write_outputs
    from ..score import default_outputs, problems, score as run, summary, fmt_acc, fmt_ci

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
