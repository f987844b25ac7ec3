"""Line intersection: how many times do two named lines cross (or: all lines, in total)?

Answers are balanced by construction: the answer `t` is drawn uniformly from the `count` range
first, then a scene with exactly `t` crossings is built, and the exact geometry re-counts it.

Construction (a "wiring diagram", then rotated): in a square frame (u, v), each line is a function
v(u) that lives in one horizontal band per *rank*. A crossing is an *event* that swaps the ranks of
two lines in adjacent bands over a short u-interval; between its own events a line stays inside its
band. So lines meet only inside events, exactly once per event (two monotone pieces swapping), and
the scene has exactly the crossings the event list says. For the pair question the event list
holds `t` swaps of the queried lines plus distractor swaps (including those needed to bring the two
together); for the total question, `t` random adjacent swaps. Events on disjoint bands share a
u-interval, which keeps scenes with many crossings compact. Lines are straight polylines between
their knots or monotone cubics through them (`style`), then the frame is rotated by a random angle
and placed on the canvas. Every sample is then audited on the exact drawn polylines.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.render import PALETTE, Polyline, Primitive
from linebench.tasks import Column, Knob, Scene, bounds_of, draw_int, first_accepted

ONE_COLOUR = ("black", (0, 0, 0))
CURVE_STEP_PX = 6.0  # vertex spacing along u when flattening curved lines
JITTER = 0.2  # knots sit within +-JITTER band widths of their band's centre
TARGET_RADIUS_LW = 2.0  # crossing target discs: radius in line widths


class IntersectionTask:
    name = "intersection"
    version = "1"
    description = "Count how many times two named lines cross (or all lines, in total)."
    answer_kind = "number"
    target_description = "the crossings being counted, or the place where the lines come closest when there are none"
    question_templates = {
        "pair": "How many times do the {a} line and the {b} line intersect? Answer with a number.",
        "total": "How many intersection points are there among all the lines? Answer with a number.",
    }
    question_template = question_templates["pair"]

    knobs = (
        Knob("lines", int, [2, 4], "number of lines in the picture", (2, 8)),
        Knob("count", int, [0, 5], "the answer, drawn uniformly from lo..hi: crossings between the queried lines (or in total)", (0, 30)),
        Knob("other_crossings", int, [0, 3], "distractor crossings not between the queried lines (pair question; more may be needed to bring the pair together)", (0, 30)),
        Knob("bends", int, [0, 2], "extra knots per line, besides those its crossings need", (0, 12)),
        Knob("style", str, "straight", "straight polylines, curved (monotone cubics through the knots), or mixed (half each)", choices=("straight", "curved", "mixed")),
        Knob("question", str, "pair", "pair: crossings between two named lines; total: all crossings", choices=("pair", "total")),
        Knob("same_colour", bool, False, "draw every line in black (total question only: the pair question names colours)"),
        Knob("thickness_px", int, [2, 3], "line thickness", (1, 8)),
        Knob("min_crossing_angle_deg", float, 30.0, "reject crossings flatter than this", (0.0, 90.0), audit=True),
        Knob("min_crossing_sep_px", float, 16.0, "min distance between any two crossings", (0.0, 200.0), audit=True),
        Knob("min_gap_lw", float, 4.0, "min centre-line gap between lines away from their crossings, in line widths", (1.0, 20.0), audit=True),
        Knob("endpoint_clearance_px", float, 12.0, "min distance from a line's end to any other line", (0.0, 200.0), audit=True),
        Knob("border_px", float, 10.0, "min distance from lines to the image border", (0.0, 100.0), audit=True),
        Knob("crossing_border_px", float, 24.0, "min distance from a crossing to the image border", (0.0, 200.0), audit=True),
        Knob("max_attempts", int, 500, "scenes drawn per sample before giving up", (1, 10**6), audit=True),
    )
    columns = (
        Column("lines", int, "number of lines"),
        Column("count", int, "the answer: crossings counted by the question"),
        Column("total_crossings", int, "crossings among all lines"),
        Column("other_crossings", int, "crossings not counted by the question"),
        Column("bends", int, "extra knots per line"),
        Column("curved", bool, "lines drawn as curves (else straight polylines)"),
        Column("question_kind", str, "pair or total"),
        Column("same_colour", bool, "all lines drawn in one colour"),
        Column("thickness_px", int, "line thickness"),
        Column("rotation_deg", float, "rotation of the construction frame"),
    )
    levels = {
        "easy": {"lines": 2, "count": [0, 5], "other_crossings": 0, "bends": [0, 1], "style": "straight", "thickness_px": 3},
        "medium": {"lines": 3, "count": [0, 5], "other_crossings": [0, 3], "bends": [1, 2], "style": "mixed", "thickness_px": [2, 3]},
        "hard": {"lines": [4, 5], "count": [0, 5], "other_crossings": [2, 6], "bends": [1, 3], "style": "curved", "thickness_px": 2},
        "ood": {"lines": [6, 7], "count": [0, 8], "other_crossings": [6, 10], "bends": [2, 4], "style": "curved", "thickness_px": 2},
    }

    # ------------------------------------------------------------------ checks

    def check(self, params: Mapping[str, Any]) -> None:
        k = params["knobs"]
        w, h = params["canvas"]
        n_hi = bounds_of(k["lines"])[1]
        t_hi = bounds_of(k["thickness_px"])[1]
        c_hi = bounds_of(k["count"])[1]
        if k["question"] == "pair" and k["same_colour"]:
            raise UsageError("the pair question names the lines by colour: same_colour=true needs question=total")
        if not k["same_colour"] and n_hi > len(PALETTE):
            raise UsageError(f"{n_hi} lines with distinct colours: there are only {len(PALETTE)} colours")
        side = min(w, h) - 2 * k["border_px"]
        band = side / math.sqrt(2) / n_hi  # the narrowest band: frame at 45 degrees, most lines
        if band * (1 - 2 * JITTER) < k["min_gap_lw"] * t_hi:
            raise UsageError(
                f"canvas {w}x{h} is too small for {n_hi} lines {t_hi} px thick {k['min_gap_lw']} line widths apart; "
                "use a larger --canvas or fewer lines"
            )
        # the counted swaps of one pair each need their own layer, min_crossing_sep_px apart
        events = c_hi
        if side / math.sqrt(2) / (events + 1) < k["min_crossing_sep_px"]:
            raise UsageError(
                f"up to {events} crossings do not fit {k['min_crossing_sep_px']} px apart on a {w}x{h} canvas; "
                "lower count/other_crossings or use a larger --canvas"
            )

    # ------------------------------------------------------------------ sampling

    def sample(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene:
        k = params["knobs"]
        # The answer and the scene's knobs are drawn once, before any audit can reject a scene,
        # so rejections never bend their distributions (answers stay uniform over `count`).
        n = draw_int(rng, k["lines"])
        draw = {
            "n": n,
            "t": draw_int(rng, k["count"]),
            "others": draw_int(rng, k["other_crossings"]),
            "bends": draw_int(rng, k["bends"]),
            "thickness": draw_int(rng, k["thickness_px"]),
            "curved": k["style"] == "curved" or (k["style"] == "mixed" and bool(rng.random() < 0.5)),
            "pair": None if k["question"] == "total" else tuple(int(v) for v in rng.choice(n, 2, replace=False)),
        }
        hint = "lower count/other_crossings/lines, use a larger --canvas or loosen the audit thresholds"
        return first_accepted(self.name, lambda: self._attempt(rng, params, **draw), k, hint)

    @staticmethod
    def _events(rng: np.random.Generator, n: int, t: int, others: int, pair: tuple[int, int] | None):
        """Initial order (rank -> line) and a list of adjacent swaps (by lower rank) with the
        queried pair swapping exactly `t` times (or `t` swaps in all when `pair` is None)."""
        order = [int(v) for v in rng.permutation(n)]
        start = list(order)
        events: list[int] = []

        def swap(p: int) -> None:
            events.append(p)
            order[p], order[p + 1] = order[p + 1], order[p]

        if pair is None:
            for _ in range(t):
                swap(int(rng.integers(n - 1)))
            return start, events
        a, b = pair
        kinds = np.array([True] * t + [False] * others)
        rng.shuffle(kinds)
        for is_pair in kinds:
            if is_pair:
                ra, rb = order.index(a), order.index(b)
                while abs(ra - rb) > 1:  # bring them together: each step crosses a third line
                    step = 1 if rb > ra else -1
                    if rng.random() < 0.5:
                        swap(min(ra, ra + step))
                        ra += step
                    else:
                        swap(min(rb, rb - step))
                        rb -= step
                swap(min(ra, rb))
            else:
                choices = [p for p in range(n - 1) if {order[p], order[p + 1]} != {a, b}]
                if choices:
                    swap(choices[int(rng.integers(len(choices)))])
        return start, events

    def _attempt(self, rng, params, n, t, others, bends, thickness, curved, pair) -> Scene | str:
        """One scene with the drawn knobs, or the name of the audit rule it broke."""
        k = params["knobs"]
        w, h = params["canvas"]
        start, events = self._events(rng, n, t, others, pair)

        # Layers: an event goes right after the last earlier event on an overlapping band.
        layer_of: list[int] = []
        for e, p in enumerate(events):
            prev = [layer_of[f] for f in range(e) if abs(events[f] - p) <= 1]
            layer_of.append(max(prev) + 1 if prev else 0)
        n_layers = max(layer_of) + 1 if events else 0

        theta = float(rng.uniform(0.0, math.pi))  # any orientation
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        side = (min(w, h) - 2 * k["border_px"] - thickness) / (c + s)  # the rotated frame fits the canvas
        band = side / n
        slot = side / (n_layers + 1)
        # Layer centres (+-0.1 slot). A swap reaches at most ~0.52 slot from its layer's nominal
        # centre, so two swaps of one line (successive layers) almost never overlap; when they do,
        # the line's knots interleave and the exact recount rejects the scene.
        centres = slot * (np.arange(n_layers) + 1) + rng.uniform(-0.1, 0.1, n_layers) * slot

        # Knots per line: (u, v) — ends, both sides of each of its swaps, and extra bends. A swap
        # crosses the boundary between bands p and p+1: each line goes from `amp` on its side of
        # the boundary to `amp` on the other side with slope about `slope` (crossing angle ~90 deg
        # at slope 1; the audit bounds it), staying inside its bands.
        order = list(start)
        knots: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        busy: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        for e, p in enumerate(events):
            slope = rng.uniform(0.55, 1.8)
            half_w = rng.uniform(0.2, 0.38) * slot
            amp = min(slope * half_w, rng.uniform(0.15, 0.3) * band)
            half_w = amp / slope
            c0 = centres[layer_of[e]] + rng.uniform(-0.1, 0.1) * half_w
            lo, hi = c0 - half_w, c0 + half_w
            boundary = (p + 1) * band
            x, y = order[p], order[p + 1]
            a = amp * rng.uniform(0.8, 1.2, 4)
            knots[x] += [(lo, boundary - a[0]), (hi, boundary + a[1])]
            knots[y] += [(lo, boundary + a[2]), (hi, boundary - a[3])]
            busy[x].append((lo, hi))
            busy[y].append((lo, hi))
            order[p], order[p + 1] = y, x
        def centre_v(line: int, u: float) -> float:  # a knot at band centre +- jitter, wherever u is
            rank = start.index(line)
            for (lo, hi), (_, v_after) in zip(busy[line], knots[line][1::2]):
                if hi <= u:
                    rank = int(v_after // band)
            return (rank + 0.5 + rng.uniform(-JITTER, JITTER)) * band

        lines = []
        margin = 0.1 * slot
        for line in range(n):
            u0 = rng.uniform(0.0, 0.3) * slot
            u1 = side - rng.uniform(0.0, 0.3) * slot
            pts = list(knots[line])
            for u in sorted(rng.uniform(u0, u1, bends)):
                if not any(lo - margin <= u <= hi + margin for lo, hi in busy[line]):
                    pts.append((float(u), centre_v(line, u)))
            pts += [(float(u0), centre_v(line, u0)), (float(u1), centre_v(line, u1))]
            pts.sort()
            us = np.array([u for u, _ in pts])
            vs = np.array([v for _, v in pts])
            if np.any(np.diff(us) <= 1e-6):
                return "knots coincide"
            lines.append(geo.monotone_cubic(us, vs, CURVE_STEP_PX) if curved else np.stack([us, vs], axis=1))

        # Frame -> canvas: rotate about the frame centre, centre on the canvas, snap to the lattice.
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        centre = np.array([w / 2.0, h / 2.0])
        lines = [geo.snap((p - side / 2.0) @ rot.T + centre) for p in lines]
        # u of every drawn (snapped) vertex: lines are x-monotone in the frame, which lets the gap
        # audit look only at the few segments of another line within reach (see _gaps).
        us = [(p - centre) @ rot[:, 0] + side / 2.0 for p in lines]
        if any(np.any(np.diff(u) <= 0) for u in us):
            return "knots coincide"
        return self._audit_and_finish(rng, params, lines, us, pair, t, n, bends, thickness, curved, theta)

    def _audit_and_finish(self, rng, params, lines, us, pair, t, n, bends, thickness, curved, theta) -> Scene | str:
        k = params["knobs"]
        w, h = params["canvas"]
        half = thickness / 2.0
        allp = np.concatenate(lines)
        b = k["border_px"] + half
        if allp.min() < b or allp[:, 0].max() > w - b or allp[:, 1].max() > h - b:
            return "border"

        # Every crossing, exactly, on the drawn polylines.
        found = []  # (i, j, point, angle)
        for i in range(n):
            for j in range(i + 1, n):
                cr = geo.segment_crossings(lines[i], lines[j])
                found += [(i, j, cr.points[x], float(cr.angle_deg[x])) for x in range(len(cr))]
        counted = [f for f in found if pair is None or {f[0], f[1]} == set(pair)]
        if len(counted) != t:
            return "crossing count"
        if found:
            pts = np.array([f[2] for f in found])
            if min(f[3] for f in found) < k["min_crossing_angle_deg"]:
                return "crossing angle"
            if len(found) > 1:
                d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
                np.fill_diagonal(d, np.inf)
                if d.min() < k["min_crossing_sep_px"]:
                    return "crossings too close"
            cb = k["crossing_border_px"]
            if pts.min() < cb or pts[:, 0].max() > w - cb or pts[:, 1].max() > h - cb:
                return "crossing near border"

        # Away from their crossings, no two lines come closer than min_gap_lw line widths (this
        # also rejects touching and overlapping lines: they have no crossing point to excuse them).
        # Between polylines that do not cross, the closest approach is at a vertex of one of them.
        min_gap = k["min_gap_lw"] * thickness
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                dist = _gaps(lines[i], us[i], lines[j], us[j], min_gap)
                close = dist < min_gap
                if not close.any():
                    continue
                here = [(f[2], f[3]) for f in found if {f[0], f[1]} == {i, j}]
                if not here:
                    return "lines too close"
                cp = np.array([p for p, _ in here])
                reach = 1.25 * min_gap / np.sin(np.radians([a for _, a in here])) + CURVE_STEP_PX
                near = np.hypot(*(lines[i][close][:, None, :] - cp[None]).transpose(2, 0, 1)) < reach[None, :]
                if not near.any(axis=1).all():
                    return "lines too close"
        ends = np.array([[ln[0], ln[-1]] for ln in lines])  # [n, 2, 2]
        for i in range(n):
            for j in range(n):
                if i != j and geo.points_to_polyline(ends[i], lines[j]).min() < k["endpoint_clearance_px"] + half:
                    return "end near a line"

        # Accepted: colours, question, targets.
        if k["same_colour"]:
            colours = [ONE_COLOUR] * n
        else:
            names = list(PALETTE)
            colours = [(names[c], PALETTE[names[c]]) for c in rng.choice(len(names), n, replace=False)]
        radius = TARGET_RADIUS_LW * thickness
        if counted:
            targets = [{"type": "disc", "center": [float(v) for v in f[2]], "radius": radius} for f in counted]
        else:
            # Nothing to count: the place one must look to decide is where the lines come closest.
            cand = [pair] if pair is not None else [(i, j) for i in range(n) for j in range(i + 1, n)]
            best = min((geo.closest_points(lines[i], lines[j]) for i, j in cand), key=lambda r: r[2])
            mid = (np.asarray(best[0]) + np.asarray(best[1])) / 2.0
            targets = [{"type": "disc", "center": [float(v) for v in mid], "radius": best[2] / 2.0 + thickness}]
        if pair is None:
            question = self.question_templates["total"]
            query = {"kind": "total", "lines": list(range(n))}
        else:
            question = self.question_templates["pair"].format(a=colours[pair[0]][0], b=colours[pair[1]][0])
            query = {"kind": "pair", "lines": list(pair)}
        geometry = {
            "canvas": [w, h],
            "thickness_px": thickness,
            "lines": [{"colour": colours[i][0], "rgb": list(colours[i][1]), "points": lines[i].tolist()} for i in range(n)],
            "crossings": [
                {"lines": [i, j], "point": [round(float(p[0]), 4), round(float(p[1]), 4)], "angle_deg": round(a, 3)}
                for i, j, p, a in found
            ],
            "query": query,
            "targets": targets,
        }
        knobs = {
            "lines": n,
            "count": t,
            "total_crossings": len(found),
            "other_crossings": len(found) - t,
            "bends": bends,
            "curved": curved,
            "question_kind": query["kind"],
            "same_colour": bool(k["same_colour"]),
            "thickness_px": thickness,
            "rotation_deg": round(math.degrees(theta), 4),
        }
        return Scene((w, h), question, str(t), geometry, knobs)

    # ------------------------------------------------------------------ drawing

    def draw(self, geometry: Mapping[str, Any]) -> list[Primitive]:
        t = int(geometry["thickness_px"])
        return [Polyline(np.asarray(ln["points"]), tuple(ln["rgb"]), t) for ln in geometry["lines"]]



def _gaps(a: np.ndarray, ua: np.ndarray, b: np.ndarray, ub: np.ndarray, reach: float) -> np.ndarray:
    """Distance from each vertex of polyline `a` to polyline `b` where it is below `reach` (else
    some value >= reach). `ua`, `ub`: the vertices' increasing frame abscissae; a segment of `b`
    can only come within `reach` of a vertex if its u-interval does (rotation keeps distances)."""
    r = reach + 0.1  # the snap to the 1/16 px lattice moves u by less than 0.05 px
    last = len(ub) - 2  # index of b's last segment
    lo = np.clip(np.searchsorted(ub, ua - r, side="left") - 1, 0, last)
    hi = np.clip(np.searchsorted(ub, ua + r, side="right"), 0, last + 1)  # exclusive
    width = int((hi - lo).max(initial=0))
    if width <= 0:
        return np.full(len(a), np.inf)
    idx = lo[:, None] + np.arange(width)[None, :]  # [M, W] candidate segments
    valid = idx < hi[:, None]
    idx = np.minimum(idx, last)
    d = geo.point_segment_distance(a[:, None, :], b[idx], b[idx + 1])
    d[~valid] = np.inf
    return d.min(axis=1)
