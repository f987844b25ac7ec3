"""A train run's folder: run.json (the command, options and versions), metrics.jsonl (appended line by
line), the checkpoints and what a resume trusts of them, and taking back what a failed run wrote.

  run.json        the exact command, options and library versions
  metrics.jsonl   one line per logged step (loss, ntp, klal, ...) and per evaluation
  eval.json       the evaluations before and after (accuracy, per level, attention per layer)
  predictions.jsonl  the final evaluation's answer to every held-out row (id, prediction, answer, correct)
  model/          the trained model (safetensors) and its processor
  checkpoints/    TRL's checkpoints (resume: --resume)
  *.png           loss terms over steps, accuracy over steps, attention ratio per layer before/after
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from ..fsio import atomic_write, why
from . import tiny as tiny_models
from .model import file_problem, weights_problem
from .options import TrainOptions

RUN_FILE = "run.json"
FINAL = ("model", "eval.json", "predictions.jsonl", "loss.png", "accuracy.png", "attention.png")  # written once training is done
OWNED = (RUN_FILE, "data", "metrics.jsonl", "checkpoints", *FINAL)  # all a run writes (and takes back, or --overwrite replaces)
UNCOMPARED = ("out", "resume", "overwrite", "workers")  # options a resume may change: they do not change the run


def versions() -> dict[str, str]:
    import importlib.metadata as md

    from ..version import __version__

    out = {"linebench": __version__, "python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


FLAGS = {"learning_rate": "--lr", "lam": "--lambda", "layers": "--klal-layers", "query": "--klal-query", "backend": "--klal-backend",
         "map_params": "--map-target/--map-neighbour/--map-floor/--map-radius", "klal": "--klal/--no-klal", "lora": "--lora/--full"}


def local_path(value: str | None) -> str | None:
    """A path as an absolute, resolved one when it names something on disk (else as given: a Hub id)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def run_options(opts: TrainOptions) -> dict[str, Any]:
    """The options run.json records, local paths resolved (a resume may spell them differently)."""
    mine = {k: v for k, v in asdict(opts).items() if k not in ("resume", "overwrite", "workers")}
    mine["out"] = str(Path(opts.out).expanduser().resolve())
    mine["data"] = local_path(opts.data)
    mine["model"] = opts.model if opts.model in tiny_models.ALL else local_path(opts.model)
    return json.loads(json.dumps(mine, default=str))


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The options that change the run and differ (paths compared resolved; out, resume, overwrite and
    workers never count)."""
    theirs = dict(theirs)
    for key in ("data", "model"):
        if isinstance(theirs.get(key), str) and not (key == "model" and theirs[key] in tiny_models.ALL):
            theirs[key] = local_path(theirs[key])
    diff = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in UNCOMPARED and mine.get(key) != theirs.get(key):
            diff.append(f"{FLAGS.get(key, '--' + key.replace('_', '-'))} {json.dumps(mine.get(key))} here, {json.dumps(theirs.get(key))} in run.json")
    return diff


def check_out(out: Path, opts: TrainOptions) -> str:
    """What to do with --out, without touching it: 'fresh', 'overwrite' or 'resume' (or one line
    saying why not)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    run_file = out / RUN_FILE
    dataset = next((n for n in ("manifest.json", ".linebench-run.json") if os.path.lexists(out / n)), None)
    if dataset:  # --overwrite would remove its data/
        raise UsageError(f"--out {out} is a linebench dataset folder (it has {dataset}), not a train run; choose another --out")
    if not os.path.lexists(run_file):
        if opts.resume:
            raise UsageError(f"--resume: {out} holds no run to resume")
        stray = [name for name in OWNED if os.path.lexists(out / name)]
        if stray and not opts.overwrite:
            raise UsageError(f"{out} holds {stray[0]} but no {RUN_FILE} (not a linebench train run); choose another --out, or --overwrite to replace it")
        return "overwrite" if stray else "fresh"
    if opts.overwrite:
        return "overwrite"
    if not opts.resume:
        raise UsageError(f"{out} already holds a run ({RUN_FILE}); pass --resume to continue it or --overwrite to start over")
    try:
        theirs = json.loads(run_file.read_text(encoding="utf-8"))["options"]
        if not isinstance(theirs, dict):
            raise TypeError("options is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: {run_file} is damaged ({type(e).__name__}), so the run cannot be resumed; --overwrite starts it over") from None
    diff = differences(run_options(opts), theirs)
    if diff:
        raise UsageError(f"--resume: {out} holds a run with other options ({'; '.join(diff)}); rerun with the same options, or --overwrite")
    return "resume"


def take_back(out: Path) -> None:
    """Remove everything a run writes in `out` (and nothing else)."""
    for name in OWNED:
        remove(out / name)
    for tmp in out.glob(".*.tmp"):
        remove(tmp)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:  # already gone
            pass


