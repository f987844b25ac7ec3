"""Shortcut baselines: can a predictor that does *not* do the task beat chance from the picture?

The text-only baseline (`text_baseline.py`) shows the question gives nothing away. A benchmark can
also leak through the picture: a feature a model reads without doing the task (how many crossings
the whole picture has, where the end markers sit, where the distractors are) that predicts the
answer. This script samples scenes exactly as the official releases do (`splits/<task>.toml`: seed,
canvas, knobs; the train split's rows, whose levels cycle easy/medium/hard, and the ood split), reads
such features off each scene's exact geometry (what the picture shows), and fits predictors on them
with k-fold cross-validation (each row is scored by a predictor fitted on the other folds):

- `majority`: for each feature on its own, the most frequent answer per feature value (continuous
  features in 8 quantile bins); the best feature is reported, next to the best feature's score
  with the answers shuffled (the luck of picking the best of many features).
- `tree`: a decision tree (depth 6, >= 20 rows per leaf) on all the features of the task.
- `boosting`: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier, depth 3).
- `rules`: hand-written heuristics (tracing: the end nearest in height to the start; grid patch: a
  uniform guess among the cells without a distractor).

Chance is the expected accuracy of a uniform guess among the answers a sample allows (tracing:
1 / curves; intersection: 1 / size of the level's `count` range; grid patch: 1 / grid^2). Every
predictor must stay within 3 points of chance on every task and level; the script exits 1 otherwise.

A second table lists, for context and without a limit, predictors that do *part* of the task
(they need the named line found, the queried curve followed, or the markers found); see
docs/tasks.md ("What a model can read without doing the task").

    pip install -e '.[bench]'
    python benchmarks/shortcut_baselines.py --n 4000          # rows per task and level (~5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np

from linebench.release import load_release
from linebench.samples import RowMaker, row_seed
from linebench.tasks import OOD

TOLERANCE = 3.0  # percentage points
CELL_SPLIT = 100  # grid patch answers as row * CELL_SPLIT + column (both from 0)
TASKS = ("intersection", "tracing", "grid_patch")
PALETTE_ORDER = None  # filled lazily: colour name -> index


# --------------------------------------------------------------------------- scenes


def _scene(index: int, task: str, split: str) -> dict:
    """Geometry, answer class and chance of one official-release row (no picture: features come from
    the geometry the picture is drawn from)."""
    maker = _makers(task, split)
    level = maker.level(index)
    seed = row_seed(maker.spec.seed, task, split, index)
    scene = maker.task.sample(np.random.default_rng(seed), maker.params[level])
    return {"level": level, "geometry": scene.geometry, "answer": scene.answer, "knobs": scene.knobs,
            "params": maker.params[level]}


_MAKERS: dict = {}


def _makers(task: str, split: str) -> RowMaker:
    key = (task, split)
    if key not in _MAKERS:
        spec = next(s for s in load_release(task).run_specs() if s.split == split)
        _MAKERS[key] = RowMaker(spec)
    return _MAKERS[key]


def scenes(task: str, n: int, workers: int) -> list[dict]:
    """n rows per level: the first 3n rows of the train split (levels in turn) and n of ood."""
    jobs = [("train", range(3 * n)), ("ood", range(n))]
    out = []
    with ProcessPoolExecutor(workers) as pool:
        for split, idx in jobs:
            out += list(pool.map(partial(_scene, task=task, split=split), idx, chunksize=64))
    return out


# --------------------------------------------------------------------------- features


def _colour_index(name: str) -> int:
    global PALETTE_ORDER
    if PALETTE_ORDER is None:
        from linebench.render import PALETTE

        PALETTE_ORDER = {c: i for i, c in enumerate(PALETTE)}
        PALETTE_ORDER["black"] = len(PALETTE_ORDER)
    return PALETTE_ORDER[name]


def _turning_deg(pts: np.ndarray) -> float:
    d = np.diff(pts, axis=0)
    ang = np.arctan2(d[:, 1], d[:, 0])
    turn = np.abs((np.diff(ang) + np.pi) % (2 * np.pi) - np.pi)
    return float(np.degrees(turn.sum()))


def _bends(pts: np.ndarray) -> int:
    """Vertices where a straight polyline visibly changes direction (> 2 degrees)."""
    d = np.diff(pts, axis=0)
    ang = np.arctan2(d[:, 1], d[:, 0])
    turn = np.abs((np.diff(ang) + np.pi) % (2 * np.pi) - np.pi)
    return int((np.degrees(turn) > 2.0).sum())


def _padded(values, size: int, fill: float = -1.0) -> list[float]:
    values = list(values)[:size]
    return values + [fill] * (size - len(values))


def _line_stats(pts: np.ndarray) -> tuple[float, float, float]:
    length = float(np.hypot(*np.diff(pts, axis=0).T).sum())
    return length, float(_bends(pts)), _turning_deg(pts)


def intersection_features(s: dict) -> tuple[dict, dict, int, float]:
    """Features read from the picture without counting the named pair's crossings; and, separately,
    features that need part of the task (the named lines found and followed)."""
    g = s["geometry"]
    lines = [np.asarray(ln["points"]) for ln in g["lines"]]
    a, b = g["query"]["lines"]
    stats = [_line_stats(p) for p in lines]
    n = len(lines)
    f = {
        "lines": n,
        "total_crossings": len(g["crossings"]),
        "thickness": g["thickness_px"],
        "rotation": s["knobs"]["rotation_deg"] % 180.0,
        "colour_a": _colour_index(g["lines"][a]["colour"]),
        "colour_b": _colour_index(g["lines"][b]["colour"]),
        "mean_angle": float(np.mean([c["angle_deg"] for c in g["crossings"]])) if g["crossings"] else -1.0,
    }
    for name, col in (("length", 0), ("bends", 1), ("turning", 2)):
        vals = sorted((st[col] for st in stats), reverse=True)
        for i, v in enumerate(_padded(vals, 7)):
            f[f"{name}_{i}"] = v
        f[f"{name}_total"] = float(sum(st[col] for st in stats))
        # the named lines' own shape (found by colour, but never followed through a crossing)
        f[f"{name}_a"], f[f"{name}_b"] = stats[a][col], stats[b][col]
    per_line = np.zeros(n)
    for c in g["crossings"]:
        per_line[c["lines"]] += 1
    partial = {
        "crossings_on_a": per_line[a],
        "crossings_on_b": per_line[b],
        "total_crossings": len(g["crossings"]),
        **{f"crossings_line_{i}": v for i, v in enumerate(_padded(sorted(per_line, reverse=True), 7))},
    }
    lo, hi = s["params"]["knobs"]["count"] if isinstance(s["params"]["knobs"]["count"], list) else [s["params"]["knobs"]["count"]] * 2
    return f, partial, int(s["answer"]), 1.0 / (hi - lo + 1)


def tracing_features(s: dict) -> tuple[dict, dict, int, float]:
    """The answer class is the rank (top to bottom) of the queried curve's end; predicting the rank
    is predicting the answer, since the number beside each end is in the picture."""
    g = s["geometry"]
    n = len(g["curves"])
    q = g["query"]["curve"]
    starts = {m["curve"]: m["center"][1] for m in g["markers"] if m["kind"] == "start"}
    ends = {m["curve"]: m["center"][1] for m in g["markers"] if m["kind"] == "end"}
    end_y = sorted(ends.values())
    y0 = starts[q]
    rank = end_y.index(ends[q])
    f = {
        "curves": n,
        "crossings": len(g["crossings"]),
        "thickness": g["thickness_px"],
        "start_rank": q,  # A is the top start: the letter is the rank
        "start_y": y0,
        "start_rank_from_bottom": n - 1 - q,
        "nearest_end_rank": int(np.argmin(np.abs(np.asarray(end_y) - y0))),
        **{f"end_y_{i}": v for i, v in enumerate(_padded(end_y, 8))},
        **{f"end_dy_{i}": v for i, v in enumerate(_padded([e - y0 for e in end_y], 8, fill=-999.0))},
        **{f"start_y_{i}": v for i, v in enumerate(_padded(sorted(starts.values()), 8))},
    }
    qc = sum(q in c["curves"] for c in g["crossings"])
    partial = {"start_rank": q, "curves": n, "query_crossings": qc, "query_crossings_parity": qc % 2,
               "query_length": s["knobs"]["query_length_px"]}
    return f, partial, rank, 1.0 / n


def grid_patch_features(s: dict) -> tuple[dict, dict, int, float]:
    g = s["geometry"]
    n = g["grid"]["n"]
    q = g["query"]
    cells = np.array([m["cell"] for i, m in enumerate(g["markers"]) if i != q["marker"]]).reshape(-1, 2) - 1
    f = {
        "grid": n,
        "markers": len(g["markers"]),
        "shape": ["circle", "square", "triangle", "diamond", "star", "cross", "heart"].index(q["shape"]),
        "colour": _colour_index(q["colour"]),
        "distractor_row_mean": float(cells[:, 0].mean()) if len(cells) else -1.0,
        "distractor_col_mean": float(cells[:, 1].mean()) if len(cells) else -1.0,
        "distractor_row_std": float(cells[:, 0].std()) if len(cells) else -1.0,
        "distractor_col_std": float(cells[:, 1].std()) if len(cells) else -1.0,
        "labels": int(bool(g["labels"])),
    }
    # emptiest row and column (where no distractor is): a predictor could aim there
    occ = np.zeros((n, n), dtype=bool)
    occ[cells[:, 0], cells[:, 1]] = True
    f["emptiest_row"] = int(np.argmin(occ.sum(axis=1)))
    f["emptiest_col"] = int(np.argmin(occ.sum(axis=0)))
    r, c = q["cell"]
    free = n * n - len(cells)
    partial = {"grid": n, "markers": len(g["markers"])}
    s["_free_cells"] = free
    return f, partial, (r - 1) * CELL_SPLIT + (c - 1), 1.0 / (n * n)


# Features that are the answer by design, left out: with two lines (easy intersection) every
# crossing in the picture is one of the pair's, so the total and the crossings' mean angle (-1:
# none) read the answer directly. See docs/tasks.md.
BY_DESIGN = {("intersection", "easy", "total_crossings"), ("intersection", "easy", "mean_angle")}

FEATURES = {"intersection": intersection_features, "tracing": tracing_features, "grid_patch": grid_patch_features}


# --------------------------------------------------------------------------- predictors


def _folds(m: int, k: int, seed: int = 0) -> list[np.ndarray]:
    idx = np.random.default_rng(seed).permutation(m)
    return [idx[i::k] for i in range(k)]


def majority_accuracy(x: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> float:
    """Most frequent answer per value of one feature (8 quantile bins if it has many values)."""
    vals = np.unique(x)
    if len(vals) > 16:
        edges = np.unique(np.quantile(x, np.linspace(0, 1, 9)[1:-1]))
        x = np.searchsorted(edges, x, side="right")
    hits = 0
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        table: dict = {}
        for v in np.unique(x[train]):
            ys = y[train][x[train] == v]
            u, c = np.unique(ys, return_counts=True)
            table[v] = u[np.argmax(c)]
        u, c = np.unique(y[train], return_counts=True)
        fallback = u[np.argmax(c)]
        pred = np.array([table.get(v, fallback) for v in x[test]])
        hits += int((pred == y[test]).sum())
    return hits / len(y)


def _fit_predict(make, x_train, y_train, x_test) -> np.ndarray:
    if len(np.unique(y_train)) < 2:
        return np.full(len(x_test), y_train[0])
    return make().fit(x_train, y_train).predict(x_test)


def model_accuracy(make, x: np.ndarray, y: np.ndarray, folds: list[np.ndarray], split: int = 0) -> float:
    """Cross-validated accuracy of `make()` on (x, y). With `split`, y = row * split + col is
    predicted as its row and its column by two models (grid patch: hundreds of cells, a few dozen
    rows and columns), and a row counts when both are right."""
    hits = 0
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        if split:
            pred = _fit_predict(make, x[train], y[train] // split, x[test]) * split + _fit_predict(make, x[train], y[train] % split, x[test])
        else:
            pred = _fit_predict(make, x[train], y[train], x[test])
        hits += int((pred == y[test]).sum())
    return hits / len(y)


def tree():
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=6, min_samples_leaf=20, random_state=0)


def boosting():
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_depth=3, max_iter=60, learning_rate=0.1, random_state=0)


def evaluate(task: str, rows: list[dict], folds_k: int, heavy: bool) -> list[dict]:
    """One result dict per level."""
    out = []
    levels = sorted({r["level"] for r in rows}, key=["easy", "medium", "hard", OOD].index)
    for level in levels:
        sel = [r for r in rows if r["level"] == level]
        feats, parts, ys, chances = zip(*(FEATURES[task](r) for r in sel))
        names = [k for k in feats[0] if (task, level, k) not in BY_DESIGN]
        x = np.array([[f[k] for k in names] for f in feats], dtype=np.float64)
        y = np.array(ys)
        folds = _folds(len(y), folds_k)
        chance = 100 * float(np.mean(chances))
        res = {"task": task, "level": level, "rows": len(y), "chance": chance}
        maj = {k: 100 * majority_accuracy(x[:, i], y, folds) for i, k in enumerate(names)}
        best = max(maj, key=maj.get)
        res["majority"], res["majority_feature"] = maj[best], best
        # the same best-of-all-features statistic with the answers shuffled: what picking the best
        # of many features scores by luck alone
        shuffled = np.random.default_rng(1).permutation(y)
        res["majority_null"] = max(100 * majority_accuracy(x[:, i], shuffled, folds) for i in range(len(names)))
        split = CELL_SPLIT if task == "grid_patch" else 0
        res["tree"] = 100 * model_accuracy(tree, x, y, folds, split)
        res["boosting"] = 100 * model_accuracy(boosting, x, y, folds, split) if heavy else float("nan")
        rules = {}
        if task == "tracing":
            rules["nearest end in height"] = 100 * float(np.mean(x[:, names.index("nearest_end_rank")] == y))
        if task == "grid_patch":
            # expected accuracy of a uniform guess among the cells that hold no distractor
            rules["a cell without a distractor"] = 100 * float(np.mean([1.0 / r["_free_cells"] for r in sel]))
        res["rules"] = rules
        worst = max([res["majority"], res["tree"], *rules.values()] + ([res["boosting"]] if heavy else []), key=lambda v: abs(v - chance))
        res["worst_gap"] = worst - chance
        # context: predictors that do part of the task
        pnames = list(parts[0])
        px = np.array([[p[k] for k in pnames] for p in parts], dtype=np.float64)
        ctx = {"tree (partial-task features)": 100 * model_accuracy(tree, px, y, folds, split)}
        if task == "tracing":
            # the parity of the queried curve's crossings fixes the parity of its end rank (see docs)
            ctx["start rank + crossing parity (majority)"] = 100 * majority_accuracy(
                px[:, pnames.index("start_rank")] * 2 + px[:, pnames.index("query_crossings_parity")] + 100 * px[:, pnames.index("curves")], y, folds
            )
        if task == "grid_patch":
            ctx["any marker's cell (uniform)"] = 100 * float(np.mean([1.0 / f["markers"] for f in feats]))
        if task == "intersection":
            ctx["crossings on the named lines (majority)"] = 100 * majority_accuracy(
                px[:, pnames.index("crossings_on_a")] * 100 + px[:, pnames.index("crossings_on_b")], y, folds
            )
        res["context"] = ctx
        out.append(res)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="rows per task and level")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-boosting", action="store_true", help="skip the gradient-boosted trees (the slowest predictor)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = []
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        rows = scenes(task, args.n, args.workers)
        t1 = time.perf_counter()
        results += evaluate(task, rows, args.folds, not args.no_boosting)
        print(f"{task}: {len(rows)} scenes in {t1 - t0:.0f} s, predictors in {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
    bad = [r for r in results if abs(r["worst_gap"]) > TOLERANCE]
    print("| task | level | rows | chance | majority per feature value: best feature (shuffled answers) | tree | boosting | rules | worst − chance |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        rules = "; ".join(f"{k}: {v:.1f}%" for k, v in r["rules"].items()) or "–"
        boost = "–" if math.isnan(r["boosting"]) else f"{r['boosting']:.1f}%"
        print(
            f"| {r['task']} | {r['level']} | {r['rows']} | {r['chance']:.1f}% | {r['majority']:.1f}% `{r['majority_feature']}` "
            f"({r['majority_null']:.1f}%) | {r['tree']:.1f}% | {boost} | {rules} | {r['worst_gap']:+.1f} |"
        )
    print()
    print("Context (predictors that do part of the task; no limit):")
    print()
    print("| task | level | chance | predictor | accuracy |")
    print("|---|---|---:|---|---:|")
    for r in results:
        for k, v in r["context"].items():
            print(f"| {r['task']} | {r['level']} | {r['chance']:.1f}% | {k} | {v:.1f}% |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if bad:
        print(f"\nFAIL: {len(bad)} task/level cell(s) more than {TOLERANCE:g} points from chance", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
