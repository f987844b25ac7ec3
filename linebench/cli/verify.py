"""`linebench verify`: check a folder against its manifest, rebuild rows, certify a release."""

from __future__ import annotations

from typing import Optional

import typer
from rich.text import Text

from ..errors import UsageError
from .base import app, err_console, friendly, out_console, progress_bar
from .options import Folder


@app.command()
@friendly
def verify(
    folder: Folder,
    all_rows: bool = typer.Option(False, "--all", help="Re-render every row (default: an even sample)."),
    sample: int = typer.Option(32, "--sample", help="How many rows to re-render without --all."),
    spec_file: Optional[str] = typer.Option(
        None, "--spec", "-s", help="Also certify the folder as a copy of this release: its content checksums must match the spec's."
    ),
    write_checksums: bool = typer.Option(
        False, "--write-checksums", help="With --spec: after the checks pass, write this folder's content checksums into the spec file."
    ),
) -> None:
    """Check every published file against manifest.json and every row's identity, and rebuild rows
    from the run's specs; with --spec, certify the folder against an official release's checksums."""
    from ..release import load_release
    from ..verify import certify, verify as run

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if write_checksums and spec_file is None:
        raise UsageError("--write-checksums needs --spec (the file to write them into)")
    rel = load_release(spec_file) if spec_file is not None else None
    with progress_bar() as bar:
        tid = bar.add_task("verify", total=None)
        report = run(folder, all_rows=all_rows, sample=sample, progress=lambda d, t: bar.update(tid, completed=d, total=t))
        if rel is not None:
            bar.update(tid, description="checksums")
            certify(folder, rel, report, write_checksums=write_checksums)
    for note in report.notes:
        err_console.print(Text(f"note: {note}"), soft_wrap=True)
    for p in report.problems[:50]:
        err_console.print(Text(f"mismatch: {p}"), soft_wrap=True)
    if len(report.problems) > 50:
        err_console.print(f"... and {len(report.problems) - 50} more")
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    certified = ""
    if rel is not None and report.ok:
        certified = f"; checksums written to {rel.path}" if write_checksums else f"; content matches {rel.path}"
        if report.notes and not write_checksums:
            certified += " (images: see the note above)"
    out_console.print(f"{status}: {report.shards} shard(s) checked, {report.rows_checked} row(s) re-rendered{certified}")
    if not report.ok:
        raise typer.Exit(1)
