"""Hostile input against `linebench train` (issue 27, the train half): the promises the data
commands keep (tests/test_hostile.py), kept by train — one line and exit 2 for bad input, every
option checked before any work, the output folder locked, nothing of a failed run left behind but a
complete checkpoint, and `--resume` that survives damaged checkpoints and logs and ends where an
uninterrupted run ends.

`CASES` is table-driven: add a row (id, argv, setup, exit code, a fragment of the output, paths that
must exist afterwards, paths that must not). In argv and paths `{tmp}` is the test's folder (also
the working directory), `{out}` the run folder `{tmp}/run`, `{data}` a small grid-patch folder and
`{model}` `{tmp}/model`; `train_args(...)` builds a short, fast command (the tiny model, 4 steps, a
checkpoint every 2), `RESUME` the same with --resume. `setup(tmp, ctx)` prepares the folder: e.g.
`finished(...)` copies a finished run of that command into `{out}` and damages it first. The cases
that need more than a table (interrupts, the lock, kills at random points) follow it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
from typer.testing import CliRunner  # noqa: E402

from linebench.cli import app  # noqa: E402

runner = CliRunner()
TIMING = ("seconds", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second")


def train_args(resume: bool = False, **over) -> list[str]:
    """`linebench train` on the tiny model and {data}, 4 steps, a checkpoint every 2; `over` replaces
    options (key: the option without dashes, underscores for dashes; None drops it)."""
    opts = {"model": "tiny", "data": "{data}", "steps": "4", "save-every": "2", "batch-size": "2", "eval-n": "2", "klal-backend": "torch",
            "workers": "1", "out": "{out}"}  # fmt: skip
    for key, value in over.items():
        opts[key.replace("_", "-")] = value
    argv = ["train", "--klal"] + [a for k, v in opts.items() if v is not None for a in (f"--{k}", v)]
    return argv + (["--resume"] if resume else [])


RESUME = train_args(resume=True)


# --------------------------------------------------------------------------- setups


def finished(*damage):
    """Copy the finished run of train_args() into {out}, then apply `damage(out)` in turn."""

    def setup(tmp: Path, ctx) -> None:
        shutil.copytree(ctx["finished"], tmp / "run", symlinks=True)
        for d in damage:
            d(tmp / "run")

    return setup


def ckpt(step: int) -> str:
    return f"checkpoints/checkpoint-{step}"


def unlink(rel: str):
    return lambda out: (out / rel).unlink()


def truncate(rel: str):
    def cut(out: Path) -> None:
        data = (out / rel).read_bytes()
        (out / rel).write_bytes(data[: len(data) // 2])

    return cut


def tear_metrics(out: Path) -> None:
    """A run killed while writing a line: the last line is half there."""
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "loss": 1.2')


def garble_metrics_line(n: int):
    def garble(out: Path) -> None:
        lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
        lines[n - 1] = "#" + lines[n - 1]
        (out / "metrics.jsonl").write_text("".join(lines))

    return garble


def write(rel: str, text: str):
    def setup(tmp: Path, ctx) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)

    return setup


def make_dir(rel: str):
    return lambda tmp, ctx: (tmp / rel).mkdir(parents=True)


def one_row(tmp: Path, ctx) -> None:
    from datasets import load_dataset

    load_dataset(str(ctx["data"]), split="train").select(range(1)).to_parquet(str(tmp / "one" / "data" / "train-0.parquet"))


def model_copy(*damage):
    """A copy of the tiny model in {model}, damaged by each `damage(folder)`."""

    def setup(tmp: Path, ctx) -> None:
        shutil.copytree(ctx["tiny"], tmp / "model")
        for d in damage:
            d(tmp / "model")

    return setup


# (id, argv, setup, exit code, output fragment, paths that must exist, paths that must not)
CASES = [
    # --- 2: a damaged checkpoint or log: --resume goes on from the newest complete checkpoint
    ("resume-unfinished-checkpoint", RESUME, finished(unlink(f"{ckpt(4)}/trainer_state.json")), 0, "no trainer_state.json",
     ["{out}/model/model.safetensors", "{out}/eval.json", "{out}/%s/trainer_state.json" % ckpt(4)], []),
    ("resume-truncated-weights", RESUME, finished(truncate(f"{ckpt(4)}/model.safetensors")), 0, "model.safetensors is damaged",
     ["{out}/model/model.safetensors", "{out}/eval.json"], []),
    ("resume-truncated-optimizer", RESUME, finished(truncate(f"{ckpt(4)}/optimizer.pt")), 0, "optimizer.pt is damaged", ["{out}/eval.json"], []),
    ("resume-damaged-older-checkpoint", RESUME, finished(unlink(f"{ckpt(2)}/model.safetensors")), 0, "going on from", ["{out}/eval.json"],
     ["{out}/" + ckpt(2)]),
    ("resume-torn-metrics-line", RESUME, finished(tear_metrics), 0, "half-written last line", ["{out}/eval.json"], []),
    ("resume-no-complete-checkpoint", RESUME, finished(unlink(f"{ckpt(4)}/trainer_state.json"), unlink(f"{ckpt(2)}/trainer_state.json")), 0,
     "training from step 0 again", ["{out}/eval.json"], []),
    ("resume-damaged-run-json", RESUME, finished(lambda out: (out / "run.json").write_text('{"options": {"model"')), 2, "run.json is damaged",
     ["{out}/model/model.safetensors", "{out}/" + ckpt(4)], []),
    ("resume-damaged-metrics-line", RESUME, finished(garble_metrics_line(2)), 2, "line 2 is damaged",
     ["{out}/model/model.safetensors", "{out}/eval.json"], []),
    # --- 5: every option checked before any work; a failed run leaves nothing (the rerun is not refused)
    ("data-empty-folder", train_args(data="{tmp}/empty"), make_dir("empty"), 2, "cannot load it", [], ["{out}"]),
    ("data-no-such-split", train_args(split="validation"), None, 2, "has no split 'validation'", [], ["{out}"]),
    ("klal-layers-last-0", train_args(klal_layers="last:0"), None, 2, "last:K needs 1 <= K", [], ["{out}"]),
    ("map-target-2", train_args(data=None, n="8", map_target="2"), None, 2, "map masses must be", [], ["{out}"]),
    ("generated-split-test", train_args(data=None, n="8", split="test"), None, 2, "--split test", [], ["{out}"]),
    ("model-config-not-json", train_args(model="{model}"), model_copy(lambda m: (m / "config.json").write_text("{not json")), 2,
     "is not valid JSON", [], ["{out}"]),
    ("model-no-weights", train_args(model="{model}"), model_copy(lambda m: (m / "model.safetensors").unlink()), 2, "has no weights", [], ["{out}"]),
    ("model-truncated-weights", train_args(model="{model}"), model_copy(truncate("model.safetensors")), 2, "model.safetensors is damaged", [],
     ["{out}"]),
    ("failure-after-start-takes-back", train_args(max_length="16"), None, 2, "nothing was kept", [], ["{out}"]),
    ("existing-folder-kept-as-it-was", train_args(klal_layers="last:0"), write("run/notes.txt", "mine"), 2, "last:K",
     ["{out}/notes.txt"], ["{out}/run.json", "{out}/.linebench-lock"]),
    ("failure-in-existing-folder", train_args(max_length="16"), write("run/notes.txt", "mine"), 2, "nothing was kept",
     ["{out}/notes.txt"], ["{out}/run.json", "{out}/metrics.jsonl", "{out}/.linebench-lock"]),
    ("run-files-without-run-json", train_args(), write("run/metrics.jsonl", ""), 2, "but no run.json", ["{out}/metrics.jsonl"], ["{out}/run.json"]),
    ("out-is-a-dataset", train_args(out="{data}", overwrite=None) + ["--overwrite"], None, 2, "is a linebench dataset folder",
     ["{data}/data", "{data}/manifest.json"], ["{data}/run.json"]),
    ("again-without-resume", train_args(), finished(), 2, "already holds a run", ["{out}/run.json"], []),
    ("resume-nothing", RESUME, None, 2, "holds no run to resume", [], ["{out}"]),
    # --- 6: one line where a traceback was
    ("data-one-row", train_args(data="{tmp}/one"), one_row, 2, "has 1 row(s)", [], ["{out}"]),
    ("out-is-a-file", train_args(out="{tmp}/file"), write("file", "x"), 2, "exists and is not a folder", ["{tmp}/file"], []),
    ("out-under-a-file", train_args(out="{tmp}/file/run"), write("file", "x"), 2, "is not a folder", ["{tmp}/file"], []),
    ("out-unwritable", train_args(out="/proc/linebench-train"), None, 2, "not writable", [], ["/proc/linebench-train"]),
    ("out-empty", train_args(out=""), None, 2, "--out is empty", [], []),
    # --- 8: a resume compares what changes the run, with paths resolved
    ("resume-other-spelling", train_args(resume=True, out="run", data="{data}/.", workers="3"), finished(), 0, "going on from",
     ["{out}/model/model.safetensors", "{out}/eval.json"], []),
    ("resume-other-steps", train_args(resume=True, steps="6"), finished(), 2, "--steps 6 here, 4 in run.json", ["{out}/eval.json"], []),
    ("resume-and-overwrite", RESUME + ["--overwrite"], finished(), 2, "exclude each other", ["{out}/eval.json"], []),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The tiny model (in a cache of this module's own), a small grid-patch folder, and one
    finished run of train_args()."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec
    from linebench.train import tiny

    base = tmp_path_factory.mktemp("hostile-train")
    old = os.environ.get("LINEBENCH_CACHE")
    os.environ["LINEBENCH_CACHE"] = str(base / "cache")
    data = base / "gp"
    generate(RunSpec("grid_patch", n=16, seed=3, params=ParamSpec((224, 224), "easy"), maps=()), data)
    done = base / "finished"
    argv = [a.replace("{data}", str(data)).replace("{out}", str(done)) for a in train_args()]
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output
    yield {"data": data, "tiny": tiny.cached("tiny"), "finished": done, "cache": base / "cache"}
    if old is None:
        os.environ.pop("LINEBENCH_CACHE", None)
    else:
        os.environ["LINEBENCH_CACHE"] = old


def _fill(text: str, tmp: Path, ctx) -> str:
    return text.replace("{out}", str(tmp / "run")).replace("{tmp}", str(tmp)).replace("{data}", str(ctx["data"])).replace("{model}", str(tmp / "model"))


def check_one_line(r, code: int, fragment: str) -> None:
    assert r.exit_code == code, r.output
    assert fragment in r.output, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    if code:
        assert r.output.count("error: ") == 1, r.output  # (a progress bar cut short may share its line)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_train_cases(case, ctx, tmp_path, monkeypatch):
    _, argv, setup, code, fragment, present, absent = case
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path, ctx)
    r = runner.invoke(app, [_fill(a, tmp_path, ctx) for a in argv])
    check_one_line(r, code, fragment)
    for p in present:
        assert os.path.lexists(_fill(p, tmp_path, ctx)), p
    for p in absent:
        assert not os.path.lexists(_fill(p, tmp_path, ctx)), p
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
    if code == 0:  # a resumed run ends like the uninterrupted one
        ev = json.loads((tmp_path / "run" / "eval.json").read_text())
        assert ev["train"]["train_loss"] == json.loads((ctx["finished"] / "eval.json").read_text())["train"]["train_loss"]
        assert [r["step"] for r in _records(tmp_path / "run") if "loss" in r] == [1, 2, 3, 4]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- 5: interrupts and the lock


def test_an_interrupted_run_keeps_only_a_complete_checkpoint(ctx, tmp_path, monkeypatch):
    """Ctrl-C before the first checkpoint takes the whole run back (the same command is then not
    refused); after it, the run stays for --resume and says so."""
    from linebench.train.trainer import KLALTrainer

    real = KLALTrainer.compute_loss
    stop_at = {"step": 1}

    def interrupt(self, *a, **k):
        if self.model.training and self.state.global_step == stop_at["step"]:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(KLALTrainer, "compute_loss", interrupt)
    argv = [_fill(a, tmp_path, ctx) for a in train_args()]
    r = runner.invoke(app, argv)
    check_one_line(r, 130, "interrupted; nothing was kept")
    assert not (tmp_path / "run").exists()
    stop_at["step"] = 3
    r = runner.invoke(app, argv)
    check_one_line(r, 130, "checkpoint-2 is kept: run the same command with --resume")
    assert (tmp_path / "run" / "run.json").is_file() and not (tmp_path / "run" / "model").exists()


def test_a_second_run_into_a_locked_folder_is_one_line(ctx, tmp_path):
    from linebench.writer import FolderLock

    out = tmp_path / "run"
    out.mkdir()
    with FolderLock(out, markers=("run.json",)):
        r = runner.invoke(app, [_fill(a, tmp_path, ctx) for a in train_args()])
    check_one_line(r, 2, "another linebench run (pid")
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the lock file gone with the lock


# --------------------------------------------------------------------------- 11: killed at random points, resumed

KILLER = r'''
"""A zygote: imports what `linebench train` imports once, then for each job read from stdin (a JSON
line: argv, kill point, log file) forks a process that plants the kill and runs the command, as a
fresh `linebench train` process would, and reports its exit on stdout. Each run starts without
paying the imports again (8 s a process on the 2-core machine)."""
import json, os, signal, sys

import transformers
import transformers.modeling_utils as MU
import linebench.evaluate.hf as H
import linebench.train.outputs as O
import linebench.train.plots as P
import linebench.train.run  # noqa: F401  (and with it trl, peft, the collator, the capture)
from linebench.train.trainer import KLALTrainer
from linebench.cli import run


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def plant(site, g):
    if site == "before":  # inside the evaluation before training
        H.evaluate = lambda *a, **k: die()
    elif site in ("torn", "during"):  # the log line of step g half written; inside the evaluation at step g
        write = O.Metrics.write

        def metrics_write(self, rec):
            if site == "torn" and rec.get("step") == g and "loss" in rec:
                line = json.dumps(rec) + "\n"
                with open(self.path, "a") as fh:
                    fh.write(line[: len(line) // 2])
                die()
            if site == "during" and rec.get("eval", {}).get("step") == g:
                die()
            write(self, rec)

        O.Metrics.write = metrics_write
    elif site == "weights":  # checkpoint-g's weights (g = -1: the final model's) cut off mid-write
        real_save = MU.safe_save_file

        def save(tensors, filename, metadata=None):
            real_save(tensors, filename, metadata=metadata)
            if os.path.basename(os.path.dirname(filename)) == (f"checkpoint-{g}" if g >= 0 else "model"):
                data = open(filename, "rb").read()
                open(filename, "wb").write(data[: len(data) // 2])
                die()

        MU.safe_save_file = save
    elif site == "checkpoint":  # checkpoint-g with weights and optimizer, before its RNG and trainer state
        real_rng = transformers.Trainer._save_rng_state

        def rng(self, output_dir):
            if self.state.global_step == g:
                die()
            return real_rng(self, output_dir)

        transformers.Trainer._save_rng_state = rng
    elif site == "step":  # in the middle of step g + 1
        real_loss = KLALTrainer.compute_loss

        def loss(self, *a, **k):
            if self.model.training and self.state.global_step == g:
                die()
            return real_loss(self, *a, **k)

        KLALTrainer.compute_loss = loss
    elif site == "plots":  # the last thing a run does
        P.plot_run = lambda out: die()


for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the run: its output to the job's log, the kill planted, then the command
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if job["kill"]:
            site, g = job["kill"]
            plant(site, int(g))
        sys.argv = ["linebench", *job["argv"]]
        try:
            run()  # exits the process (os._exit) when the command is done
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps({"returncode": code}), flush=True)
'''

STEPS, SAVE, EVAL = 8, 2, 4
# every place a kill can land, with its order in a run (a later one is always reached again by the
# run resumed after an earlier one)
KILL_POINTS = {
    ("before", 0): 0,
    ("during", EVAL): 10 * EVAL + 0.5,
    ("weights", -1): 1000,
    ("plots", 0): 1001,
    **{("torn", g): 10 * g + 1 for g in range(1, STEPS + 1)},
    **{("weights", g): 10 * g + 2 for g in range(SAVE, STEPS + 1, SAVE)},
    **{("checkpoint", g): 10 * g + 3 for g in range(SAVE, STEPS + 1, SAVE)},
    **{("step", g): 10 * g + 5 for g in range(STEPS)},
}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_killed_five_times_and_resumed_ends_like_an_uninterrupted_run(ctx, tmp_path):
    """SIGKILL at 5 seeded points of one run (in the log, in the middle of a step, while a
    checkpoint or the final model is written, during an evaluation), `--resume` after each: the
    weights, eval.json and metrics.jsonl (timings aside) equal those of a run never interrupted."""
    from safetensors.numpy import load_file

    seed = int(os.environ.get("LINEBENCH_KILL_SEED", "27"))
    kills = sorted(random.Random(seed).sample(sorted(KILL_POINTS), 5), key=KILL_POINTS.get)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = dict(os.environ, LINEBENCH_CACHE=str(ctx["cache"]), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")
    if env.pop("PYTHONDONTWRITEBYTECODE", None):  # no bytecode cache: the processes share one in tmp (else each compiles torch again)
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")

    def argv(out: Path, resume: bool) -> list[str]:
        args = train_args(resume, steps=str(STEPS), save_every=str(SAVE), eval_every=str(EVAL), out=str(out))
        return [a.replace("{data}", str(ctx["data"])) for a in args]

    zygote_log = open(tmp_path / "zygote.log", "w")
    zygote = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=zygote_log, text=True, env=env)

    def train(out: Path, kill: tuple[str, int] | None, resume: bool) -> tuple[int, str]:
        """One `linebench train` process (forked by the zygote) -> (exit code or -signal, its output)."""
        log = tmp_path / f"run-{len(list(tmp_path.glob('run-*.log')))}.log"
        zygote.stdin.write(json.dumps({"argv": argv(out, resume), "kill": kill, "log": str(log)}) + "\n")
        zygote.stdin.flush()
        reply = zygote.stdout.readline()
        assert reply, (tmp_path / "zygote.log").read_text()[-4000:]
        return json.loads(reply)["returncode"], log.read_text()[-4000:]

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the processes below (OMP_NUM_THREADS=1)
    try:  # the uninterrupted run, here (the zygote imports meanwhile)
        ref = runner.invoke(app, argv(tmp_path / "ref", False))
    finally:
        torch.set_num_threads(threads)
    assert ref.exit_code == 0, ref.output[-4000:]
    out = tmp_path / "run"
    try:
        for i, kill in enumerate(kills):
            code, output = train(out, kill, resume=i > 0)
            assert code == -signal.SIGKILL, (kills, kill, code, output)
        code, output = train(out, None, resume=True)
        assert code == 0, (kills, output)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
        zygote_log.close()

    a, b = load_file(str(tmp_path / "ref" / "model" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), kills
    ev_a, ev_b = (_strip(json.loads((d / "eval.json").read_text())) for d in (tmp_path / "ref", out))
    assert ev_a == ev_b, kills
    rec_a, rec_b = (_strip(_records(d)) for d in (tmp_path / "ref", out))
    assert rec_a == rec_b, kills
    assert [r["step"] for r in rec_a if "loss" in r] == list(range(1, STEPS + 1))
    tokens = [r["num_tokens"] for r in rec_a if "num_tokens" in r]
    assert tokens == sorted(tokens) and len(set(tokens)) == STEPS  # counted on, never from zero again
    assert (tmp_path / "ref" / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()
