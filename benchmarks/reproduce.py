"""The paper's comparison as one command: zero-shot, NTP and NTP + KLAL of one model on each task,
in the paper's table layout with the paper's reported numbers beside ours (docs/reproduce.md).

    # one machine with 8 GPUs, Qwen2.5-VL-7B on the official releases (each run through accelerate):
    python benchmarks/reproduce.py --model Qwen/Qwen2.5-VL-7B-Instruct --launcher "accelerate launch --num_processes 8" \\
        --train-args "--bf16 --gradient-checkpointing --lr 1e-5 --batch-size 2 --grad-accum 4" --steps 2000
    # the same recipe on the tiny model on CPU (the test suite runs a shorter one):
    python benchmarks/reproduce.py --model tiny --n 2000 --eval-n 500 --steps 400

Per task: the data (the official release, `linebench generate --spec TASK`, or with `--n` its first
N training and `--eval-n` test rows), then `linebench train` twice with everything identical but
`--klal` (the NTP arm and the NTP + KLAL arm). Zero-shot is the NTP run's evaluation before its
first step, on the same held-out rows both arms are scored on after training. Every step is an
ordinary linebench command, printed before it runs; a finished step is not run again (rerun to
resume). Writes WORK/table.md and WORK/table.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK_NAMES = {"grid_patch": "Grid Patch", "intersection": "Line Intersection", "tracing": "Line Tracing"}
# What the paper reports (zero-shot / NTP / NTP + KLAL, accuracy %), as summaries of it give them:
# Qwen2.5-VL-7B only, and no line-tracing number. Their values, not ours.
PAPER = {
    "Qwen2.5-VL-7B": {"grid_patch": (6.12, 28.57, 44.90), "intersection": (47.62, 62.64, 70.23),
                      "pixmo-points": (16.79, 26.28, 35.77), "refcoco-testB": (86.70, 86.90, 87.50)},
}


def run(cmd: list[str], log: Path) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().strip().splitlines()[-5:]
        sys.exit(f"failed ({done.returncode}): {shlex.join(cmd)}\n" + "\n".join(tail) + f"\n(whole log: {log})")


def linebench(*args: str) -> list[str]:
    return [sys.executable, "-m", "linebench", *args]


def data(task: str, a, work: Path) -> Path:
    folder = work / "data" / task
    if (folder / "manifest.json").is_file():
        return folder
    if a.n is None:
        run(linebench("generate", "--spec", task, "--out", str(folder), "--overwrite"), work / f"generate-{task}.log")
        return folder
    from linebench.dataset import generate
    from linebench.release import load_release

    specs = {s.split: s for s in load_release(task).run_specs()}
    sized = [specs["train"].__class__(**{**specs["train"].__dict__, "n": a.n}), specs["test"].__class__(**{**specs["test"].__dict__, "n": a.eval_n})]
    print(f"generating {a.n} train and {a.eval_n} test rows of the {task} release", flush=True)
    generate(sized, folder, workers=a.workers, overwrite=True)
    return folder


def train(task: str, arm: str, a, work: Path, folder: Path) -> dict:
    out = work / f"{task}-{arm}"
    if not (out / "eval.json").is_file():
        launcher = shlex.split(a.launcher) if a.launcher else [sys.executable]
        cmd = [*launcher, "-m", "linebench", "train", "--model", a.model, "--data", str(folder), "--eval-n", str(a.eval_n),
               "--steps", str(a.steps), "--out", str(out), "--overwrite", *shlex.split(a.train_args)]  # fmt: skip
        run(cmd + (["--klal"] if arm == "klal" else []), work / f"train-{task}-{arm}.log")
    return json.loads((out / "eval.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="a local checkpoint, a cached Hub id, tiny or tiny-qwen2.5-vl")
    ap.add_argument("--tasks", default="grid_patch,intersection,tracing")
    ap.add_argument("--n", type=int, default=None, help="training rows (default: the whole official release)")
    ap.add_argument("--eval-n", type=int, default=1000, help="held-out test rows scored by every arm")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--launcher", default="", help='e.g. "accelerate launch --num_processes 8" (default: one process)')
    ap.add_argument("--train-args", default="", help="more `linebench train` options for both arms (--bf16, --lr, --batch-size ...)")
    ap.add_argument("--paper", default="Qwen2.5-VL-7B", choices=sorted(PAPER), help="whose reported numbers to print beside ours")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="runs/reproduce")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from linebench.evaluate.diagnostics import describe

    rows, lines = [], [
        f"`python benchmarks/reproduce.py {shlex.join(sys.argv[1:])}`: {a.model}, accuracy % on {a.eval_n} held-out test rows per task.",
        f"The paper's columns are the values it reports for {a.paper} (not ours).", "",
        f"| task | zero-shot | NTP | NTP + KLAL | paper: zero-shot | paper: NTP | paper: NTP + KLAL |", "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for task in a.tasks.split(","):
        folder = data(task, a, work)
        ntp, klal = train(task, "ntp", a, work, folder), train(task, "klal", a, work, folder)
        ours = (ntp["before"]["accuracy"], ntp["after"]["accuracy"], klal["after"]["accuracy"])
        paper = PAPER[a.paper].get(task)
        cells = [f"{100 * v:.2f}" for v in ours] + ([f"{v:.2f}" for v in paper] if paper else ["–"] * 3)
        lines.append(f"| {TASK_NAMES[task]} | " + " | ".join(cells) + " |")
        rows.append({"task": task, "zero_shot": ours[0], "ntp": ours[1], "klal": ours[2], "paper": paper,
                     "diagnostics": {"zero_shot": ntp["before"].get("diagnostics"), "ntp": ntp["after"].get("diagnostics"), "klal": klal["after"].get("diagnostics")}})
    lines += ["", "Beside each accuracy, on the same rows:", ""]
    for r in rows:
        for arm in ("zero_shot", "ntp", "klal"):
            if r["diagnostics"][arm]:
                lines.append(f"- {TASK_NAMES[r['task']]}, {arm.replace('_', '-')}: {describe(r['diagnostics'][arm])}")
    (work / "table.md").write_text("\n".join(lines) + "\n")
    (work / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
