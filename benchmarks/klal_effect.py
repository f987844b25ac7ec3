"""Does KLAL help? Paired replicates of NTP vs NTP + KLAL on the tiny models, analysed as a reviewer
would: baselines on the same rows, a constant answer flagged, McNemar per replicate, and across
replicates a mean difference with a t interval, a sign test and a permutation test; learning curves
of every run, and one long NTP control to tell "learns faster" from "ends higher".

    # the setting of docs/results.md (grid patch 3x3, one marker; ~50 min on 2 cores)
    python benchmarks/klal_effect.py --tasks grid_patch --knob grid=3 --knob distractors=0 --knob confusable=0 \
        --knob jitter=0 --knob marker_size=0.7 --canvas 224 --n 3000 --batch-size 16 --steps 250 --eval-every 125 \
        --control-steps 500 --replicates 8 --write docs/results-grid3.md

A setting is (task, knobs, model, difficulty, canvas, n, steps, lr, batch size, eval rows). Replicate
r trains both arms from the same initial weights (tiny model seed r) on the same training rows (data
seed 1000 + r) in the same order; every replicate is scored on the same held-out rows (data seed 99,
`--eval-n` of them). `--control-steps S` adds one NTP run of replicate 0 for S steps (its cosine
schedule spans S steps, so its curve is not the short runs' curve continued). Every finished run is
cached under `--work` (a folder per setting, `result.json` per run), so an interrupted experiment
resumes where it stopped and settings can be run one at a time. `--jobs` runs go side by side, each
in its own process on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ("ntp", "klal")
CANVAS = {"grid_patch": 224, "tracing": 336, "intersection": 448}  # the smallest each task's easy level allows (the tiny models see 224)


def canvas(task: str, a) -> int:
    return a.canvas or CANVAS[task]


def knobs(task: str, a) -> dict:
    """The `--knob NAME=VALUE` overrides, parsed and checked against the task's knobs."""
    from linebench.tasks import get_task, parse_overrides

    return parse_overrides(get_task(task), a.knob)


def setting_key(task: str, a, steps: int | None = None) -> str:
    k = "".join(f"-{n}={'..'.join(map(str, v)) if isinstance(v, list) else v}" for n, v in sorted(knobs(task, a).items()))
    return f"{task}-{a.model}-{a.difficulty}{k}-c{canvas(task, a)}-n{a.n}-s{steps or a.steps}-lr{a.lr:g}-b{a.batch_size}-e{a.eval_n}"


def data_folder(task: str, r: int, a, work: Path) -> Path:
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    folder = work / f"data-r{r}"
    if not (folder / "manifest.json").is_file():
        params = ParamSpec((canvas(task, a), canvas(task, a)), a.difficulty, knobs(task, a))
        specs = [RunSpec(task, split="train", n=a.n, seed=1000 + r, params=params, maps=()),
                 RunSpec(task, split="test", n=a.eval_n, seed=99, params=params, maps=())]  # the same held-out rows for every replicate
        generate(specs, folder, workers=1, overwrite=True)
    return folder


def run_folder(arm: str, r: int, steps: int, a) -> str:
    return f"{arm}-r{r}" if steps == a.steps else f"{arm}-s{steps}-r{r}"  # the long NTP control trains longer


def one_run(job) -> dict:
    """Train one arm of one replicate for `steps` steps (or read its cached result)."""
    task, arm, r, a, work, steps = job
    out = work / run_folder(arm, r, steps, a)
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text()) | {"cached": True}
    import torch

    torch.set_num_threads(1)
    from linebench.evaluate.diagnostics import layer_mean
    from linebench.train import tiny
    from linebench.train.run import TrainOptions, train

    t0 = time.perf_counter()
    opts = TrainOptions(
        model=str(prepare((task, r, a, work))), data=str(data_folder(task, r, a, work)), klal=arm == "klal", steps=steps, learning_rate=a.lr,
        batch_size=a.batch_size, eval_every=a.eval_every, eval_n=a.eval_n, seed=r, out=str(out), overwrite=True, save_every=10**6,
    )  # fmt: skip
    train(opts, log=lambda m: None)
    ev = json.loads((out / "eval.json").read_text())
    verdicts = {p["id"]: bool(p["correct"]) for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    result = {
        "task": task, "arm": arm, "replicate": r, "steps": steps, "accuracy": ev["after"]["accuracy"], "diagnostics": ev["after"]["diagnostics"],
        "ratio": layer_mean(ev["after"], "ratio"), "kl": layer_mean(ev["after"], "kl"), "visual_share": layer_mean(ev["after"], "visual_share"),
        "curve": [(e["step"], e["accuracy"]) for e in [ev["before"], *ev["during"], ev["after"]]],
        "verdicts": verdicts, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result) + "\n")  # last: the run is complete
    return result


