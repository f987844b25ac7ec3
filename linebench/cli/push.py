"""`linebench push`: publish a folder on the Hugging Face Hub."""

from __future__ import annotations

from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .base import app, err_console, friendly, out_console
from .options import Folder


@app.command()
@friendly
def push(
    folder: Folder,
    repo_id: str = typer.Option(..., "--repo-id", "-r", help="The Hub dataset repo, ORG/NAME (e.g. linebench/tracing); created if missing."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (refused if it exists and is public)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created if missing; default: main)."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing to the branch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be uploaded and validate the card; upload nothing."),
) -> None:
    """Publish a dataset folder to the Hugging Face Hub in one commit (token: HF_TOKEN or `hf auth login`)."""
    from ..hub import dry_run as plan_only, push as run

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True)
    tid = bar.add_task("checking shards (sha256)", total=None)

    def checking(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(tid, completed=done, total=total)
        if done == total:
            bar.stop()

    if dry_run:
        try:
            the_plan, validation = plan_only(folder, repo_id, checking)
        finally:
            bar.stop()
        table = Table(title=f"would upload to https://huggingface.co/datasets/{repo_id}" + (f" ({revision})" if revision else ""))
        table.add_column("file")
        table.add_column("bytes", justify="right")
        for path, size in the_plan.files:
            table.add_row(path, f"{size:,}")
        table.add_row(f"{len(the_plan.files)} files", f"{the_plan.total_bytes:,}")
        out_console.print(table)
        out_console.print(Text(f"config: {the_plan.config}; card: {validation}"), soft_wrap=True)
        out_console.print(Text(f"commit message: {the_plan.commit_message}"), soft_wrap=True)
        if the_plan.tag and not create_pr and revision in (None, "main"):
            out_console.print(Text(f"tag: {the_plan.tag}"), soft_wrap=True)
        return
    try:
        result = run(folder, repo_id, private=private, revision=revision, create_pr=create_pr, progress=checking)
    finally:
        bar.stop()
    out_console.print(Text(f"pushed {folder} to {result.url}"), soft_wrap=True)
    out_console.print(Text(f"commit: {result.commit_url}"), soft_wrap=True)
    if result.pr_url:
        out_console.print(Text(f"pull request: {result.pr_url}"), soft_wrap=True)
    if result.tag:
        out_console.print(Text(f"tagged {result.tag}: load_dataset({repo_id!r}, revision={result.tag!r})"), soft_wrap=True)
    for note in result.notes:
        out_console.print(Text(note), soft_wrap=True)
