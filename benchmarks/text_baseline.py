"""A text-only baseline: does the question (without the picture) give the answer away?

For every split of a generated folder (e.g. an official release, `linebench generate --spec
tracing --out data/tracing`), the baseline answers each question with the most frequent answer of
the same question *template* (the task's question kind) and, separately, of the same exact
question *text*, both learned on the train split (train itself is scored by 2-fold cross-fitting:
learn on even rows, score odd rows, and the other way round). Chance is the expected accuracy of a
uniform guess among the answers the sample allows (tracing: 1 / curves; intersection: 1 / size of
the level's `count` range; grid patch: 1 / grid^2). Run from the repository root:

    python benchmarks/text_baseline.py data/tracing data/intersection data/grid_patch

It prints a markdown table and exits 1 if any baseline is more than 5 points from chance.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from linebench.dataset import read_manifest
from linebench.evaluate.diagnostics import chance

TOLERANCE = 5.0  # percentage points


def template(task: str, row: dict) -> str:
    return row.get("question_kind") or task


def load(folder: Path) -> tuple[str, dict[str, list[dict]]]:
    manifest = read_manifest(folder)
    task = manifest["task"]
    want = {"question", "answer", "split", "params", "question_kind", "curves", "count", "grid"}
    by_split: dict[str, list[dict]] = defaultdict(list)
    for shard in manifest["shards"]:
        path = folder / shard["path"]
        cols = [c for c in pq.read_schema(path).names if c in want]
        for row in pq.read_table(path, columns=cols).to_pylist():
            by_split[row["split"]].append(row)
    return task, by_split


def majority(rows: list[dict], key) -> tuple[dict[str, str], str]:
    counts: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for r in rows:
        counts[key(r)][r["answer"]] += 1
        overall[r["answer"]] += 1
    fallback = min(overall, key=lambda a: (-overall[a], a))  # ties: the smallest answer, deterministically
    return {k: min(c, key=lambda a: (-c[a], a)) for k, c in counts.items()}, fallback


def accuracy(fit: list[dict], score: list[dict], key) -> float:
    table, fallback = majority(fit, key)
    return sum(table.get(key(r), fallback) == r["answer"] for r in score) / len(score)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    bad = False
    print("| task | split | rows | chance | most frequent per template | per exact question |")
    print("|---|---|---:|---:|---:|---:|")
    for folder in args.folders:
        task, by_split = load(folder)
        train = by_split.get("train")
        if not train:
            print(f"{folder}: no train split to learn from", file=sys.stderr)
            return 2
        keys = {"template": lambda r: template(task, r), "question": lambda r: r["question"]}
        for split, rows in by_split.items():
            ch = 100 * sum(chance(task, r) for r in rows) / len(rows)
            accs = {}
            for name, key in keys.items():
                if split == "train":
                    even, odd = rows[0::2], rows[1::2]
                    acc = (accuracy(even, odd, key) * len(odd) + accuracy(odd, even, key) * len(even)) / len(rows)
                else:
                    acc = accuracy(train, rows, key)
                accs[name] = 100 * acc
                bad |= abs(accs[name] - ch) > TOLERANCE
            print(f"| {task} | {split} | {len(rows)} | {ch:.1f}% | {accs['template']:.1f}% | {accs['question']:.1f}% |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
