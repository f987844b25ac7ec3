"""`linebench tasks`: the installed tasks, their levels and knobs."""

from __future__ import annotations


from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from .base import app, friendly, out_console


@app.command()
@friendly
def tasks() -> None:
    """List the installed tasks with their difficulty levels and knobs."""
    from ..tasks import get_task, knob_text, task_names

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
            return "-" if v is None else knob_text(v)

        for k in t.knobs:
            kind = k.kind.__name__ + (", audit" if k.audit else "")
            per_level = " / ".join(fmt(t.levels[lv].get(k.name)) for lv in t.levels) if not k.audit else "-"
            table.add_row(Text.assemble((k.name, "bold"), "\n", (k.help, "dim")), kind, fmt(k.default), per_level)
        out_console.print(table)
    out_console.print(
        "Set a knob with --knob NAME=VALUE or NAME=LO..HI. --difficulty mixed draws a level per sample and "
        "stratified takes easy, medium, hard in turn (neither ever draws ood); official releases: --spec TASK."
    )