def prepare(job) -> Path:
    """Replicate r's data and initial weights (made once, before any run of it starts: the two arms
    and the long control share them)."""
    from linebench.train import tiny

    task, r, a, work = job
    data_folder(task, r, a, work)
    model = work / f"model-r{r}"
    if not (model / tiny.MARK).is_file():
        tiny.build_tiny(a.model, model, seed=r)
    return model


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def analyse(task: str, runs: list[dict], steps: int) -> tuple[list[str], dict]:
    """Markdown lines and the numbers for one setting's replicates (runs of `steps` steps), with the
    learning curves of every run (the long NTP control's too)."""
    from linebench.evaluate.stats import mcnemar, paired_summary

    by = {(x["arm"], x["replicate"]): x for x in runs if x.get("steps", steps) == steps}
    reps = sorted({r for arm, r in by if ("ntp", r) in by and ("klal", r) in by})
    lines = ["| replicate | NTP | NTP + KLAL | difference | only NTP right | only KLAL right | McNemar p |", "|---|---|---|---:|---:|---:|---:|"]
    diffs = []
    for r in reps:
        a, b = by[("ntp", r)], by[("klal", r)]
        ids = sorted(set(a["verdicts"]) & set(b["verdicts"]))
        m = mcnemar([a["verdicts"][i] for i in ids], [b["verdicts"][i] for i in ids])
        diffs.append(b["accuracy"] - a["accuracy"])
        lines.append(f"| {r} | {_brief(a['diagnostics'])} | {_brief(b['diagnostics'])} | {100 * diffs[-1]:+.1f} | {m['a_only']} | {m['b_only']} | {m['p']:.2g} |")
    summary = paired_summary(diffs) if diffs else None
    if summary:
        ci = "" if summary["low"] is None else f", 95% t interval [{100 * summary['low']:+.1f}, {100 * summary['high']:+.1f}]"
        lines += ["", f"Across {summary['replicates']} replicates: mean difference {100 * summary['mean']:+.1f} points{ci}; "
                      f"KLAL ahead in {summary['positive']}, behind in {summary['negative']}; sign test p = {summary['sign_p']:.2g}, "
                      f"permutation p = {summary['permutation_p']:.2g}."]
    attn = ["", "| arm | mean accuracy | attention on the image | target / visual ratio | KL(P ‖ Q) |", "|---|---:|---:|---:|---:|"]
    for arm, name in (("ntp", "NTP"), ("klal", "NTP + KLAL")):
        xs = [by[(arm, r)] for r in reps]
        if xs:
            mean = lambda k: sum(x[k] for x in xs) / len(xs)  # noqa: E731
            attn.append(f"| {name} | {100 * mean('accuracy'):.1f}% | {mean('visual_share'):.3f} | {mean('ratio'):.2f} | {mean('kl'):.2f} |")
    lines += attn if reps else []
    curves = _curves(runs, steps)
    if curves["steps"]:
        head = [name for name, _ in curves["series"]]
        lines += ["", "Learning curves (held-out accuracy %, mean over replicates):", "", "| step | " + " | ".join(head) + " |", "|---:|" + "---:|" * len(head)]
        for i, st in enumerate(curves["steps"]):
            lines.append(f"| {st} | " + " | ".join("" if ys[i] is None else f"{100 * ys[i]:.1f}" for _, ys in curves["series"]) + " |")
    return lines, {"task": task, "replicates": reps, "differences": diffs, "summary": summary, "curves": curves}


def _brief(d: dict) -> str:
    """One cell: accuracy, balanced accuracy, distinct predictions, and a constant answer flagged
    (the baselines are the same for every run: the setting's header gives them)."""
    line = f"{100 * d['accuracy']:.1f}% (balanced {100 * d['balanced_accuracy']:.1f}%, {d['distinct_predictions']} distinct)"
    if d["distinct_predictions"] == 0:
        return line + " **NO PARSEABLE ANSWER**"
    return line + (f" **CONSTANT ANSWER {d['top_predictions'][0][0]}**" if d["constant"] else "")


def _curves(runs: list[dict], steps: int) -> dict:
    """Mean held-out accuracy at each evaluated step: NTP and NTP + KLAL over the paired
    replicates, and the long NTP control(s) on their own."""
    series = []
    for name, pick in (("NTP", lambda x: x["arm"] == "ntp" and x.get("steps", steps) == steps),
                       ("NTP + KLAL", lambda x: x["arm"] == "klal" and x.get("steps", steps) == steps),
                       ("NTP, long control", lambda x: x["arm"] == "ntp" and x.get("steps", steps) > steps)):  # fmt: skip
        xs = [x for x in runs if pick(x)]
        if xs:
            series.append((name, xs))
    at = sorted({st for _, xs in series for x in xs for st, _ in x["curve"]})
    out = []
    for name, xs in series:
        ys = []
        for st in at:
            vals = [acc for x in xs for s_, acc in x["curve"] if s_ == st]
            ys.append(sum(vals) / len(vals) if len(vals) == len(xs) else None)
        out.append((name, ys))
    return {"steps": at, "series": out, "runs": {name: [x["curve"] for x in xs] for name, xs in series}}


