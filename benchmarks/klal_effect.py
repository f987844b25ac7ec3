"""Does KLAL help? The tiny default models trained NTP-only and NTP + KLAL with identical data, steps
and seeds, on grid patch, intersection and tracing; plus the query-position ablation. Writes
docs/results.md (tables and a plot of accuracy over steps).

    python benchmarks/klal_effect.py                      # ~75 minutes on 2 CPU cores
    python benchmarks/klal_effect.py --seeds 1 --steps 100 --tasks grid_patch   # a quick look

For each task: one folder of rows (train + a held-out test split, the same for every run); per seed
a tiny model built with that seed (so seeds vary the initialisation and the data order); each arm
trained `--steps` steps with `linebench.train.run.train` (evaluated every `--eval-every` steps).
Accuracy: greedy answers on the held-out rows scored with linebench's parsers; the interval is the
mean over seeds +- 1.96 standard errors (seeds), next to each seed's value. Attention: the paper's
ratio (mean attention on target tokens / mean on all visual tokens, 1 = none) and KL(P || Q),
averaged over layers, from the model's real forward. Steps/s: training throughput of the run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANVAS = {"grid_patch": 224, "tracing": 336, "intersection": 448}  # the smallest each task's levels allow (tiny models see 224)


def data_folder(task: str, n: int, eval_n: int, work: Path) -> Path:
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    folder = work / f"data-{task}"
    if not (folder / "manifest.json").is_file():
        c = CANVAS[task]
        specs = [RunSpec(task, split=s, n=k, seed=7, params=ParamSpec((c, c), "easy"), maps=()) for s, k in (("train", n), ("test", eval_n))]
        generate(specs, folder, workers=2, overwrite=True)
    return folder


def one_run(task, arm, seed, args, work, query="last-answer"):
    from linebench.train import tiny
    from linebench.train.run import TrainOptions, train

    model = work / f"tiny-seed{seed}"
    if not (model / tiny.MARK).is_file():
        tiny.build_tiny("tiny", model, seed=seed)
    out = work / f"{task}-{arm}-{query}-s{seed}"
    opts = TrainOptions(
        model=str(model), data=str(data_folder(task, args.n, args.eval_n, work)), klal=arm == "klal", steps=args.steps,
        eval_every=args.eval_every, eval_n=args.eval_n, seed=seed, out=str(out), overwrite=True, query=query, backend="auto",
        batch_size=args.batch_size, save_every=10**6,
    )  # fmt: skip
    t0 = time.perf_counter()
    res = train(opts, log=lambda m: None)
    ev = json.loads((out / "eval.json").read_text())
    curve = [(e["step"], e["accuracy"]) for e in [ev["before"], *ev["during"], ev["after"]]]
    return {
        "task": task, "arm": arm, "query": query, "seed": seed, "accuracy": res["after"]["accuracy"],
        "ratio": _mean(res["after"], "ratio"), "kl": _mean(res["after"], "kl"), "ratio_before": _mean(res["before"], "ratio"),
        "steps_per_s": ev["train"].get("train_steps_per_second"), "seconds": time.perf_counter() - t0, "curve": curve,
        "layers": res["after"].get("layers", []),
    }  # fmt: skip


def _mean(rep, key):
    vals = [r[key] for r in rep.get("layers", [])]
    return sum(vals) / len(vals) if vals else math.nan


def interval(values):
    m = statistics.mean(values)
    if len(values) < 2:
        return m, math.nan
    return m, 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def fmt(values, pct=True):
    m, h = interval(values)
    scale = 100 if pct else 1
    each = ", ".join(f"{v * scale:.1f}" if pct else f"{v:.2f}" for v in values)
    return f"{m * scale:.1f} ± {h * scale:.1f} ({each})" if pct else f"{m:.2f} ± {h:.2f}"


def write_results(runs, args, path: Path, plot: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import torch

    lines = [
        "# Does KLAL help? Tiny models, NTP vs NTP + KLAL",
        "",
        "Measured by `python benchmarks/klal_effect.py" + (f" {' '.join(sys.argv[1:])}" if sys.argv[1:] else "") + "`, "
        f"{time.strftime('%Y-%m-%d')}, on {platform.machine()} with {torch.get_num_threads()} threads, torch {torch.__version__}.",
        "",
        f"The tiny default VLM (`linebench train --model tiny`: a LLaVA architecture, 224 px CLIP tower with 256 image tokens, a 4-layer",
        f"Llama of width 128; 0.77 M parameters, random init from the seed), trained from scratch {args.steps} steps at batch {args.batch_size}",
        f"on {args.n} easy rows per task (grid patch at 224 px, tracing at 336, intersection at 448, resized to 224 by the model's processor), "
        f"evaluated on {args.eval_n} held-out rows. Both arms see the same rows in the same order from the same initial weights; the KLAL arm adds",
        "λ = 1 times KLAL on every layer, for the query that produces the last answer token. Accuracy: mean ± 1.96 standard errors over seeds,",
        "each seed's value in brackets. Ratio: the paper's Figure 4 ratio (mean attention on target tokens over mean attention on all visual",
        "tokens; 1 = no preference), averaged over layers; KL: KL(P ‖ Q), averaged over layers. Chance: a uniform guess (grid patch 1/grid², ",
        "intersection 1/6, tracing 1/3).",
        "",
        "| task | arm | accuracy % | attention ratio | KL | steps/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    main = [r for r in runs if r["query"] == "last-answer"]
    for task in dict.fromkeys(r["task"] for r in main):
        for arm in ("ntp", "klal"):
            rs = [r for r in main if r["task"] == task and r["arm"] == arm]
            if rs:
                lines.append(
                    f"| {task} | {'NTP' if arm == 'ntp' else 'NTP + KLAL'} | {fmt([r['accuracy'] for r in rs])} | {fmt([r['ratio'] for r in rs], False)} "
                    f"| {fmt([r['kl'] for r in rs], False)} | {statistics.mean(r['steps_per_s'] for r in rs):.2f} |"
                )
    abl = [r for r in runs if r["arm"] == "klal" and r["task"] == args.ablation_task]
    if any(r["query"] != "last-answer" for r in abl):
        lines += [
            "",
            f"## Which query attends ({args.ablation_task}, NTP + KLAL)",
            "",
            "`last-answer` (the default) supervises the query that produces the last answer token; `at-last-label` the query at the last",
            "labelled position (the end-of-turn token after a one-token answer: the query that predicts what follows the answer).",
            "",
            "| query | accuracy % | attention ratio | KL |",
            "|---|---:|---:|---:|",
        ]
        for q in ("last-answer", "at-last-label"):
            rs = [r for r in abl if r["query"] == q]
            if rs:
                lines.append(f"| `{q}` | {fmt([r['accuracy'] for r in rs])} | {fmt([r['ratio'] for r in rs], False)} | {fmt([r['kl'] for r in rs], False)} |")
    tasks = list(dict.fromkeys(r["task"] for r in main))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for arm, colour in (("ntp", "tab:blue"), ("klal", "tab:red")):
            for r in [r for r in main if r["task"] == task and r["arm"] == arm]:
                xs, ys = zip(*r["curve"])
                ax.plot(xs, [100 * y for y in ys], color=colour, alpha=0.6, label=("NTP" if arm == "ntp" else "NTP + KLAL") if r["seed"] == args.first_seed else None)
        ax.set_title(task), ax.set_xlabel("step"), ax.set_ylabel("held-out accuracy %"), ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    lines += ["", f"![accuracy over steps, every seed]({plot.name})", "", "Raw numbers (every run): `docs/results.json`.", ""]
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="grid_patch,intersection,tracing")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--ablation-task", default="grid_patch")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--work", default="runs/klal_effect")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    done = json.loads((work / "runs.json").read_text()) if (work / "runs.json").exists() else []
    runs = []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    plan = [(t, arm, s, "last-answer") for t in args.tasks.split(",") for s in seeds for arm in ("ntp", "klal")]
    if not args.no_ablation:
        plan += [(args.ablation_task, "klal", s, "at-last-label") for s in seeds]
    for i, (task, arm, seed, query) in enumerate(plan, 1):
        cached = [d for d in done if (d["task"], d["arm"], d["seed"], d["query"]) == (task, arm, seed, query)]
        r = cached[0] if cached else one_run(task, arm, seed, args, work, query)  # a rerun picks up where it stopped
        runs.append(r)
        print(f"[{i}/{len(plan)}] {task} {arm} {query} seed {seed}: accuracy {100 * r['accuracy']:.1f}%, ratio {r['ratio']:.2f}, KL {r['kl']:.3f}, {r['seconds']:.0f} s", flush=True)
        (work / "runs.json").write_text(json.dumps(runs, indent=1))
    out = Path(args.out)
    write_results(runs, args, out, out.with_name("results-accuracy.png"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
