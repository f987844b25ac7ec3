"""Diagnostics an accuracy needs beside it, so that a number cannot flatter: the majority-answer and
uniform-guess baselines on the same rows, balanced accuracy, how many distinct answers the model
gave (a model that always says "0" is flagged as a constant answer), and the confusion of answers
with predictions. Pure functions of plain lists.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Mapping, Sequence

MAX_CONFUSION_CLASSES = 30  # beyond this many distinct answers a confusion matrix is not readable


def chance(task: str, row: Mapping[str, Any]) -> float | None:
    """The accuracy of a uniform guess among the answers a sample allows: tracing 1/curves,
    intersection 1/size of the level's count range, grid patch 1/grid²; None for other tasks."""
    if task == "tracing":
        return 1.0 / row["curves"]
    if task == "intersection":
        params = row["params"]
        count = (json.loads(params) if isinstance(params, (str, bytes)) else params)["knobs"]["count"]
        lo, hi = count if isinstance(count, list) else (count, count)
        return 1.0 / (hi - lo + 1)
    if task == "grid_patch":
        return 1.0 / row["grid"] ** 2
    return None


def diagnose(answers: Sequence[str], predicted: Sequence[str | None], correct: Sequence[bool],
             chances: Sequence[float | None] = ()) -> dict[str, Any]:
    """answers: the true answers; predicted: each prediction in canonical form (None: unparseable);
    correct: each verdict; chances: each row's uniform-guess accuracy (`chance`)."""
    n = len(answers)
    if n == 0:
        return {"rows": 0}
    counts = Counter(answers)
    majority_answer, majority_n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    recall = {a: sum(ok for x, ok in zip(answers, correct) if x == a) / c for a, c in counts.items()}
    given = Counter(p for p in predicted if p is not None)
    out: dict[str, Any] = {
        "rows": n,
        "accuracy": sum(map(bool, correct)) / n,
        "majority_answer": majority_answer,
        "majority_baseline": majority_n / n,
        "balanced_accuracy": sum(recall.values()) / len(recall),
        "distinct_predictions": len(given),
        "constant": len(given) <= 1,
        "unparseable": sum(p is None for p in predicted),
        "top_predictions": [[p, c] for p, c in sorted(given.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
    }
    known = [c for c in chances if c is not None]
    out["uniform_baseline"] = sum(known) / len(known) if known and len(known) == n else None
    if len(counts) <= MAX_CONFUSION_CLASSES:
        table: dict[str, dict[str, int]] = {a: {} for a in sorted(counts)}
        for a, p in zip(answers, predicted):
            key = "unparseable" if p is None else p
            table[a][key] = table[a].get(key, 0) + 1
        out["confusion"] = table
    return out


def layer_mean(report: Mapping[str, Any], key: str) -> float:
    """The mean over layers of one per-layer value of an evaluation report (`kl`, `ratio`,
    `visual_share`); NaN without layers."""
    vals = [layer[key] for layer in report.get("layers", [])]
    return sum(vals) / len(vals) if vals else math.nan


def describe(d: Mapping[str, Any]) -> str:
    """One line: the accuracy with its baselines, and a constant answer said as such."""
    if not d.get("rows"):
        return "no rows"
    uniform = f", uniform guess {d['uniform_baseline']:.1%}" if d.get("uniform_baseline") is not None else ""
    line = (f"accuracy {d['accuracy']:.1%} (majority answer {d['majority_answer']!r} {d['majority_baseline']:.1%}{uniform}; "
            f"balanced {d['balanced_accuracy']:.1%}; {d['distinct_predictions']} distinct prediction(s))")
    if not d["distinct_predictions"]:
        line += " NO PARSEABLE ANSWER"
    elif d["constant"]:
        line += f" CONSTANT ANSWER: {d['top_predictions'][0][0]!r} on every parsed row"
    return line