def plot(settings: list[dict], path: Path) -> Path:
    """One panel per setting: every run's learning curve (thin) and the arm means (thick), the
    majority-answer baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 3.8), squeeze=False)
    colours = {"NTP": "tab:blue", "NTP + KLAL": "tab:orange", "NTP, long control": "tab:green"}
    for ax, s in zip(axes[0], settings):
        c = s["curves"]
        for name, ys in c["series"]:
            for run in c["runs"][name]:
                ax.plot(*zip(*run), color=colours[name], lw=0.6, alpha=0.35)
            pts = [(st, y) for st, y in zip(c["steps"], ys) if y is not None]
            ax.plot(*zip(*pts), color=colours[name], lw=2.2, label=f"{name} (mean)", ls=":" if "long" in name else "-")
        if s.get("majority") is not None:
            ax.axhline(s["majority"], color="grey", lw=1, ls="--", label="majority answer")
        ax.set_ylim(0, 1), ax.set_xlabel("training step"), ax.set_ylabel("held-out accuracy"), ax.set_title(s["title"], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="intersection")
    ap.add_argument("--model", default="tiny", help="tiny (LLaVA, absolute position embeddings) or tiny-qwen2.5-vl")
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--difficulty", default="easy")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE", help="a task knob (repeatable), as `linebench generate --knob`")
    ap.add_argument("--canvas", type=int, default=0, help="px (default: grid patch 224, tracing 336, intersection 448)")
    ap.add_argument("--n", type=int, default=2000, help="training rows per replicate")
    ap.add_argument("--eval-n", type=int, default=1000, help="held-out rows, the same for every replicate")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations (the learning curves)")
    ap.add_argument("--control-steps", type=int, default=0, help="also one NTP run of replicate 0 this long (a long control: learns faster, or ends higher?)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    ap.add_argument("--work", default="runs/klal_effect", help="cache of finished runs (resume: run the same command again)")
    ap.add_argument("--write", default=None, help="also write the report here (markdown; .json beside it, learning curves as .png)")
    a = ap.parse_args()
    if a.control_steps and a.control_steps <= a.steps:
        ap.error(f"--control-steps must be longer than --steps ({a.steps})")
    report, numbers = [f"Measured by `python benchmarks/klal_effect.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}.", ""], []
    for task in a.tasks.split(","):
        work = Path(a.work) / setting_key(task, a)
        work.mkdir(parents=True, exist_ok=True)
        jobs = [(task, arm, r, a, work, a.steps) for r in range(a.replicates) for arm in ARMS]
        if a.control_steps:
            jobs.insert(0, (task, "ntp", 0, a, work, a.control_steps))  # the longest first: the others fill the other core
        t0 = time.perf_counter()
        if a.jobs > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(a.jobs, initializer=_init_worker) as pool:
                pool.map(prepare, [(task, r, a, work) for r in range(a.replicates)])
                runs = []
                for i, x in enumerate(pool.imap_unordered(one_run, jobs), 1):
                    runs.append(x)
                    print(f"[{task} {i}/{len(jobs)}] {x['arm']} replicate {x['replicate']} ({x.get('steps', a.steps)} steps): "
                          f"accuracy {100 * x['accuracy']:.1f}% ({x['seconds']} s)", flush=True)
        else:
            runs = [one_run(j) for j in jobs]
        lines, nums = analyse(task, runs, a.steps)
        d = runs[0]["diagnostics"]
        nums |= {"title": f"{task}: {', '.join(a.knob) or a.difficulty}", "majority": d.get("majority_baseline"), "uniform": d.get("uniform_baseline"),
                 "train_seconds": sum(x["seconds"] for x in runs), "wall_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        uniform = f", uniform guess {100 * d['uniform_baseline']:.1f}%" if d.get("uniform_baseline") is not None else ""
        report += [f"## {task} ({setting_key(task, a)})", "",
                   f"Held-out rows: {d['rows']}; majority answer {d['majority_answer']!r} {100 * d['majority_baseline']:.1f}%{uniform}. "
                   f"{len(runs)} runs, {nums['train_seconds'] / 60:.0f} min of training and evaluation in all (one thread each)"
                   + (f"; {nums['wall_seconds'] / 60:.0f} min of wall time for the {fresh} run(s) made now." if (fresh := sum(not x.get("cached") for x in runs)) else "."),
                   "", *lines, ""]  # fmt: skip
        numbers.append(nums)
    print("\n".join(report))
    if a.write:
        write = Path(a.write)
        if _has_matplotlib():
            report += [f"![learning curves]({plot(numbers, write.with_suffix('.png')).name})", ""]
        write.write_text("\n".join(report) + "\n")
        write.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    return 0


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


if __name__ == "__main__":
    sys.exit(main())
