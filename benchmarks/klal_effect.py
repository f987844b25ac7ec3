"""Does KLAL help? Paired replicates of NTP vs NTP + KLAL on the tiny models, analysed as a reviewer
would: baselines on the same rows, a constant answer flagged, McNemar per replicate, and across
replicates a mean difference with a t interval, a sign test and a permutation test.

    python benchmarks/klal_effect.py --tasks intersection --replicates 8          # one setting
    python benchmarks/klal_effect.py --tasks grid_patch,intersection,tracing --write docs/results.md

A setting is (task, model, difficulty, canvas, n, steps, lr, batch size, eval rows). Replicate r
trains both arms from the same initial weights (tiny model seed r) on the same training rows
(data seed 1000 + r) in the same order; every replicate is scored on the same held-out rows (data
seed 99, `--eval-n` of them). Every finished run is cached under `--work` (a folder per setting,
`result.json` per run), so an interrupted experiment resumes where it stopped and settings can be
run one at a time. `--jobs` runs go side by side, each in its own process on one thread.
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


def setting_key(task: str, a) -> str:
    return f"{task}-{a.model}-{a.difficulty}-c{canvas(task, a)}-n{a.n}-s{a.steps}-lr{a.lr:g}-b{a.batch_size}-e{a.eval_n}"


def data_folder(task: str, r: int, a, work: Path) -> Path:
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    folder = work / f"data-r{r}"
    if not (folder / "manifest.json").is_file():
        params = ParamSpec((canvas(task, a), canvas(task, a)), a.difficulty)
        specs = [RunSpec(task, split="train", n=a.n, seed=1000 + r, params=params, maps=()),
                 RunSpec(task, split="test", n=a.eval_n, seed=99, params=params, maps=())]  # the same held-out rows for every replicate
        generate(specs, folder, workers=1, overwrite=True)
    return folder


def one_run(job) -> dict:
    """Train one arm of one replicate (or read its cached result)."""
    task, arm, r, a, work = job
    out = work / f"{arm}-r{r}"
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    import torch

    torch.set_num_threads(1)
    from linebench.evaluate.diagnostics import layer_mean
    from linebench.train import tiny
    from linebench.train.run import TrainOptions, train

    model = work / f"model-r{r}"
    if not (model / tiny.MARK).is_file():
        tiny.build_tiny(a.model, model, seed=r)
    t0 = time.perf_counter()
    opts = TrainOptions(
        model=str(model), data=str(data_folder(task, r, a, work)), klal=arm == "klal", steps=a.steps, learning_rate=a.lr,
        batch_size=a.batch_size, eval_every=a.eval_every, eval_n=a.eval_n, seed=r, out=str(out), overwrite=True, save_every=10**6,
    )  # fmt: skip
    train(opts, log=lambda m: None)
    ev = json.loads((out / "eval.json").read_text())
    verdicts = {p["id"]: bool(p["correct"]) for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    result = {
        "task": task, "arm": arm, "replicate": r, "accuracy": ev["after"]["accuracy"], "diagnostics": ev["after"]["diagnostics"],
        "ratio": layer_mean(ev["after"], "ratio"), "kl": layer_mean(ev["after"], "kl"), "visual_share": layer_mean(ev["after"], "visual_share"),
        "curve": [(e["step"], e["accuracy"]) for e in [ev["before"], *ev["during"], ev["after"]]],
        "verdicts": verdicts, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result) + "\n")  # last: the run is complete
    return result


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def analyse(task: str, runs: list[dict]) -> tuple[list[str], dict]:
    """Markdown lines and the numbers for one setting's replicates."""
    from linebench.evaluate.diagnostics import describe
    from linebench.evaluate.stats import mcnemar, paired_summary

    by = {(x["arm"], x["replicate"]): x for x in runs}
    reps = sorted({x["replicate"] for x in runs if ("ntp", x["replicate"]) in by and ("klal", x["replicate"]) in by})
    lines = ["| replicate | NTP | NTP + KLAL | difference | only NTP right | only KLAL right | McNemar p |", "|---|---|---|---:|---:|---:|---:|"]
    diffs = []
    for r in reps:
        a, b = by[("ntp", r)], by[("klal", r)]
        ids = sorted(set(a["verdicts"]) & set(b["verdicts"]))
        m = mcnemar([a["verdicts"][i] for i in ids], [b["verdicts"][i] for i in ids])
        diffs.append(b["accuracy"] - a["accuracy"])
        lines.append(f"| {r} | {describe(a['diagnostics'])} | {describe(b['diagnostics'])} | {100 * diffs[-1]:+.1f} | {m['a_only']} | {m['b_only']} | {m['p']:.2g} |")
    summary = paired_summary(diffs) if diffs else None
    if summary:
        ci = "" if summary["low"] is None else f", 95% t interval [{100 * summary['low']:+.1f}, {100 * summary['high']:+.1f}]"
        lines += ["", f"Across {summary['replicates']} replicates: mean difference {100 * summary['mean']:+.1f} points{ci}; "
                      f"KLAL ahead in {summary['positive']}, behind in {summary['negative']}; sign test p = {summary['sign_p']:.2g}, "
                      f"permutation p = {summary['permutation_p']:.2g}."]
    return lines, {"task": task, "replicates": reps, "differences": diffs, "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="intersection")
    ap.add_argument("--model", default="tiny", help="tiny (LLaVA, absolute position embeddings) or tiny-qwen2.5-vl")
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--difficulty", default="easy")
    ap.add_argument("--canvas", type=int, default=0, help="px (default: grid patch 224, tracing 336, intersection 448)")
    ap.add_argument("--n", type=int, default=2000, help="training rows per replicate")
    ap.add_argument("--eval-n", type=int, default=1000, help="held-out rows, the same for every replicate")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    ap.add_argument("--work", default="runs/klal_effect", help="cache of finished runs (resume: run the same command again)")
    ap.add_argument("--write", default=None, help="also write the report here (markdown; .json beside it)")
    a = ap.parse_args()
    report, numbers = [f"Measured by `python benchmarks/klal_effect.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}.", ""], []
    for task in a.tasks.split(","):
        work = Path(a.work) / setting_key(task, a)
        work.mkdir(parents=True, exist_ok=True)
        jobs = [(task, arm, r, a, work) for r in range(a.replicates) for arm in ARMS]
        if a.jobs > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(a.jobs, initializer=_init_worker) as pool:
                runs = []
                for i, x in enumerate(pool.imap_unordered(one_run, jobs), 1):
                    runs.append(x)
                    print(f"[{task} {i}/{len(jobs)}] {x['arm']} replicate {x['replicate']}: accuracy {100 * x['accuracy']:.1f}% ({x['seconds']} s)", flush=True)
        else:
            runs = [one_run(j) for j in jobs]
        lines, nums = analyse(task, runs)
        report += [f"## {task} ({setting_key(task, a)})", "", *lines, ""]
        numbers.append(nums)
    print("\n".join(report))
    if a.write:
        Path(a.write).write_text("\n".join(report) + "\n")
        Path(a.write).with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
