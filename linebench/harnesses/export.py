"""`linebench export FOLDER --to lmms-eval|vlmevalkit --out PATH`: a linebench folder (generated,
a release, `linebench maps` output, or a dataset Hub id in the user's cache) made runnable in a
harness, with the prompts and the scoring of `linebench eval` / `linebench score`.

- lmms-eval: a task folder for `--include_path`: NAME.yaml (the folder's absolute path, its split,
  process_docs / process_results / per_level from linebench) and utils.py binding them.
- VLMEvalKit: NAME.tsv in its layout and data-config.json for `run.py --data-config`, scored by
  linebench's dataset class (`vlmeval_dataset.LineBench`, registered with one line).

Both get README.md (the commands) and export.json (what was exported). The folder is built beside
PATH and renamed into place: an error or Ctrl-C leaves nothing half-written; --overwrite replaces
only a folder an earlier export wrote."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..fsio import check_path_text, fsync_dir, write_error
from ..version import __version__
from .lmms_eval import task_file
from .rows import TARGET, harness_dataset
from .vlmevalkit import REGISTRATION, data_config, write_tsv

TARGETS = ("lmms-eval", "vlmevalkit")
RECORD = "export.json"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")


@dataclass
class ExportResult:
    out: Path
    to: str
    name: str
    split: str
    rows: int
    files: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def default_name(folder: Path, split: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_") or "data"
    if not stem.startswith("linebench"):
        stem = f"linebench_{stem}"
    split_part = re.sub(r"[^a-z0-9]+", "_", split.lower()).strip("_")
    return f"{stem}_{split_part}" if split_part and not stem.endswith("_" + split_part) else stem


def _check_out(out: Path, overwrite: bool) -> None:
    check_path_text(out, "--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"--out {out} exists and is not empty (--overwrite replaces an earlier export)")
        if not (out / RECORD).is_file():
            raise UsageError(f"--out {out} was not written by `linebench export` (no {RECORD}): --overwrite replaces only an export")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: its folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"cannot write {out}: {out.parent} is not writable")


def _swap(stage: Path, out: Path) -> None:
    """Put the finished `stage` at `out` (an earlier export there is replaced only now)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _lmms_eval(stage: Path, folder: Path, out: Path, name: str, split: str) -> tuple[list[str], list[str]]:
    include = str(out.resolve())
    (stage / f"{name}.yaml").write_text(task_file(task=name, path=str(folder.resolve()), split=split, include=include,
                                                  what=f"linebench export of {folder.resolve()} (split {split}) for lmms-eval"), encoding="utf-8")  # fmt: skip
    (stage / "utils.py").write_text(
        '"""lmms-eval task functions for this export (written by `linebench export`; the code is linebench.harnesses.lmms_eval)."""\n\n'
        "from linebench.harnesses.lmms_eval import per_level, doc_to_text, doc_to_visual, docs_for, process_results  # noqa: F401\n\n"
        f"process_docs = docs_for({str(folder.resolve())!r})\n",
        encoding="utf-8",
    )
    commands = [
        f"lmms-eval --model qwen2_5_vl --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct --include_path {shlex.quote(include)} --tasks {name} --log_samples --output_path results/",
    ]
    return [f"{name}.yaml", "utils.py"], commands


def _vlmevalkit(stage: Path, ds, out: Path, name: str, report: Callable[[int], None] | None) -> tuple[list[str], list[str], int]:
    from datasets import Image

    rows = write_tsv(ds.cast_column("image", Image(decode=False)), TARGET in ds.column_names, stage / f"{name}.tsv", report)
    (stage / "data-config.json").write_text(data_config(name, out / f"{name}.tsv") + "\n", encoding="utf-8")
    commands = [
        f"grep -qxF {shlex.quote(REGISTRATION)} vlmeval/dataset/__init__.py || echo {shlex.quote(REGISTRATION)} >> vlmeval/dataset/__init__.py  # once, in your VLMEvalKit checkout",
        f"python run.py --model Qwen2.5-VL-7B-Instruct --data {name} --data-config \"$(cat {shlex.quote(str(out.resolve() / 'data-config.json'))})\"",
    ]
    return [f"{name}.tsv", "data-config.json"], commands, rows


def export(
    data: str | Path,
    to: str,
    out: Path | str,
    *,
    split: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda s: None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export one split of a linebench folder for a harness (see the module docstring)."""
    from ..evaluate.run import load_split, resolve_data, resolve_split

    if to not in TARGETS:
        raise UsageError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    out = Path(out)
    folder = resolve_data(str(data))
    split = resolve_split(str(data), folder, split, log)
    local = Path(str(data)).expanduser().is_dir()
    name = name or default_name(folder if local else Path(str(data)), split)  # a Hub id: its name, not the snapshot's hash
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: a letter, then letters, digits or _ (at most 80), as both harnesses use it in file and task names")
    _check_out(out, overwrite)
    ds = harness_dataset(load_split(folder, split), folder)
    if len(ds) == 0:
        raise UsageError(f"{data}: split {split!r} has no rows")

    stage = out.with_name(f".{out.name}.export-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(ds))

    try:
        stage.mkdir()
        if to == "lmms-eval":  # lmms-eval reads the folder itself: nothing long to show
            files, commands = _lmms_eval(stage, folder, out, name, split)
        else:
            report(0)
            files, commands, _ = _vlmevalkit(stage, ds, out, name, report)
        readme = "\n".join([
            f"# {name}: {folder.resolve()} (split {split}, {len(ds):,} rows) for {to}", "",
            f"Written by `linebench export` (linebench {__version__}); see linebench's docs/eval.md.", "", "```bash", *commands, "```", "",
        ])  # fmt: skip
        (stage / "README.md").write_text(readme, encoding="utf-8")
        record = {"to": to, "data": str(folder.resolve()), "split": split, "name": name, "rows": len(ds), "linebench_version": __version__, "files": files}
        (stage / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _swap(stage, out)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ExportResult(out=out, to=to, name=name, split=split, rows=len(ds), files=[*files, "README.md", RECORD], commands=commands)