def checkpoint_problem(ckpt: Path) -> str | None:
    """What makes a checkpoint unusable for a resume (None: it is complete). transformers writes
    trainer_state.json last, after the weights, optimizer, scheduler and RNG states; the weights
    must load and every torch file be whole."""
    state_file = ckpt / "trainer_state.json"
    if not state_file.is_file():
        return "unfinished (no trainer_state.json)"
    try:
        int(json.loads(state_file.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its trainer_state.json is damaged"
    problem = weights_problem(ckpt)
    if problem:
        return problem
    names = [c.name for c in ckpt.iterdir()]
    if not any(n.startswith(("optimizer", "global_step")) for n in names):
        return "no optimizer state"
    for name in sorted(names):
        if name.endswith((".pt", ".pth")):
            problem = file_problem(ckpt / name)
            if problem:
                return problem
    return None


def checkpoints(folder: Path) -> list[Path]:
    """transformers' checkpoint-N folders, oldest first."""
    from transformers.trainer_utils import sort_checkpoints

    return [Path(p) for p in sort_checkpoints(str(folder))] if folder.is_dir() else []


def complete_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder` (nothing is changed)."""
    return next((c for c in reversed(checkpoints(folder)) if checkpoint_problem(c) is None), None)


def resume_point(folder: Path, log: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from: the newest complete one. Unfinished or damaged ones are
    removed, each said in one line, so the Trainer (get_last_checkpoint, rotation) sees only good ones."""
    from transformers.trainer_utils import get_last_checkpoint

    for ckpt in reversed(checkpoints(folder)):
        problem = checkpoint_problem(ckpt)
        if problem:
            log(f"--resume: removed {ckpt} ({problem})")
            shutil.rmtree(ckpt)
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        log(f"--resume: no complete checkpoint in {folder}: training from step 0 again (the same run)")
        return None
    log(f"--resume: going on from {last}")
    return Path(last)


def start(out: Path, opts: TrainOptions, command: str, mode: str, log: Callable[[str], None]) -> Path | None:
    """Under the lock: set the folder up for the run -> the checkpoint to resume from (or None)."""
    if mode == "overwrite":
        take_back(out)
    if mode != "resume":
        atomic_write(out / RUN_FILE, json.dumps({"command": command, "options": run_options(opts), "versions": versions()}, indent=1, default=str) + "\n")
        return None
    metrics = Metrics(out / "metrics.jsonl")
    rows = metrics.read(log)  # a log damaged before its last line stops here, with nothing changed
    last = resume_point(out / "checkpoints", log)
    for name in FINAL:  # a resumed run writes them again at its end
        remove(out / name)
    for tmp in out.glob(".*.tmp"):
        remove(tmp)
    metrics.keep_until(checkpoint_step(last), rows)
    return last


def checkpoint_step(ckpt: Path | None) -> int | None:
    if ckpt is None:
        return None
    return int(json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def kept(out: Path, fresh: bool) -> str:
    """After a failure: keep a resumable run (a complete checkpoint), else take back what this run wrote."""
    ckpt = complete_checkpoint(out / "checkpoints")
    if ckpt is not None:
        return f"{ckpt.name} is kept: run the same command with --resume to go on from it"
    if fresh:
        take_back(out)
        return f"nothing was kept in {out}"
    return f"no checkpoint yet: run the same command with --resume to train {out} from step 0"


class Metrics:
    """metrics.jsonl: appended line by line (a killed run keeps what it logged)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    def read(self, log: Callable[[str], None] = print) -> list[tuple[str, dict[str, Any]]]:
        """(line, record) of every line; a half-written last line (a run killed while writing it) is
        left out, said in one line; a damaged line before it is one line and exit 2."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UsageError(f"cannot read {self.path}: {why(e)}") from None
        lines = text.split("\n")
        rows = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                if i == len(lines) - 1:  # no newline after it: cut off mid-write
                    log(f"--resume: dropped the half-written last line of {self.path}")
                    continue
                raise UsageError(f"{self.path}: line {i + 1} is damaged (not a JSON object), so the run's log cannot be continued; --overwrite starts it over") from None
            rows.append((line, rec))
        return rows

    def keep_until(self, step: int | None, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """For a resume from the checkpoint of `step` (None: from step 0): of the log's `rows` (read()),
        keep the evaluation before training and the lines of steps up to the checkpoint's, drop the
        rest (they are logged again)."""
        kept = []
        for line, rec in rows:
            ev = rec.get("eval")
            if isinstance(ev, dict):
                keep = step is not None and (ev.get("label") == "before" or (ev.get("label") == "during" and _int(ev.get("step")) <= step))
            else:
                keep = step is not None and _int(rec.get("step")) <= step and "train_runtime" not in rec  # the end-of-training summary is written again
            if keep:
                kept.append(line + "\n")
        atomic_write(self.path, "".join(kept))

    def evals(self, label: str) -> list[dict[str, Any]]:
        return [r["eval"] for _, r in self.read(_quiet) if isinstance(r.get("eval"), dict) and r["eval"].get("label") == label]

    def put_first(self, record: dict[str, Any]) -> None:
        rest = [line + "\n" for line, _ in self.read(_quiet)]
        atomic_write(self.path, json.dumps(record, default=float) + "\n" + "".join(rest))


def _int(value: Any) -> float:
    return value if isinstance(value, int) else math.inf


def whole_run_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every step of the run, from the Trainer's log history (which a
    resume restores from the checkpoint): each logged loss weighted by the steps it covers. The same
    for a resumed and an uninterrupted run (transformers' own train_loss covers one train() call)."""
    total, last = 0.0, 0
    for h in history:
        if "loss" in h and isinstance(h.get("step"), int) and h["step"] > last:
            total += h["loss"] * (h["step"] - last)
            last = h["step"]
    return total / last if last else None


def _quiet(message: str) -> None:
    pass
