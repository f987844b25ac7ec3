"""Measure `linebench export` and both harness paths on one generated test split (issue 30).

    python benchmarks/harnesses.py --task tracing --n 5000 --work /tmp/harness   # prints a markdown table

Generates the split (default maps), exports it for lmms-eval and for VLMEvalKit (timed), then runs
lmms-eval's own loader and simple_evaluate with the fake model of tests/lmms_eval_run.py (answers:
right, right in prose, wrong, unparseable, bold, by a hash of the id) and reports: lmms-eval's
accuracy and per-level accuracy next to `linebench score`'s on the same answers, the VLMEvalKit
class's scoring (`score_rows` on the TSV) next to them, the bytes a logged sample takes, and the
TSV's size. Needs lmms-eval installed as the README's test command installs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="tracing")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/linebench-harness"))
    args = ap.parse_args()

    from datasets import load_dataset

    from linebench.harnesses.export import export
    from linebench.harnesses.vlmevalkit import read_tsv, score_rows
    from linebench.score import score

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"{args.task}-{args.n}"
    if not (data / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "linebench.cli", "generate", "--task", args.task, "--n", str(args.n), "--split", "test",
                        "--difficulty", "stratified", "--out", str(data)], check=True)  # fmt: skip
    times = {}
    for to in ("lmms-eval", "vlmevalkit"):
        t = time.perf_counter()
        res = export(str(data), to, work / f"export-{to}", overwrite=True)
        times[to] = time.perf_counter() - t
    name = res.name

    rows = load_dataset(str(data), split="test").select_columns(["id", "answer"])
    answers = {}
    for r in rows:
        a = r["answer"]
        wrong = "(9, 9)" if a.startswith("(") else str(int(a) % 9 + 1)
        answers[r["id"]] = [a, f"The answer is {a}.", wrong, "no idea", f"**{a}**"][zlib.crc32(r["id"].encode()) % 5]
    (work / "answers.json").write_text(json.dumps(answers))
    preds = work / "predictions.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in answers.items()))

    t = time.perf_counter()
    result = work / "lmms-result.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "lmms_eval_run.py"), str(result), str(work / "answers.json"), str(work / "export-lmms-eval"),
                    "--tasks", name], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, capture_output=True)  # fmt: skip
    lmms_seconds = time.perf_counter() - t
    lmms = json.loads(result.read_text())
    got = lmms["results"][name]
    report = score(data, preds)
    levels = {g.value: g.accuracy for g in report.groups if g.by == "difficulty"}
    frame = read_tsv(work / "export-vlmevalkit" / f"{name}.tsv")
    table = score_rows(frame.to_dict("records"), {int(i): answers[x] for i, x in zip(frame["index"], frame["id"])})
    vlm_levels = {t["level"]: t["accuracy"] for t in table[1:]}
    logged, sample = lmms["logged_bytes"][name], lmms["sample_bytes"][name]
    full = load_dataset(str(data), split="test").remove_columns(["image"])
    full_bytes = [len(json.dumps(r, default=str, ensure_ascii=False).encode()) for r in full.select(range(min(500, len(full))))]
    tsv_mb = (work / "export-vlmevalkit" / f"{name}.tsv").stat().st_size / 1e6

    print(f"{args.task}, {args.n:,} test rows (stratified levels, default maps); {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"`python benchmarks/harnesses.py --task {args.task} --n {args.n}`\n")  # fmt: skip
    print("| | value |\n|---|---|")
    print(f"| `linebench export --to lmms-eval` | {times['lmms-eval']:.1f} s |")
    print(f"| `linebench export --to vlmevalkit` | {times['vlmevalkit']:.1f} s ({tsv_mb:.1f} MB TSV) |")
    print(f"| lmms-eval 0.7.3 run, fake model (import, loader, {args.n:,} rows, logging) | {lmms_seconds:.1f} s |")
    print(f"| accuracy: lmms-eval / VLMEvalKit class / `linebench score` | {got['accuracy,none']:.4f} / {table[0]['accuracy']:.4f} / {report.overall.accuracy:.4f} |")
    for lv in levels:
        print(f"| {lv}: lmms-eval / VLMEvalKit class / `linebench score` | {got['per_level,none'][lv]:.4f} / {vlm_levels[lv]:.4f} / {levels[lv]:.4f} |")
    print(f"| logged sample, `--log_samples` file line: max / mean | {max(logged)} / {sum(logged) / len(logged):.0f} bytes |")
    print(f"| logged sample with its doc (in memory): max / mean | {max(sample)} / {sum(sample) / len(sample):.0f} bytes |")
    print(f"| a row's columns but the image, as JSON (what a sample logged without process_docs), first 500 rows: max / mean | {max(full_bytes)} / {sum(full_bytes) / len(full_bytes):.0f} bytes |")
    same = abs(got["accuracy,none"] - report.overall.accuracy) < 1e-12 and abs(table[0]["accuracy"] - report.overall.accuracy) < 1e-12
    same &= all(abs(got["per_level,none"][lv] - levels[lv]) < 1e-12 and abs(vlm_levels[lv] - levels[lv]) < 1e-12 for lv in levels)
    print(f"\nall three equal, overall and per level: {same}")


if __name__ == "__main__":
    main()
