"""Grid patch: name the cell of a G x G grid that holds the marker of a given shape and colour.

Layout: a square grid of square cells with integer sides, centred on the canvas; grid lines sit on
pixel centres (half-integer edges for odd `line_px`), rows numbered on the left and columns on top
when `labels` is on. Every marker sits in its own cell: the target in a cell drawn uniformly over
all G x G cells, distractors in distinct other cells drawn uniformly. A distractor is *confusable*
(with probability `confusable`) when it repeats the target's shape in another colour or the
target's colour in another shape; otherwise it differs in both. The target is the only marker
with its shape and colour, by construction and by the audit.

Markers are unrotated polygons (a circle is a disc) whose bounding box's longer side is
`marker_size` x the cell side; they stray from the cell centre by up to `jitter` x the room left
once `min_border_gap_px` is kept to every cell border, so no marker ever reaches a grid line.
Vertices are snapped to the 1/16 px drawing lattice: the stored polygons are what is drawn.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from linebench import detmath as dm
from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.render import PALETTE, Disc, Polygon, Polyline, Primitive, Text, text_box, text_pad, text_size
from linebench.tasks import Column, Knob, Scene, bounds_of, draw_int, first_accepted

LINE_RGB = (110, 110, 110)  # grid lines: neutral grey, unlike every palette colour
LABEL_RGB = (0, 0, 0)
FONT_THICKNESS = 1
FONT_SCALES = (0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3)  # largest that fits the cells is used
SNAP_SLACK = 1.0 / geo.SUBPIXEL  # snapping moves the centre and each vertex by <= 1/32 px each
COLOURS = tuple(PALETTE)
# OpenCV's anti-aliasing inks visibly (>= 8/255) up to 1 px beyond a line's nominal width and up to
# 2 px (pixel rounding included) beyond a filled polygon's bounding box; a marker's box keeps
# line_px/2 + this from the grid lines, so no pixel carries visible ink from both (measured).
MIN_CLEARANCE_PX = 3.0


def _regular(k: int, radii: tuple[float, ...], phase_deg: float) -> np.ndarray:
    ang = np.radians(phase_deg + 360.0 * np.arange(k) / k)
    r = np.resize(np.asarray(radii, dtype=np.float64), k)
    s, c = dm.sincos(ang)
    return np.stack([r * c, r * s], axis=1)


def _normalised(v: np.ndarray) -> np.ndarray:
    """Centre the bounding box on the origin and scale its longer side to 2."""
    lo, hi = v.min(axis=0), v.max(axis=0)
    return (v - (lo + hi) / 2.0) * (2.0 / float((hi - lo).max()))


def _heart(k: int) -> np.ndarray:
    """The classic parametric heart curve (notch up, point down), k vertices."""
    t = 2.0 * np.pi * np.arange(k) / k
    s = dm.sin(t)
    x = 16.0 * (s * s * s)  # (not s ** 3: numpy's power of 3 is libm's pow)
    y = -(13.0 * dm.cos(t) - 5.0 * dm.cos(2 * t) - 2.0 * dm.cos(3 * t) - dm.cos(4 * t))
    return np.stack([x, y], axis=1)


_ARM = 0.34  # half-width of the cross's arms (unit shape)
# Unit shapes (y down): bounding box centred on the origin, longer side 2. None = a disc of radius 1.
SHAPES: dict[str, np.ndarray | None] = {
    "circle": None,
    "square": np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
    "triangle": _normalised(_regular(3, (1.0,), -90.0)),
    "diamond": np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
    "star": _normalised(_regular(10, (1.0, 0.382), -90.0)),  # a regular pentagram outline
    "cross": np.array(
        [[-_ARM, -1], [_ARM, -1], [_ARM, -_ARM], [1, -_ARM], [1, _ARM], [_ARM, _ARM],
         [_ARM, 1], [-_ARM, 1], [-_ARM, _ARM], [-1, _ARM], [-1, -_ARM], [-_ARM, -_ARM]],
        dtype=np.float64,
    ),
    "heart": _normalised(_heart(32)),
}
SHAPE_NAMES = tuple(SHAPES)
# Half-extents (x, y) of each unit shape's bounding box.
HALF_BOX = np.array([[1.0, 1.0] if v is None else v.max(axis=0) for v in SHAPES.values()])


@dataclass(frozen=True)
class Layout:
    """Where the grid and its labels go for one (canvas, G, knobs); no randomness."""

    n: int
    cell: int  # cell side, px
    x0: float  # first vertical edge (grid-line centre)
    y0: float  # first horizontal edge
    scale: float  # label font scale (0 without labels)
    labels: tuple[tuple[str, str, int, tuple[int, int], tuple[float, float, float, float]], ...]  # (axis, text, index, origin, box)

    @property
    def x_edges(self) -> np.ndarray:
        return self.x0 + self.cell * np.arange(self.n + 1, dtype=np.float64)

    @property
    def y_edges(self) -> np.ndarray:
        return self.y0 + self.cell * np.arange(self.n + 1, dtype=np.float64)


@functools.lru_cache(maxsize=512)
def _layout(w: int, h: int, n: int, labels: bool, line_px: int, border: float, gap: float) -> Layout | str:
    """The grid layout, or why there is none."""
    half = line_px / 2.0
    pad = text_pad(FONT_THICKNESS)  # text_box adds this on every side of the strokes
    for scale in FONT_SCALES if labels else (0.0,):
        if labels:
            metrics = [text_size(str(i), scale, FONT_THICKNESS) for i in range(1, n + 1)]
            lab_w = max(m[0] for m in metrics) + 2 * pad
            lab_h = max(m[1] + m[2] for m in metrics) + 2 * pad
            left, top = border + lab_w + gap, border + lab_h + gap
        else:
            lab_w = lab_h = 0.0
            left = top = border
        avail_w, avail_h = w - left - border, h - top - border
        # The outer edges carry half a line each; 1 px of slack for putting edges on pixel centres.
        cell = int(math.floor((min(avail_w, avail_h) - line_px - 1.0) / n))
        if cell < 1:
            return f"canvas {w}x{h} has no room for a {n}x{n} grid"
        if labels and (lab_w + gap > cell or lab_h + gap > cell):
            continue  # labels of neighbouring rows/columns would touch: try a smaller font
        size = n * cell
        # Centre the grid in the free area; edges on pixel centres (odd lines) or pixel borders (even).
        ex = left + half + (avail_w - line_px - size) / 2.0
        ey = top + half + (avail_h - line_px - size) / 2.0
        off = 0.5 if line_px % 2 else 0.0
        x0 = math.ceil(ex - off) + off
        y0 = math.ceil(ey - off) + off
        out = []
        if labels:
            for i in range(n):
                text = str(i + 1)
                tw, th, td = text_size(text, scale, FONT_THICKNESS)
                centre = y0 + (i + 0.5) * cell  # row label: right-aligned left of the grid
                org = (int(math.floor(x0 - half - gap - pad - tw - 0.5)), int(round(centre - 0.5 + th / 2.0)))
                out.append(("row", text, i + 1, org, text_box(text, org, scale, FONT_THICKNESS)))
                centre = x0 + (i + 0.5) * cell  # column label: centred above the grid
                org = (int(round(centre - 0.5 - tw / 2.0)), int(math.floor(y0 - half - gap - td - pad - 0.5)))
                out.append(("col", text, i + 1, org, text_box(text, org, scale, FONT_THICKNESS)))
            if min(min(b[4][0], b[4][1]) for b in out) < 0 or max(b[4][2] for b in out) > w or max(b[4][3] for b in out) > h:
                continue  # pragma: no cover - the margins above leave room
        return Layout(n, cell, float(x0), float(y0), scale, tuple(out))
    return f"row and column labels up to {n} do not fit in the cells of a {n}x{n} grid on a {w}x{h} canvas"


class GridPatchTask:
    name = "grid_patch"
    version = "1"
    description = "Name the grid cell that holds the marker of a given shape and colour."
    answer_kind = "cell"
    target_description = "the queried marker's exact shape"
    question_template = (
        "The picture shows a {grid} x {grid} grid. Which cell contains the {colour} {shape}? "
        "Answer as (row, column), counting from 1 at the top left."
    )

    knobs = (
        Knob("grid", int, [4, 18], "cells per side (the grid is grid x grid)", (2, 64)),
        Knob("distractors", int, [2, 15], "markers besides the target, each in its own cell", (0, 4095)),
        Knob("confusable", float, [0.0, 1.0], "share of distractors that repeat the target's shape (other colour) or its colour (other shape); the rest differ in both", (0.0, 1.0)),
        Knob("marker_size", float, [0.45, 0.65], "marker extent (longer side of its bounding box) as a fraction of the cell side", (0.05, 1.0)),
        Knob("jitter", float, [0.0, 1.0], "how far markers stray from their cell centre, as a fraction of the room the border gap leaves", (0.0, 1.0)),
        Knob("grid_lines", bool, True, "draw the lines between cells (the outer frame is always drawn)"),
        Knob("labels", bool, True, "number the rows (left) and the columns (top)"),
        Knob("line_px", int, 1, "grid line thickness", (1, 4)),
        Knob("min_border_gap_px", float, 3.5, "min gap from a marker's bounding box to its cell's border lines (at least line_px/2 + 3)", (0.0, 100.0), audit=True),
        Knob("min_marker_px", float, 9.0, "smallest marker extent allowed (below ~9 px a star's points blur together)", (1.0, 1000.0), audit=True),
        Knob("border_px", float, 4.0, "margin between the canvas edge and the grid or its labels", (0.0, 200.0), audit=True),
        Knob("label_gap_px", float, 3.0, "gap between labels, and between labels and the grid", (0.0, 50.0), audit=True),
        Knob("max_attempts", int, 100, "scenes drawn per sample before giving up", (1, 10**6), audit=True),
    )
    columns = (
        Column("grid", int, "cells per side"),
        Column("distractors", int, "markers besides the target"),
        Column("shape_twins", int, "distractors with the target's shape (in another colour)"),
        Column("colour_twins", int, "distractors with the target's colour (another shape)"),
        Column("confusable", float, "share of confusable distractors drawn for the scene"),
        Column("marker_size", float, "marker extent as a fraction of the cell side"),
        Column("marker_px", float, "marker extent in px"),
        Column("jitter", float, "jitter drawn for the scene (fraction of each marker's room)"),
        Column("grid_lines", bool, "lines between cells drawn"),
        Column("labels", bool, "row and column numbers drawn"),
        Column("line_px", int, "grid line thickness"),
        Column("target_row", int, "row of the target (1 = top)"),
        Column("target_col", int, "column of the target (1 = left)"),
    )
    levels = {
        "easy": {"grid": [4, 6], "distractors": [2, 6], "confusable": 0.0, "marker_size": [0.55, 0.7], "jitter": [0.0, 0.5], "grid_lines": True, "labels": True},
        "medium": {"grid": [7, 11], "distractors": [6, 16], "confusable": [0.3, 0.6], "marker_size": [0.45, 0.6], "jitter": [0.0, 1.0], "grid_lines": True, "labels": True},
        "hard": {"grid": [12, 18], "distractors": [16, 40], "confusable": [0.6, 1.0], "marker_size": [0.4, 0.55], "jitter": [0.5, 1.0], "grid_lines": True, "labels": False},
        "ood": {"grid": [20, 24], "distractors": [48, 96], "confusable": 1.0, "marker_size": [0.5, 0.55], "jitter": 1.0, "grid_lines": True, "labels": False},
    }

    # ------------------------------------------------------------------ layout

    @staticmethod
    def _layout(params: Mapping[str, Any], n: int) -> Layout | str:
        k = params["knobs"]
        w, h = params["canvas"]
        return _layout(int(w), int(h), n, bool(k["labels"]), int(k["line_px"]), float(k["border_px"]), float(k["label_gap_px"]))

    def check(self, params: Mapping[str, Any]) -> None:
        k = params["knobs"]
        g_lo, g_hi = bounds_of(k["grid"])
        d_hi = bounds_of(k["distractors"])[1]
        s_lo, s_hi = bounds_of(k["marker_size"])
        gap, line_px = float(k["min_border_gap_px"]), int(k["line_px"])
        if gap < line_px / 2.0 + MIN_CLEARANCE_PX:
            raise UsageError(
                f"min_border_gap_px={gap:g} is too small for {line_px} px grid lines: it must be at least "
                f"line_px/2 + {MIN_CLEARANCE_PX:g} = {line_px / 2.0 + MIN_CLEARANCE_PX:g} px (anti-aliasing inks up to 1 px "
                "beyond a line and 2 px beyond a marker's box)"
            )
        if d_hi > g_lo * g_lo - 1:
            raise UsageError(
                f"a {g_lo}x{g_lo} grid has {g_lo * g_lo} cells: at most {g_lo * g_lo - 1} distractors fit beside the target "
                f"(one marker per cell), got up to {d_hi}; lower distractors or raise grid"
            )
        for n in range(g_lo, g_hi + 1):
            lay = self._layout(params, n)
            if isinstance(lay, str):
                raise UsageError(lay + "; use a larger --canvas, a smaller grid or labels=false")
            room = lay.cell - 2.0 * gap - 2.0 * SNAP_SLACK  # largest marker extent that keeps the gap
            if s_lo * lay.cell < k["min_marker_px"]:
                raise UsageError(
                    f"a {n}x{n} grid on a {params['canvas'][0]}x{params['canvas'][1]} canvas has {lay.cell} px cells: markers of "
                    f"{s_lo:g} x {lay.cell} = {s_lo * lay.cell:.1f} px are below min_marker_px={k['min_marker_px']:g}; "
                    "use a larger --canvas, a smaller grid or a larger marker_size"
                )
            if s_hi * lay.cell > room:
                raise UsageError(
                    f"marker_size {s_hi:g} does not fit the {lay.cell} px cells of a {n}x{n} grid with a "
                    f"{gap:g} px gap to the cell border: at most {max(room, 0.0) / lay.cell:.3f}; lower marker_size or grid"
                )

    # ------------------------------------------------------------------ sampling

    def sample(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene:
        hint = "lower marker_size or min_border_gap_px"
        return first_accepted(self.name, lambda: self._attempt(rng, params), params["knobs"], hint)

    def _attempt(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene | str:
        """One scene, or the name of the audit rule it broke."""
        k = params["knobs"]
        w, h = params["canvas"]
        n = draw_int(rng, k["grid"])
        lay = self._layout(params, n)
        if isinstance(lay, str):  # pragma: no cover - check() refuses these
            raise UsageError(lay)
        nd = draw_int(rng, k["distractors"])
        confusable = float(dm.uniform(rng, *bounds_of(k["confusable"])))
        size = float(dm.uniform(rng, *bounds_of(k["marker_size"])))
        jitter = float(dm.uniform(rng, *bounds_of(k["jitter"])))
        gap = float(k["min_border_gap_px"])
        cell = lay.cell

        # Cells: the target uniform over all n*n, distractors uniform over the others.
        target = int(rng.integers(n * n))
        others = rng.choice(n * n - 1, nd, replace=False) if nd else np.zeros(0, dtype=np.int64)
        cells = np.concatenate([[target], others + (others >= target)]).astype(np.int64)  # [m]
        # Shapes and colours: target first; a fixed number of draws whatever the mix.
        ns, nc = len(SHAPE_NAMES), len(COLOURS)
        t_shape, t_colour = int(rng.integers(ns)), int(rng.integers(nc))
        is_conf = rng.random(nd) < confusable
        shape_twin = rng.random(nd) < 0.5
        other_shape = (t_shape + 1 + rng.integers(ns - 1, size=nd)) % ns
        other_colour = (t_colour + 1 + rng.integers(nc - 1, size=nd)) % nc
        shapes = np.concatenate([[t_shape], np.where(is_conf & shape_twin, t_shape, other_shape)])
        colours = np.concatenate([[t_colour], np.where(is_conf & ~shape_twin, t_colour, other_colour)])

        # Positions: cell centre + jitter within the room the border gap leaves.
        m = cells.size
        row, col = cells // n, cells % n
        half_ext = size * cell / 2.0  # half the longer bounding-box side
        half_box = HALF_BOX[shapes] * half_ext  # [m, 2]
        room = np.maximum(cell / 2.0 - gap - half_box - SNAP_SLACK, 0.0)
        centre = np.stack([lay.x0 + (col + 0.5) * cell, lay.y0 + (row + 0.5) * cell], axis=1)
        centre = geo.snap(centre + dm.uniform(rng, -1.0, 1.0, (m, 2)) * jitter * room)

        markers, boxes = [], np.empty((m, 4))
        for i in range(m):
            shape = SHAPE_NAMES[shapes[i]]
            cname = COLOURS[colours[i]]
            unit = SHAPES[shape]
            mk: dict[str, Any] = {
                "cell": [int(row[i]) + 1, int(col[i]) + 1],
                "shape": shape,
                "colour": cname,
                "rgb": list(PALETTE[cname]),
                "center": centre[i].tolist(),
            }
            if unit is None:
                r = float(geo.snap(half_ext))
                boxes[i] = (centre[i, 0] - r, centre[i, 1] - r, centre[i, 0] + r, centre[i, 1] + r)
                mk["radius"] = r
            else:
                pts = geo.snap(centre[i] + unit * half_ext)
                boxes[i] = (*pts.min(axis=0), *pts.max(axis=0))
                mk["points"] = pts.tolist()
            mk["box"] = boxes[i].tolist()
            markers.append(mk)

        # Audit on the snapped geometry: every marker keeps the gap to its cell's borders ...
        x_lo, y_lo = lay.x0 + col * cell, lay.y0 + row * cell
        if (
            (boxes[:, 0] < x_lo + gap).any() or (boxes[:, 2] > x_lo + cell - gap).any()
            or (boxes[:, 1] < y_lo + gap).any() or (boxes[:, 3] > y_lo + cell - gap).any()
        ):
            return "marker near cell border"
        # ... and the target is the only marker with its shape and colour.
        if int(np.count_nonzero((shapes == t_shape) & (colours == t_colour))) != 1:
            return "query not unique"  # pragma: no cover - excluded by construction

        # Markers in raster order of their cells (so the list order tells nothing).
        order = np.argsort(cells, kind="stable")
        markers = [markers[i] for i in order]
        q = int(np.nonzero(order == 0)[0][0])
        tm = markers[q]
        if "radius" in tm:
            targets = [{"type": "disc", "center": tm["center"], "radius": tm["radius"]}]
        else:
            targets = [{"type": "polygon", "points": tm["points"]}]
        r1, c1 = tm["cell"]
        geometry = {
            "canvas": [w, h],
            "grid": {
                "n": n,
                "cell_px": cell,
                "x_edges": lay.x_edges.tolist(),
                "y_edges": lay.y_edges.tolist(),
                "line_px": int(k["line_px"]),
                "lines": bool(k["grid_lines"]),
                "rgb": list(LINE_RGB),
            },
            "font": {"scale": lay.scale, "thickness_px": FONT_THICKNESS},
            "labels": [
                {"axis": axis, "text": text, "index": idx, "origin": list(org), "box": [float(v) for v in box]}
                for axis, text, idx, org, box in lay.labels
            ],
            "markers": markers,
            "query": {"marker": q, "shape": tm["shape"], "colour": tm["colour"], "cell": [r1, c1]},
            "targets": targets,
        }
        twins = slice(1, None)
        knobs = {
            "grid": n,
            "distractors": nd,
            "shape_twins": int(np.count_nonzero(shapes[twins] == t_shape)),
            "colour_twins": int(np.count_nonzero(colours[twins] == t_colour)),
            "confusable": round(confusable, 6),
            "marker_size": round(size, 6),
            "marker_px": round(size * cell, 4),
            "jitter": round(jitter, 6),
            "grid_lines": bool(k["grid_lines"]),
            "labels": bool(k["labels"]),
            "line_px": int(k["line_px"]),
            "target_row": r1,
            "target_col": c1,
        }
        question = self.question_template.format(grid=n, colour=tm["colour"], shape=tm["shape"])
        return Scene((w, h), question, f"({r1}, {c1})", geometry, knobs)

    # ------------------------------------------------------------------ drawing

    def draw(self, geometry: Mapping[str, Any]) -> list[Primitive]:
        g = geometry["grid"]
        xe, ye = g["x_edges"], g["y_edges"]
        t = int(g["line_px"])
        half = t / 2.0
        rgb = tuple(g["rgb"])
        inner = range(len(xe)) if g["lines"] else (0, len(xe) - 1)
        prims: list[Primitive] = []
        for i in inner:  # lines run half a line width past the outer edges, so corners are square
            prims.append(Polyline(np.array([[xe[i], ye[0] - half], [xe[i], ye[-1] + half]]), rgb, t))
            prims.append(Polyline(np.array([[xe[0] - half, ye[i]], [xe[-1] + half, ye[i]]]), rgb, t))
        font = geometry["font"]
        prims += [
            Text(lb["text"], tuple(lb["origin"]), font["scale"], LABEL_RGB, font["thickness_px"]) for lb in geometry["labels"]
        ]
        for mk in geometry["markers"]:
            colour = tuple(mk["rgb"])
            if "radius" in mk:
                prims.append(Disc(tuple(mk["center"]), mk["radius"], colour))
            else:
                prims.append(Polygon(np.asarray(mk["points"]), colour))
        return prims
