"""Line intersection: how many times do two named lines cross (or: all lines, in total)?

Answers are balanced by construction: the answer `t` is drawn uniformly from the `count` range
first, then a scene with exactly `t` crossings is built, and the exact geometry re-counts it.

Nothing else a model can see without counting the named pair's crossings depends on `t`: the
picture's total number of crossings is drawn independently of the answer (`crossings`), and so is
every line's number of steep moves (`moves`): a line's crossings are some of its moves, the rest are
*feints*, moves of the same shape that cross nothing. So neither the total nor how much a line
zigzags tells how often the named lines cross.

Construction (a "wiring diagram", then rotated): in a square frame (u, v), each line is a function
v(u) that lives in one horizontal band per *rank*. A crossing is an *event* that swaps the ranks of
two lines in adjacent bands over a short u-interval; between its own events a line stays inside its
band. So lines meet only inside events, exactly once per event (two monotone pieces swapping), and
the scene has exactly the crossings the event list says. For the pair question the event list
holds `t` swaps of the queried lines among `crossings` swaps in all (the others include those needed
to bring the two together); for the total question, `t` random adjacent swaps. No line takes part
in more swaps than it has moves. Events on disjoint bands share a u-interval (a *layer*); a feint
goes in a layer where its line does not swap and stays inside the line's band. Lines are straight
polylines between their knots or monotone cubics through them (`style`), then the frame is rotated
by a random angle and placed on the canvas. Every sample is then audited on the exact drawn
polylines.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from linebench import detmath as dm
from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.render import PALETTE, Polyline, Primitive
from linebench.tasks import Column, Knob, Scene, bounds_of, draw_int, first_accepted

from . import wiring

ONE_COLOUR = ("black", (0, 0, 0))
CURVE_STEP_PX = 6.0  # vertex spacing along u when flattening curved lines
JITTER = 0.04  # knots sit within +-JITTER band widths of their level
BAND_SLOTS = 1.5  # bands are at most this many layers tall (so a move's mean slope stays below ~1)
LAYER_SLACK = (3, 5)  # a scene has moves' hi + 3..5 layers (drawn with the knobs), or more where its plan needs them
TARGET_RADIUS_LW = 2.0  # crossing target discs: radius in line widths


class IntersectionTask:
    name = "intersection"
    version = "2"
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
        Knob("crossings", int, [7, 9], "pair question, 3+ lines: crossings among all lines, drawn from lo..hi whatever the answer (lo >= count's hi + lines - 2); with 2 lines the total is the answer", (0, 60)),
        Knob("moves", int, [7, 8], "steep moves per line, drawn per line whatever the answer: its crossings plus feints that cross nothing", (0, 40)),
        Knob("bends", int, 0, "extra gentle knots per line where it rests (uneven rests; 0 at every level: a bend next to a move changes the move's shape, and how often one fits depends on how closely the line's moves follow each other)", (0, 12)),
        Knob("style", str, "straight", "straight polylines, curved (monotone cubics through the knots), or mixed (half each)", choices=("straight", "curved", "mixed")),
        Knob("question", str, "pair", "pair: crossings between two named lines; total: all crossings", choices=("pair", "total")),
        Knob("same_colour", bool, False, "draw every line in black (total question only: the pair question names colours)"),
        Knob("thickness_px", int, [2, 3], "line thickness", (1, 8)),
        Knob("min_crossing_angle_deg", float, 30.0, "reject crossings flatter than this", (0.0, 90.0), audit=True),
        Knob("min_crossing_sep_px", float, 16.0, "min distance between any two crossings", (0.0, 200.0), audit=True),
        Knob("min_lens_gap_lw", float, 3.0, "min white gap between two lines between two of their crossings, in line widths", (0.0, 20.0), audit=True),
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
        Column("bends", int, "extra gentle knots per line"),
        Column("curved", bool, "lines drawn as curves (else straight polylines)"),
        Column("question_kind", str, "pair or total"),
        Column("same_colour", bool, "all lines drawn in one colour"),
        Column("thickness_px", int, "line thickness"),
        Column("rotation_deg", float, "rotation of the construction frame"),
    )
    # Every level's `moves` lo is what the busiest line may need (check() tries the worst cases):
    # the named lines carry up to `count` hi swaps and the turns to face each other, and with three
    # lines the third takes part in every crossing when the answer is 0.
    levels = {
        "easy": {"lines": 2, "count": [0, 5], "moves": [6, 7], "bends": 0, "style": "straight", "thickness_px": 3},
        "medium": {"lines": 3, "count": [0, 5], "crossings": [5, 6], "moves": [8, 9], "bends": 0, "style": "mixed", "thickness_px": [2, 3]},
        "hard": {"lines": [4, 5], "count": [0, 5], "crossings": [7, 9], "moves": [8, 9], "bends": 0, "style": "curved", "thickness_px": 2},
        "ood": {"lines": [6, 7], "count": [0, 8], "crossings": [11, 13], "moves": [10, 11], "bends": 0, "style": "curved", "thickness_px": 2},
    }

    # ------------------------------------------------------------------ checks

    def check(self, params: Mapping[str, Any]) -> None:
        k = params["knobs"]
        w, h = params["canvas"]
        n_lo, n_hi = bounds_of(k["lines"])
        t_hi = bounds_of(k["thickness_px"])[1]
        c_hi = bounds_of(k["count"])[1]
        x_lo, x_hi = bounds_of(k["crossings"])
        m_lo, m_hi = bounds_of(k["moves"])
        pair = k["question"] == "pair"
        if pair and k["same_colour"]:
            raise UsageError("the pair question names the lines by colour: same_colour=true needs question=total")
        if not k["same_colour"] and n_hi > len(PALETTE):
            raise UsageError(f"{n_hi} lines with distinct colours: there are only {len(PALETTE)} colours")
        side = min(w, h) - 2 * k["border_px"]
        layers = m_hi + LAYER_SLACK[1]  # the most a scene draws (a plan may need a few more)
        # the narrowest band: frame at 45 degrees, most lines, fewest layers
        band = min(side / math.sqrt(2) / n_hi, BAND_SLOTS * side / math.sqrt(2) / (layers + 1))
        if band * (0.5 - 2 * JITTER) < k["min_gap_lw"] * t_hi:  # facing lines: half a band apart
            raise UsageError(
                f"canvas {w}x{h} is too small for {n_hi} lines {t_hi} px thick {k['min_gap_lw']} line widths apart; "
                "use a larger --canvas or fewer lines"
            )
        if pair and n_hi >= 3 and x_lo < c_hi:
            raise UsageError(f"crossings must be at least count's hi = {c_hi} (every answer must fit in every total), got {x_lo}")
        # Moves must be enough for the busiest line in the worst case (the named lines when the
        # answer is count's hi; with three lines, the third when it is 0), from any start.
        worst = wiring.shortfall(sorted({n_lo, n_hi}), m_lo, sorted({bounds_of(k["count"])[0], c_hi}), sorted({x_lo, x_hi}), pair)
        if worst is not None:
            raise UsageError(
                f"moves={m_lo} per line is too few: {worst}; raise moves (its lo) or lower count/crossings"
            )
        # every layer (a counted swap, a move) needs its own slot, min_crossing_sep_px apart
        if side / math.sqrt(2) / (layers + 1) < k["min_crossing_sep_px"]:
            raise UsageError(
                f"{layers} layers of moves (moves' hi + {LAYER_SLACK[1]}) do not fit {k['min_crossing_sep_px']} px apart on a "
                f"{w}x{h} canvas; lower moves (and count) or use a larger --canvas"
            )

    # ------------------------------------------------------------------ sampling

    def sample(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene:
        k = params["knobs"]
        # The answer and everything a model could read without counting it (number of lines, the
        # picture's total, each line's moves) are drawn once, independently, before any audit can
        # reject a scene, so rejections never bend their distributions.
        n = draw_int(rng, k["lines"])
        t = draw_int(rng, k["count"])
        pair = None if k["question"] == "total" else tuple(int(v) for v in rng.choice(n, 2, replace=False))
        draw = {
            "n": n,
            "t": t,
            "total": draw_int(rng, k["crossings"]) if pair is not None and n >= 3 else t,
            "moves": [draw_int(rng, k["moves"]) for _ in range(n)],
            # the frame's layers: at least this many (more only where the plan needs them)
            "layers": draw_int(rng, [bounds_of(k["moves"])[1] + LAYER_SLACK[0], bounds_of(k["moves"])[1] + LAYER_SLACK[1]]),
            "bends": draw_int(rng, k["bends"]),
            "thickness": draw_int(rng, k["thickness_px"]),
            "curved": k["style"] == "curved" or (k["style"] == "mixed" and bool(rng.random() < 0.5)),
            "pair": pair,
        }
        hint = "lower count/crossings/lines, raise moves, use a larger --canvas or loosen the audit thresholds"
        return first_accepted(self.name, lambda: self._attempt(rng, params, **draw), k, hint)

    def _attempt(self, rng, params, n, t, total, moves, layers, bends, thickness, curved, pair) -> Scene | str:
        """One scene with the drawn knobs, or the name of the audit rule it broke."""
        k = params["knobs"]
        w, h = params["canvas"]
        plan = wiring.move_plan(rng, n, moves, t, total, pair)
        if plan is None:
            return "move plan"
        placed, n_layers = wiring.schedule(plan, n, rng, layers)

        theta = float(dm.uniform(rng, 0.0, math.pi))  # any orientation
        sin_t, cos_t = dm.sincos(theta)
        c, s = abs(cos_t), abs(sin_t)
        side = (min(w, h) - 2 * k["border_px"] - thickness) / (c + s)  # the rotated frame fits the canvas
        slot = side / (n_layers + 1)
        # Bands no taller than BAND_SLOTS layers are wide, so a move (half a band) keeps its slope
        # (and the crossing its angle) however many lines share the frame; the bands sit centred.
        band = min(side / n, BAND_SLOTS * slot)
        v0 = (side - n * band) / 2.0
        step = band / 2.0  # one move: half a band

        def level_v(level: int) -> float:
            return v0 + (level + 0.5) * step + dm.uniform(rng, -JITTER, JITTER) * band

        # Layer centres (+-0.1 slot). A move reaches at most ~0.42 slot from its layer's nominal
        # centre, so two moves of one line (different layers) almost never overlap; when they do,
        # the scene is rejected ("moves overlap").
        centres = slot * (np.arange(n_layers) + 1) + dm.uniform(rng, -0.1, 0.1, n_layers) * slot
        # Each visit of a level gets one rest height (level +- JITTER band), and a move runs from the
        # line's rest to its next one: between moves a line is exactly flat, so every move has the
        # same shape however close its neighbours are (a swap's zigzag with its partner and a
        # feint look alike).
        start_level = [0] * n
        for r, line in enumerate(plan.start_order):
            start_level[line] = 2 * r + plan.start_half[line]
        rest = [level_v(start_level[line]) for line in range(n)]
        first_rest = list(rest)
        knots: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        spans: list[list[tuple[float, float, float]]] = [[] for _ in range(n)]  # (lo, hi, rest after)
        for mv, layer in placed:
            # Every move is drawn alike, swap or feint: half a band at a mean slope of 0.55..1.1
            # (up to 1.5x that mid-move on curves), so a swap's two lines cross at 60..120 deg.
            half_w = min(step / 2.0 / dm.uniform(rng, 0.55, 1.1), 0.38 * slot)
            c0 = centres[layer] + dm.uniform(rng, -0.1, 0.1) * half_w
            for line, (_, l1) in zip(mv.lines, mv.levels):
                after = level_v(l1)
                knots[line] += [(c0 - half_w, rest[line]), (c0 + half_w, after)]
                spans[line].append((c0 - half_w, c0 + half_w, after))
                rest[line] = after
        for line in range(n):
            if any(hi >= lo2 for (_, hi, _), (lo2, _, _) in zip(spans[line], spans[line][1:])):
                return "moves overlap"

        def rest_at(line: int, u: float) -> float:
            v = first_rest[line]
            for lo, hi, after in spans[line]:
                if hi <= u:
                    v = after
            return v

        lines = []
        margin = 0.1 * slot
        for line in range(n):
            u0 = dm.uniform(rng, 0.0, 0.3) * slot
            u1 = side - dm.uniform(rng, 0.0, 0.3) * slot
            pts = list(knots[line])
            for u in sorted(dm.uniform(rng, u0, u1, bends)):  # gentle knots where the line rests
                if not any(lo - margin <= u <= hi + margin for lo, hi, _ in spans[line]):
                    pts.append((float(u), rest_at(line, u) + dm.uniform(rng, -JITTER, JITTER) * band))
            pts += [(float(u0), rest_at(line, u0)), (float(u1), rest_at(line, u1))]
            pts.sort()
            us = np.array([u for u, _ in pts])
            vs = np.array([v for _, v in pts])
            if np.any(np.diff(us) <= 1e-6):
                return "knots coincide"
            lines.append(geo.monotone_cubic(us, vs, CURVE_STEP_PX) if curved else np.stack([us, vs], axis=1))

        # Frame -> canvas: rotate about the frame centre, centre on the canvas, snap to the lattice.
        rot = np.array([[cos_t, -sin_t], [sin_t, cos_t]])
        centre = np.array([w / 2.0, h / 2.0])
        lines = [geo.snap(dm.matmul(p - side / 2.0, rot.T) + centre) for p in lines]
        # u of every drawn (snapped) vertex: lines are x-monotone in the frame, which lets the gap
        # audit look only at the few segments of another line within reach (see _gaps).
        us = [dm.matmul(p - centre, rot[:, 0]) + side / 2.0 for p in lines]
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
        pair_cross = _pair_crossings(lines, us)  # (i, j) -> Crossings, i < j; kept for the lens audit
        for i in range(n):
            for j in range(i + 1, n):
                cr = pair_cross[i, j]
                found += [(i, j, cr.points[x], float(cr.angle_deg[x])) for x in range(len(cr))]
        counted = [f for f in found if pair is None or {f[0], f[1]} == set(pair)]
        if len(counted) != t:
            return "crossing count"
        if found:
            pts = np.array([f[2] for f in found])
            if min(f[3] for f in found) < k["min_crossing_angle_deg"]:
                return "crossing angle"
            if len(found) > 1:
                d = dm.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
                np.fill_diagonal(d, np.inf)
                if d.min() < k["min_crossing_sep_px"]:
                    return "crossings too close"
            cb = k["crossing_border_px"]
            if pts.min() < cb or pts[:, 0].max() > w - cb or pts[:, 1].max() > h - cb:
                return "crossing near border"
            # Two crossings of one pair must read as two: white between the strokes in the lens.
            min_lens = (k["min_lens_gap_lw"] + 1.0) * thickness
            per_pair = np.bincount([f[0] * n + f[1] for f in found], minlength=n * n)
            for pp in np.nonzero(per_pair > 1)[0]:
                i, j = divmod(int(pp), n)
                both = (pair_cross[i, j], geo.seen_from_other(pair_cross[i, j], lines[j]))
                if geo.lens_narrower_than(lines[i], lines[j], min_lens, crossings=both):
                    return "crossings too close (lens)"

        # Away from their crossings, no two lines come closer than min_gap_lw line widths (this
        # also rejects touching and overlapping lines: they have no crossing point to excuse them).
        # Between polylines that do not cross, the closest approach is at a vertex of one of them.
        min_gap = k["min_gap_lw"] * thickness
        gaps = _gaps(lines, us, min_gap)  # [n, all vertices]
        first = np.concatenate([[0], np.cumsum([len(ln) for ln in lines])])
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                close = gaps[j, first[i]:first[i + 1]] < min_gap
                if not close.any():
                    continue
                here = [(f[2], f[3]) for f in found if {f[0], f[1]} == {i, j}]
                if not here:
                    return "lines too close"
                cp = np.array([p for p, _ in here])
                reach = 1.25 * min_gap / dm.sin(np.radians([a for _, a in here])) + CURVE_STEP_PX
                near = dm.hypot(*(lines[i][close][:, None, :] - cp[None]).transpose(2, 0, 1)) < reach[None, :]
                if not near.any(axis=1).all():
                    return "lines too close"
        # No line's end near another line: every end against every other line's segments at once
        # (the same distances, element by element, as one line pair at a time).
        ends = np.array([ln[[0, -1]] for ln in lines]).reshape(-1, 2)  # [2n, 2], line i's ends at 2i, 2i + 1
        seg0 = np.concatenate([ln[:-1] for ln in lines])
        seg1 = np.concatenate([ln[1:] for ln in lines])
        owner = np.repeat(np.arange(n), [len(ln) - 1 for ln in lines])
        d = geo.point_segment_distance(ends[:, None, :], seg0[None], seg1[None])  # [2n, S]
        d[np.repeat(np.arange(n), 2)[:, None] == owner[None, :]] = np.inf
        if d.min() < k["endpoint_clearance_px"] + half:
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





def _gaps(lines: list[np.ndarray], us: list[np.ndarray], reach: float) -> np.ndarray:
    """[n, V]: the distance from every vertex v of every line (all lines' vertices in order) to each
    line j, where below `reach` (else some value >= reach; inf from a line to itself). `us`: the
    vertices' increasing frame abscissae; a segment of line j can only come within `reach` of a
    vertex if its u-interval does (rotation keeps distances), so only those are measured. Every
    line has at least two vertices (one segment)."""
    r = reach + 0.1  # the snap to the 1/16 px lattice moves u by less than 0.05 px
    n = len(lines)
    pts, u_all = np.concatenate(lines), np.concatenate(us)
    size = np.array([len(ln) for ln in lines])
    start = np.concatenate([[0], np.cumsum(size)[:-1]])  # line j's first vertex in pts
    owner = np.repeat(np.arange(n), size)
    lo = np.empty((n, len(pts)), dtype=np.int64)
    hi = np.empty((n, len(pts)), dtype=np.int64)
    for j in range(n):
        last = size[j] - 2  # index of line j's last segment
        lo[j] = geo.clip(np.searchsorted(us[j], u_all - r, side="left") - 1, 0, last)
        hi[j] = geo.clip(np.searchsorted(us[j], u_all + r, side="right"), 0, last + 1)  # exclusive
    hi[owner, np.arange(len(pts))] = lo[owner, np.arange(len(pts))]  # not to itself
    width = int((hi - lo).max(initial=0))
    if width <= 0:
        return np.full((n, len(pts)), np.inf)
    idx = lo[:, :, None] + np.arange(width)  # [n, V, W] candidate segments of line j
    valid = idx < hi[:, :, None]
    idx = np.minimum(idx, (size - 2)[:, None, None]) + start[:, None, None]
    d = geo.point_segment_distance(pts[None, :, None, :], pts[idx], pts[idx + 1])
    d[~valid] = np.inf
    return d.min(axis=2)


def _pair_crossings(lines: list[np.ndarray], us: list[np.ndarray]) -> dict[tuple[int, int], geo.Crossings]:
    """`geo.monotone_crossings(lines[i], us[i], lines[j], us[j])` for every pair i < j (lines are
    monotone in u), one vectorised pass per line i over all j > i: the same segment pairs tested
    with the same arithmetic, so the same crossings in the same order."""
    n = len(lines)
    out: dict[tuple[int, int], geo.Crossings] = {}
    for i in range(n - 1):
        a, ua = lines[i], us[i]
        others = range(i + 1, n)
        size = np.array([len(us[j]) for j in others])  # vertices of each line j
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        b = np.concatenate([lines[j] for j in others])
        lo, hi = (np.stack(side) for side in zip(*(geo.overlap_window(ua, us[j]) for j in others)))  # [J, M-1] each
        width = int((hi - lo).max(initial=0))
        if width <= 0:  # no segments overlap in u: no crossings (as monotone_crossings gives them)
            out.update({(i, j): geo.Crossings.none() for j in others})
            continue
        cand = lo[:, :, None] + np.arange(width)  # [J, M-1, W] candidate segments of line j
        jj, si, w = np.nonzero(cand < hi[:, :, None])  # per j: a's segments in order, then b's
        g = start[jj] + cand[jj, si, w]  # the candidate segment of line j, in b
        hit, pts, ang, u = geo.segment_pair_crossings(a, si, b, g, start[jj] + size[jj] - 2)
        jj, si, sj = jj[hit], si[hit], (g - start[jj])[hit]  # sj: the segment of line j
        for k, j in enumerate(others):
            sel = jj == k
            zeros = np.zeros(int(sel.sum()), dtype=np.int64)
            out[i, j] = geo.Crossings(zeros, zeros + 1, si[sel].astype(np.int64), pts[sel], ang[sel], sj[sel].astype(np.int64), u[sel])
    return out
