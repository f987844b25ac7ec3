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

import errno
import json
import os
import re
import shlex
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError, signals_held
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
    """linebench_<folder>_<split>, in ASCII letters, digits and _ (accents folded), at most 80."""
    def ascii_part(text: str) -> str:
        folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
        return re.sub(r"[^a-z0-9]+", "_", folded).strip("_")

    stem = ascii_part(folder.resolve().name) or "data"
    if not stem.startswith("linebench"):
        stem = f"linebench_{stem}"
    split_part = ascii_part(split)
    name = f"{stem}_{split_part}" if split_part and not stem.endswith("_" + split_part) else stem
    return name[:80].rstrip("_")


def _check_path(path: Path, what: str) -> None:
    check_path_text(path, what)
    if any(c in str(path) for c in "\r\n"):
        raise UsageError(f"{what} {str(path)!r} has a line break in it: rename it (the task file and commands name it on one line)")


def _check_out(out: Path, overwrite: bool, folder: Path) -> None:
    _check_path(out, "--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out} exists and is not a folder" + (" (a symbolic link: give the folder it points to)" if out.is_symlink() else ""))
    o, d = out.resolve(), folder.resolve()
    if o == d or o in d.parents or d in o.parents:
        raise UsageError(f"--out {out} overlaps the data folder {folder}: choose a folder outside it")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"--out {out} exists and is not empty (--overwrite replaces an earlier export)")
        try:
            record = json.loads((out / RECORD).read_text(encoding="utf-8"))
            expected = {*record["files"], "README.md", RECORD}
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"--out {out} was not written by `linebench export` (no {RECORD}): --overwrite replaces only an export") from None
        extra = sorted(p.name for p in out.iterdir() if p.name not in expected)
        if extra:
            more = ", ..." if len(extra) > 3 else ""
            raise UsageError(f"--out {out} holds what no export wrote ({', '.join(extra[:3])}{more}): move it, or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: its folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"cannot write {out}: {out.parent} is not writable")


def _swap(stage: Path, out: Path, overwrite: bool) -> None:
    """Put the finished `stage` at `out`: an earlier export there is replaced only now, and only
    with --overwrite (a folder renamed onto another must find it missing or empty, so an export
    that finished meanwhile into the same --out is not replaced; a Ctrl-C waits for both renames)."""
    old = None
    with signals_held():
        if overwrite and out.is_dir() and any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        try:
            os.replace(stage, out)
        except OSError as e:
            if old is not None:
                os.replace(old, out)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise UsageError(f"--out {out} was written meanwhile by another run (--overwrite replaces it)") from None
            raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _lmms_eval(stage: Path, folder: Path, out: Path, name: str, split: str) -> tuple[list[str], list[str]]:
    include = str(out.resolve())
    (stage / f"{name}.yaml").write_text(task_file(task=name, path=str(folder.resolve()), split=split, include=shlex.quote(include),
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


def _vlmevalkit(stage: Path, ds, out: Path, name: str, report: Callable[[int], None] | None) -> tuple[list[str], list[str]]:
    from datasets import Image

    write_tsv(ds.cast_column("image", Image(decode=False)), TARGET in ds.column_names, stage / f"{name}.tsv", report)
    (stage / "data-config.json").write_text(data_config(name, out / f"{name}.tsv") + "\n", encoding="utf-8")
    commands = [
        f"grep -qxF {shlex.quote(REGISTRATION)} vlmeval/dataset/__init__.py || echo {shlex.quote(REGISTRATION)} >> vlmeval/dataset/__init__.py  # once, in your VLMEvalKit checkout",
        f"python run.py --model Qwen2.5-VL-7B-Instruct --data {name} --data-config \"$(cat {shlex.quote(str(out.resolve() / 'data-config.json'))})\"",
    ]
    return [f"{name}.tsv", "data-config.json"], commands


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
    if name is not None and not name.strip():
        raise UsageError("--name is empty")
    out = Path(out)
    if out.name in ("", ".", ".."):  # `--out .`: the folder needs a name to be staged beside
        out = Path(os.path.abspath(out))
    if out.exists() and (Path.cwd().resolve() == out.resolve() or out.resolve() in Path.cwd().resolve().parents):
        raise UsageError(f"--out {out} is the folder you are in (or holds it): the export replaces that folder whole, so name another")
    _check_path(Path(str(data)), "DATA")
    folder = resolve_data(str(data))
    split = resolve_split(str(data), folder, split, log, doing="exporting")
    local = Path(str(data)).expanduser().is_dir()
    name = name or default_name(folder if local else Path(str(data)), split)  # a Hub id: its name, not the snapshot's hash
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: a letter, then letters, digits or _ (at most 80), as both harnesses use it in file and task names")
    _check_out(out, overwrite, folder)
    import datasets

    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # datasets' own bars ("Generating test split") on top of ours
    try:
        ds = harness_dataset(load_split(folder, split), folder)
    finally:
        if not quiet:
            datasets.enable_progress_bars()
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
            files, commands = _vlmevalkit(stage, ds, out, name, report)
        readme = "\n".join([
            f"# {name}: {folder.resolve()} (split {split}, {len(ds):,} rows) for {to}", "",
            f"Written by `linebench export` (linebench {__version__}); see linebench's docs/eval.md.", "", "```bash", *commands, "```", "",
        ])  # fmt: skip
        (stage / "README.md").write_text(readme, encoding="utf-8")
        record = {"to": to, "data": str(folder.resolve()), "split": split, "name": name, "rows": len(ds), "linebench_version": __version__, "files": files}
        (stage / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _swap(stage, out, overwrite)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ExportResult(out=out, to=to, name=name, split=split, rows=len(ds), files=[*files, "README.md", RECORD], commands=commands)
