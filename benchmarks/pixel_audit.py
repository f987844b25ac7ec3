"""An independent pixel-level audit: does each rendered image agree with its answer?

Each checker reads only the row's PNG, question and answer, plus positions stored in the geometry
(where markers and labels are), and recomputes the answer from pixels, never from the generator's
own crossing/cell computations. Run from the repository root:

    python benchmarks/pixel_audit.py --n 500              # every task and level
    python benchmarks/pixel_audit.py --task tracing --level hard --n 50

It prints a markdown table (task, level, samples, disagreements) and exits 1 if any sample disagrees.
The test suite runs the same checkers on a few samples per level (tests/test_pixel_audit.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, Callable, Mapping

import numpy as np
from skimage.measure import label as connected_components
from skimage.morphology import dilation, disk

from linebench.render import PALETTE, Polyline, decode_png, rasterise
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec, get_task, task_names

Row = Mapping[str, Any]
Checker = Callable[[Row], "str | None"]  # None when the pixels agree, else what went wrong


def _pixel(point) -> tuple[int, int]:
    return int(point[1]), int(point[0])  # (row, col) of the pixel holding a canvas point


def _box_distance(box, point) -> float:
    x0, y0, x1, y1 = box
    return float(np.hypot(max(x0 - point[0], 0, point[0] - x1), max(y0 - point[1], 0, point[1] - y1)))


# --------------------------------------------------------------------------- tracing


def _nearest_label(geometry, point, texts):
    return min((lb for lb in geometry["labels"] if lb["text"] in texts), key=lambda lb: _box_distance(lb["box"], point))


def _tracing_end_from_mask(geometry, mask, start) -> str | None:
    comp = connected_components(mask, connectivity=2)
    cid = comp[_pixel(start["center"])]
    if cid == 0:
        return None
    ends = [m for m in geometry["markers"] if m["kind"] == "end" and comp[_pixel(m["center"])] == cid]
    if len(ends) != 1:
        return None
    numbers = {lb["text"] for lb in geometry["labels"] if lb["text"].isdigit()}
    return _nearest_label(geometry, ends[0]["center"], numbers)["text"]


def check_tracing(row: Row) -> str | None:
    g = json.loads(row["geometry"])
    letter = re.search(r"starting at ([A-Z])", row["question"]).group(1)
    letters = {lb["text"] for lb in g["labels"] if lb["text"].isalpha()}
    starts = [m for m in g["markers"] if m["kind"] == "start"]
    start = next(m for m in starts if _nearest_label(g, m["center"], letters)["text"] == letter)
    # 1. The curve leaving that start marker (found by position), drawn alone, reaches one end.
    curve = min(g["curves"], key=lambda c: np.hypot(*(np.array(c["points"][0]) - start["center"])))
    alone = rasterise(tuple(g["canvas"]), [Polyline(np.array(curve["points"]), (0, 0, 0), g["thickness_px"])])
    got = _tracing_end_from_mask(g, alone[..., 0] < 128, start)
    if got != row["answer"]:
        return f"the start marker's curve drawn alone ends at {got}, answer {row['answer']}"
    # 2. With distinct colours, follow the start marker's colour through the real picture.
    rgb = decode_png(row["image"]).astype(int)
    colour = rgb[_pixel(start["center"])]
    if len({c["colour"] for c in g["curves"]}) == len(g["curves"]):
        mask = np.abs(rgb - colour).max(axis=2) <= 40
        mask = dilation(mask, disk(g["thickness_px"] + 2))  # bridge the cuts other curves make
        got = _tracing_end_from_mask(g, mask, start)
        if got != row["answer"]:
            return f"following the start colour in the image ends at {got}, answer {row['answer']}"
    return None


# --------------------------------------------------------------------------- intersection


def _overlap_blobs(a: np.ndarray, b: np.ndarray) -> int:
    """Connected regions where two binary masks overlap."""
    return int(connected_components(a & b, connectivity=2).max())


def nearest_colour(rgb: np.ndarray, within: float = 40.0) -> np.ndarray:
    """Per pixel, the name of the nearest of the palette colours, white and black, if it is
    closer than `within` (Euclidean, 0..255 channels), else "" (anti-aliased blends)."""
    names = np.array(["white", "black", *PALETTE, ""])
    ref = np.array([(255, 255, 255), (0, 0, 0), *PALETTE.values()], dtype=np.int32)
    d = ((rgb[:, :, None, :].astype(np.int32) - ref[None, None]) ** 2).sum(-1)
    best = d.argmin(-1)
    best[np.take_along_axis(d, best[..., None], -1)[..., 0] > within**2] = len(ref)
    return names[best]


def check_intersection(row: Row) -> str | None:
    g = json.loads(row["geometry"])
    canvas, t = tuple(g["canvas"]), g["thickness_px"]
    m = re.search(r"do the (\w+) line and the (\w+) line", row["question"])
    named = [next(ln for ln in g["lines"] if ln["colour"] == m.group(i)) for i in (1, 2)] if m else []
    pairs = [tuple(named)] if m else [(a, b) for i, a in enumerate(g["lines"]) for b in g["lines"][i + 1 :]]
    # 1. Each line rasterised alone: count the blobs where two lines' pixels overlap.
    alone = {id(ln): rasterise(canvas, [Polyline(np.array(ln["points"]), (0, 0, 0), t)])[..., 0] < 128 for ln in g["lines"]}
    got = sum(_overlap_blobs(alone[id(a)], alone[id(b)]) for a, b in pairs)
    if str(got) != row["answer"]:
        return f"lines drawn alone overlap in {got} places, answer {row['answer']}"
    # 2. The lines the question names are the ones drawn in those colours: in the real picture,
    #    the pixels of each named colour lie on that line and cover most of it.
    if named:
        colour_of = nearest_colour(decode_png(row["image"]))
        for ln in named:
            own = alone[id(ln)]
            others = np.logical_or.reduce([alone[id(o)] for o in g["lines"] if o is not ln])
            seen = (colour_of == ln["colour"]) & ~dilation(others, disk(1))  # not where lines blend
            if (seen & ~dilation(own, disk(1))).any() or seen.sum() < 0.6 * (own & ~others).sum():
                return f"the {ln['colour']} pixels of the picture are not the {ln['colour']} line"
    return None


CHECKS: dict[str, Checker] = {"tracing": check_tracing, "intersection": check_intersection}


# --------------------------------------------------------------------------- driver


def audit(task: str, level: str, n: int, seed: int = 2024) -> list[tuple[str, str]]:
    """(row id, problem) for every disagreeing sample among `n` fresh rows of one task and level."""
    maker = RowMaker(RunSpec(task, split="test", n=n, seed=seed, params=ParamSpec(difficulty=level), maps=()))
    check = CHECKS[task]
    bad = []
    for i in range(n):
        row = maker(i)
        problem = check(row)
        if problem:
            bad.append((row["id"], problem))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(CHECKS), action="append", help="task(s) to audit (default: all)")
    ap.add_argument("--level", action="append", help="level(s) to audit (default: every level of the task)")
    ap.add_argument("--n", type=int, default=500, help="samples per task and level")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    failed = False
    print("| task | level | samples | disagreements |\n|---|---|---:|---:|")
    for task in args.task or [t for t in task_names() if t in CHECKS]:
        for level in args.level or list(get_task(task).levels):
            bad = audit(task, level, args.n, args.seed)
            print(f"| {task} | {level} | {args.n} | {len(bad)} |", flush=True)
            for rid, problem in bad[:10]:
                print(f"  {rid}: {problem}", file=sys.stderr)
            failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
