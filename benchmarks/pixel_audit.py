"""An independent pixel-level audit: does each rendered image agree with its answer?

Each checker reads only the row's PNG, question and answer, plus positions stored in the geometry
(where markers and labels are), and recomputes the answer from pixels, never from the generator's
own crossing/cell computations. Run from the repository root:

    python benchmarks/pixel_audit.py --n 500              # every task and level
    python benchmarks/pixel_audit.py --task tracing --level hard --n 50

It prints a markdown table (task, level, samples, disagreements) and exits 1 if any sample disagrees.
The test suite runs the same checkers on a few samples per level (tests/test_tracing.py, test_intersection.py, test_grid_patch.py).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any, Callable, Mapping

import cv2
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


# --------------------------------------------------------------------------- grid patch
# Shape templates written independently of the generator (textbook shapes at unit scale). The
# checker fits every template to a marker's pixels and keeps the best, so a marker's shape comes
# from its pixels alone; its cell comes from its pixel centroid and the grid's edges.


def _gp_regular(k: int, radii, phase_deg: float) -> np.ndarray:
    ang = np.radians(phase_deg + 360.0 * np.arange(k) / k)
    r = np.resize(np.asarray(radii, dtype=float), k)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _gp_heart() -> np.ndarray:
    """A geometric heart: two touching round lobes (radius 1/2, centres (+-1/2, -2/5)) and the
    lines tangent to them from the point (0, 1); y down."""
    tip, r = np.array([0.0, 1.0]), 0.5
    pts = [tip]
    for side, stop in ((-1, 2 * math.pi), (1, None)):
        c = np.array([side * 0.5, -0.4])
        d = tip - c
        turn = math.acos(r / math.hypot(*d))
        if side < 0:  # from the lower-left tangent point over the top to where the lobes touch
            ang = np.linspace(math.atan2(d[1], d[0]) + turn, stop, 16)
        else:  # from where the lobes touch over the top to the lower-right tangent point
            ang = np.linspace(math.pi, 2 * math.pi + math.atan2(d[1], d[0]) - turn, 16)[1:]
        pts += list(c + r * np.stack([np.cos(ang), np.sin(ang)], axis=1))
    return np.array(pts)


_A = 1.0 / 3.0  # a plus sign whose arms are a third of its span wide
_GP_TEMPLATES: dict[str, np.ndarray | None] = {
    "circle": None,  # the unit disc
    "square": np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
    "triangle": _gp_regular(3, [1.0], -90.0),
    "diamond": _gp_regular(4, [1.0], -90.0),
    "star": _gp_regular(10, [1.0, 0.382], -90.0),  # a regular pentagram's outline
    "cross": np.array(
        [[-_A, -1], [_A, -1], [_A, -_A], [1, -_A], [1, _A], [_A, _A], [_A, 1], [-_A, 1], [-_A, _A], [-1, _A], [-1, -_A], [-_A, -_A]]
    ),
    "heart": _gp_heart(),
}
def _gp_moments(poly: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Area and centroid of a unit template, by fine sampling."""
    if poly is None:
        return math.pi, np.zeros(2)
    s = np.linspace(-1.2, 1.2, 961)
    px, py = np.meshgrid(s, s)
    inside = np.zeros(px.shape, dtype=bool)
    for (a, b), (c, d) in zip(poly, np.roll(poly, -1, axis=0)):  # even-odd rule
        if b != d:
            inside ^= ((b > py) != (d > py)) & (px < a + (py - b) * (c - a) / (d - b))
    return float(inside.sum() * (s[1] - s[0]) ** 2), np.array([px[inside].mean(), py[inside].mean()])


_GP_MOMENTS = {name: _gp_moments(poly) for name, poly in _GP_TEMPLATES.items()}


def _gp_render(name: str, centroid: np.ndarray, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Coverage [h, w] of a template drawn anti-aliased (OpenCV, 1/16 px) with its centroid at
    `centroid` (crop coordinates, pixel centres at half-integers)."""
    img = np.zeros(shape, dtype=np.uint8)
    poly, (_, c0) = _GP_TEMPLATES[name], _GP_MOMENTS[name]
    if poly is None:
        c = np.round((centroid - 0.5) * 16).astype(int)
        cv2.circle(img, (int(c[0]), int(c[1])), int(round(scale * 16)), 255, -1, cv2.LINE_AA, 4)
    else:
        pts = np.round((centroid + scale * (poly - c0) - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], 255, cv2.LINE_AA, 4)
    return img / 255.0


def _gp_classify(alpha: np.ndarray) -> str:
    """The template that best explains a marker's coverage crop: centroids aligned, scale fitted,
    least absolute difference of coverage."""
    h, w = alpha.shape
    total = float(alpha.sum())
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    centroid = np.array([(alpha * xx).sum(), (alpha * yy).sum()]) / total
    best, best_err = "", np.inf
    for name in _GP_TEMPLATES:
        s0 = math.sqrt(total / _GP_MOMENTS[name][0])  # anti-aliasing inflates the ink: search mostly below
        for f in (0.76, 0.8, 0.84, 0.88, 0.92, 0.96, 1.0, 1.04):
            err = float(np.abs(alpha - _gp_render(name, centroid, s0 * f, (h, w))).sum())
            if err < best_err:
                best, best_err = name, err
    return best


def check_grid_patch(row: Row) -> str | None:
    g = json.loads(row["geometry"])
    colour, shape = re.search(r"contains the (\w+) (\w+)\?", row["question"]).groups()
    rgb = decode_png(row["image"]).astype(np.float64)
    # How much of the named colour each pixel holds, blended over white: ink = a * (255 - colour);
    # pixels of any other colour (grey lines, black labels, other markers) fit no such a.
    ink, ref = 255.0 - rgb, 255.0 - np.array(PALETTE[colour], dtype=np.float64)
    a = (ink @ ref) / float(ref @ ref)
    alpha = np.where(np.abs(ink - a[..., None] * ref).max(axis=-1) <= 12.0, np.clip(a, 0.0, 1.0), 0.0)
    comps = connected_components(alpha > 0.5, connectivity=2)
    found = []
    for cid in range(1, int(comps.max()) + 1):
        rows, cols = np.nonzero(comps == cid)
        r0, r1, c0, c1 = max(rows.min() - 2, 0), rows.max() + 3, max(cols.min() - 2, 0), cols.max() + 3
        own = dilation(comps[r0:r1, c0:c1] == cid, np.ones((3, 3), dtype=bool))  # with its anti-aliased rim
        crop = alpha[r0:r1, c0:c1] * own
        if _gp_classify(crop) == shape:
            yy, xx = np.mgrid[r0:r1, c0:c1] + 0.5
            found.append(((crop * xx).sum() / crop.sum(), (crop * yy).sum() / crop.sum()))
    if len(found) != 1:
        return f"{len(found)} {colour} {shape}s in the picture"
    x, y = found[0]
    xe, ye = np.asarray(g["grid"]["x_edges"]), np.asarray(g["grid"]["y_edges"])
    if not (xe[0] < x < xe[-1] and ye[0] < y < ye[-1]):
        return f"the {colour} {shape} is outside the grid"
    got = f"({int(np.searchsorted(ye, y))}, {int(np.searchsorted(xe, x))})"
    if got != row["answer"]:
        return f"the {colour} {shape} is in cell {got}, answer {row['answer']}"
    return None


CHECKS: dict[str, Checker] = {"tracing": check_tracing, "intersection": check_intersection, "grid_patch": check_grid_patch}


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
