"""Line tracing: follow a curve from its lettered start marker to its numbered end marker.

Layout: start markers on the left (labelled A, B, C, ... top to bottom), end markers on the right
(numbered 1..N in random order, so the answer carries no positional prior). The queried start and
the end slot its curve reaches are drawn first, uniformly and independently, and scenes are drawn
to match, so which end is the answer does not depend on where the ends sit. Every curve is a
Catmull-Rom spline through evenly spaced control points, flattened on abscissae shared by all
curves of the scene; that makes every crossing test exact and vectorised (geometry.graph_crossings).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Mapping

import numpy as np

from linebench import detmath as dm
from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.render import PALETTE, Disc, Polyline, Primitive, Text, text_box, text_size
from linebench.tasks import Column, Knob, Scene, bounds_of, draw_int, first_accepted

ONE_COLOUR = ("black", (0, 0, 0))
LABEL_RGB = (0, 0, 0)
FONT_SCALE = 0.6
FONT_THICKNESS = 2
VERTEX_SPACING_PX = 6.0  # flattening step along x; the flattened polyline is the geometry
START_LETTERS = "ABCDEFGH"
LABEL_GLYPHS = START_LETTERS + "12345678"


@functools.lru_cache(maxsize=1)
def _label_metrics() -> tuple[int, int, int]:
    """Largest width, height and depth of any label glyph."""
    return tuple(max(v) for v in zip(*(text_size(g, FONT_SCALE, FONT_THICKNESS) for g in LABEL_GLYPHS)))


@functools.lru_cache(maxsize=4096)  # the official levels use fewer than 2,000 keys: each computed once per process
def _orders(n: int, q: int, dest: int, total: int) -> tuple[tuple[int, ...], ...]:
    """The end assignments (curve i -> end slot perm[i]) with perm[q] = dest that `total` crossings
    can realise with the fewest extra crossings: a pair of curves whose ends are out of order (an
    inversion) crosses an odd number of times, any other pair an even number, so the inversions are
    at most `total` and of the same parity, and two below it if the queried curve is in none (it
    must cross something: twice then); of those, the ones with the most inversions (random curves
    rarely cross twice, so these pass the exact count most often)."""
    rest = [s for s in range(n) if s != dest]
    others = np.array(list(itertools.permutations(rest)), dtype=np.int64).reshape(-1, n - 1)  # in permutations' order
    perms = np.insert(others, q, dest, axis=1)  # [P, n]
    first, second = geo.pairs(n)
    inv = (perms[:, first] > perms[:, second]).sum(axis=1)
    not_q = np.arange(n) != q
    q_inv = ((perms[:, not_q] > dest) != (np.arange(n)[not_q] > q)).sum(axis=1)
    ok = (inv + np.where(q_inv == 0, 2, 0) <= total) & ((total - inv) % 2 == 0)
    if not ok.any():
        return ()
    best = ok & (inv == inv[ok].max())
    return tuple(tuple(int(v) for v in p) for p in perms[best])


def _vertices(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[n, M, 2]: curve c's vertices (xs[m], ys[c, m]) for curves on shared abscissae."""
    out = np.empty(ys.shape + (2,))
    out[..., 0] = xs
    out[..., 1] = ys
    return out


@functools.lru_cache(maxsize=256)
def _abscissae(x_start: float, x_end: float, bends: int) -> tuple[np.ndarray, int, np.ndarray]:
    """What a scene's frame and bend count fix (the same for every attempt): each bend's position
    along the curve [bends], the flattening steps per span, and the shared vertex abscissae [M]."""
    x_ctrl = np.linspace(x_start, x_end, bends + 2)
    frac = (x_ctrl[1:-1] - x_start) / (x_end - x_start)
    per_span = max(2, int(math.ceil((x_ctrl[1] - x_ctrl[0]) / VERTEX_SPACING_PX)))
    xs = geo.snap(np.linspace(x_start, x_end, (bends + 1) * per_span + 1))
    frac.setflags(write=False)
    xs.setflags(write=False)
    return frac, per_span, xs


@functools.lru_cache(maxsize=64)
def _spline_basis(k: int, per_span: int) -> np.ndarray:
    """[M, k] matrix taking k evenly spaced control ordinates to the flattened Catmull-Rom curve
    (flat ends). The spline is linear in the ordinates, so all curves of a scene cost one matmul."""
    eye = np.eye(k)
    x = np.arange(k, dtype=np.float64)
    cols = []
    for j in range(k):
        pts = np.stack([x, eye[j]], axis=1)
        cols.append(geo.hermite_spline(pts, geo.catmull_rom_tangents(pts), per_span)[:, 1])
    basis = np.stack(cols, axis=1)
    basis.setflags(write=False)
    return basis


class TracingTask:
    name = "tracing"
    version = "2"
    description = "Follow the line from a lettered start to its numbered end."
    answer_kind = "number"
    target_description = "the queried curve's end marker and its number label"
    question_template = "Which number does the line starting at {start} end at? Answer with the number only."

    knobs = (
        Knob("curves", int, [3, 6], "number of curves", (2, 8)),
        Knob("bends", int, [1, 3], "interior control points per curve (wiggliness)", (0, 8)),
        Knob("wiggle", float, [0.05, 0.2], "how far bends stray from the straight start-end line, as a fraction of the height", (0.0, 1.0)),
        Knob("crossings", int, [1, 14], "total crossings in the scene (lo..hi)", (0, 80)),
        Knob("exact_crossings", bool, True, "draw the total first, uniformly from crossings (at least curves - 1), and build the scene with exactly that many, so the total says nothing about the answer; false: any total in the range"),
        Knob("same_colour", bool, False, "draw every curve and marker in black (hard) instead of distinct colours"),
        Knob("thickness_px", int, [2, 3], "line thickness", (1, 8)),
        Knob("min_crossing_angle_deg", float, 25.0, "reject crossings flatter than this", (0.0, 90.0), audit=True),
        Knob("min_gap_lw", float, 4.0, "min centre-line gap between curves away from crossings, in line widths", (1.0, 20.0), audit=True),
        Knob("min_crossing_sep_px", float, 16.0, "min distance between any two crossings", (0.0, 200.0), audit=True),
        Knob("min_lens_gap_lw", float, 3.0, "min white gap between two curves between two of their crossings, in line widths", (0.0, 20.0), audit=True),
        Knob("crossing_clearance_px", float, 20.0, "min distance from a crossing to any marker or label", (0.0, 200.0), audit=True),
        Knob("marker_clearance_px", float, 6.0, "min gap between a curve and another curve's marker", (0.0, 100.0), audit=True),
        Knob("border_px", float, 10.0, "min distance from curves to the image border (labels are laid out from it)", (0.0, 100.0), audit=True),
        Knob("label_gap_px", float, 4.0, "min gap between a label and anything else", (0.0, 50.0), audit=True),
        Knob("max_attempts", int, 2000, "scenes drawn per sample before giving up", (1, 10**6), audit=True),
    )
    columns = (
        Column("curves", int, "number of curves"),
        Column("bends", int, "interior control points per curve"),
        Column("crossings", int, "crossings in the scene"),
        Column("query_crossings", int, "crossings on the queried curve"),
        Column("same_colour", bool, "all curves drawn in one colour"),
        Column("thickness_px", int, "line thickness"),
        Column("wiggle", float, "bend amplitude drawn for the scene (fraction of the height)"),
        Column("query_length_px", float, "arc length of the queried curve"),
    )
    levels = {
        "easy": {"curves": 3, "bends": [1, 2], "wiggle": [0.05, 0.15], "crossings": [2, 3], "same_colour": False, "thickness_px": 3},
        "medium": {"curves": [4, 5], "bends": [2, 3], "wiggle": [0.1, 0.2], "crossings": [4, 6], "same_colour": False, "thickness_px": [2, 3]},
        "hard": {"curves": [5, 6], "bends": [3, 4], "wiggle": [0.05, 0.15], "crossings": [5, 8], "same_colour": True, "thickness_px": 2},
        # out of distribution: more curves, bends and crossings than any level `mixed` draws from
        # ood: with 7-8 curves and 12-24 crossings the total is far above what any answer needs, and
        # an exact total would pass the audit too rarely (its scenes already pass 1 time in 100-1000)
        "ood": {"curves": [7, 8], "bends": [4, 5], "wiggle": [0.05, 0.15], "crossings": [12, 24], "exact_crossings": False, "same_colour": True, "thickness_px": 2, "max_attempts": 20000},
    }

    # ------------------------------------------------------------------ layout

    @staticmethod
    def _frame(params: Mapping[str, Any], thickness: int) -> dict[str, float]:
        """Sizes that follow from the canvas and knobs (no randomness)."""
        k = params["knobs"]
        w, h = params["canvas"]
        lw, lh, ld = _label_metrics()
        marker_r = max(4.0, 1.5 * thickness + 1.0)
        label_w = lw + FONT_THICKNESS + 2.0
        label_h = lh + ld + FONT_THICKNESS + 2.0
        x_start = k["border_px"] + label_w + k["label_gap_px"] + marker_r
        margin_y = k["border_px"] + max(label_h / 2.0, marker_r)
        # Adjacent start (or end) slots: labels must not touch, curves must start apart.
        slot = max(label_h + k["label_gap_px"], 2 * marker_r + k["marker_clearance_px"] + thickness, k["min_gap_lw"] * thickness * 2)
        return {
            "x_start": x_start,
            "x_end": w - x_start,
            "y_lo": margin_y,
            "y_hi": h - margin_y,
            "slot": slot,
            "marker_r": marker_r,
        }

    def check(self, params: Mapping[str, Any]) -> None:
        k = params["knobs"]
        w, h = params["canvas"]
        c_lo, c_hi = bounds_of(k["curves"])
        t_hi = bounds_of(k["thickness_px"])[1]
        x_lo, x_hi = bounds_of(k["crossings"])
        f = self._frame(params, t_hi)
        need_h = (c_hi - 1) * f["slot"] + 2 * f["y_lo"]
        if h < need_h:
            raise UsageError(
                f"canvas {w}x{h} is too small for {c_hi} curves of {t_hi} px: the height must be at least "
                f"{math.ceil(need_h)} px; use a larger --canvas or fewer curves"
            )
        if f["x_end"] - f["x_start"] < 8 * f["slot"]:
            raise UsageError(f"canvas {w}x{h} is too narrow: the width must be at least {math.ceil(2 * f['x_start'] + 8 * f['slot'])} px")
        if not k["same_colour"] and c_hi > len(PALETTE):
            raise UsageError(f"{c_hi} curves with distinct colours: there are only {len(PALETTE)} colours; set same_colour=true")
        if c_lo < 2 and x_lo > 0:
            raise UsageError("one curve cannot cross anything: use curves >= 2 or crossings=0")
        if x_hi < 1:
            raise UsageError("the queried line must cross another line: crossings must allow at least 1")
        if k["exact_crossings"] and x_lo < c_hi - 1:
            raise UsageError(
                f"with exact_crossings, crossings must be at least curves - 1 = {c_hi - 1} (the queried line may have to "
                f"cross every other one to reach its end), got {x_lo}; raise crossings or set exact_crossings=false"
            )
        if k["exact_crossings"] and c_lo <= 2 <= c_hi:  # with 3+ curves and crossings >= curves - 1 every (query, answer, total) is drawable (tests/test_tracing.py)
            raise UsageError(
                "with exact_crossings, 2 curves cannot be drawn: two curves cross an odd number of times exactly when the "
                "queried line ends at the other end, so the total, drawn first, would give the answer away; "
                "use curves >= 3 or set exact_crossings=false"
            )
        max_x = (c_hi * (c_hi - 1) // 2) * (bounds_of(k["bends"])[1] + 1) * 2
        if x_lo > max_x:
            raise UsageError(
                f"{x_lo} crossings cannot be drawn with at most {c_hi} curves and {bounds_of(k['bends'])[1]} bends "
                f"(at most about {max_x}); lower crossings or add curves/bends"
            )

    # ------------------------------------------------------------------ sampling

    def sample(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene:
        k = params["knobs"]
        # The query and its answer are drawn first, with the scene's knobs, before any audit can
        # reject a scene: the queried start (A, B, ... from the top) and the end slot (from the top)
        # its curve reaches are uniform and independent, so where the ends sit says nothing about
        # which one is the answer. Scenes are then drawn until one passes with that curve crossing
        # at least one other.
        n = draw_int(rng, k["curves"])
        draw = {
            "n": n,
            "bends": draw_int(rng, k["bends"]),
            "thickness": draw_int(rng, k["thickness_px"]),
            "q": int(rng.integers(n)),
            "dest": int(rng.integers(n)),
            "total": draw_int(rng, k["crossings"]) if k["exact_crossings"] else None,
        }
        hint = "loosen the crossings range or the audit thresholds"
        f = self._frame(params, draw["thickness"])  # the same for every attempt
        return first_accepted(self.name, lambda: self._attempt(rng, params, f, **draw), k, hint)

    def _attempt(
        self, rng: np.random.Generator, params: Mapping[str, Any], f: Mapping[str, float], n: int, bends: int, thickness: int, q: int, dest: int, total: int | None
    ) -> Scene | str:
        """One scene, or the name of the audit rule it broke (cheapest checks first); `f`: the frame."""
        k = params["knobs"]
        w, h = params["canvas"]
        lo_x, hi_x = bounds_of(k["crossings"]) if total is None else (total, total)
        free = f["y_hi"] - f["y_lo"] - (n - 1) * f["slot"]
        offsets = np.arange(n) * f["slot"]

        def slots() -> np.ndarray:  # n sorted positions at least `slot` apart in [y_lo, y_hi]
            return f["y_lo"] + np.sort(dm.uniform(rng, 0.0, free, n)) + offsets

        y_start = slots()
        y_end = slots()
        if total is None:
            others = [int(v) for v in rng.permutation([s for s in range(n) if s != dest])]
            perm = np.array(others[:q] + [dest] + others[q:])  # curve i ends at end slot perm[i]; the queried one at dest
        else:  # curves cross at least as often as their ends are out of order, and as often mod 2
            options = _orders(n, q, dest, total)
            perm = np.array(options[int(rng.integers(len(options)))])
        frac, per_span, xs = _abscissae(f["x_start"], f["x_end"], bends)
        y_ctrl = np.empty((n, bends + 2))
        y_ctrl[:, 0] = y_start
        y_ctrl[:, -1] = y_end[perm]
        wiggle = float(dm.uniform(rng, *bounds_of(k["wiggle"])))
        straight = y_ctrl[:, :1] + frac[None, :] * (y_ctrl[:, -1:] - y_ctrl[:, :1])  # [n, bends]
        y_ctrl[:, 1:-1] = geo.clip(straight + dm.uniform(rng, -wiggle, wiggle, (n, bends)) * h, f["y_lo"], f["y_hi"])

        basis = _spline_basis(bends + 2, per_span)
        ys = dm.matmul(y_ctrl, basis.T)  # [n, M]
        # Build to match rather than wait for a match by chance: while the queried curve crosses
        # nothing (typically when it runs straight across at an edge) or the scene has fewer
        # crossings than it must, trade one interior control point between two curves that are
        # neighbours there, which makes them cross twice around it.
        for _ in range(2 * (hi_x + 1) if bends else 0):
            side = np.sign(ys[q][None, :] - ys)  # (row q is 0: no change)
            q_free = not (side[:, 1:] != side[:, :-1]).any()
            if not q_free and geo.graph_crossing_count(ys) >= lo_x:
                break
            c = 1 + int(rng.integers(bends))
            rank = np.argsort(y_ctrl[:, c], kind="stable")
            at = int(np.nonzero(rank == q)[0][0]) if q_free else int(rng.integers(n))
            i, j = (rank[at], rank[at + 1]) if at + 1 < n and (at == 0 or rng.random() < 0.5) else (rank[at - 1], rank[at])
            y_ctrl[[i, j], c] = y_ctrl[[j, i], c]
            ys = dm.matmul(y_ctrl, basis.T)
        ys = geo.snap(ys)

        half = thickness / 2.0
        # Curves stay inside the canvas.
        if ys.min() < k["border_px"] + half or ys.max() > h - k["border_px"] - half:
            return "border"
        if not lo_x <= geo.graph_crossing_count(ys) <= hi_x:
            return "crossing count"
        cross = geo.graph_crossings(xs, ys)
        if len(cross) and cross.angle_deg.min() < k["min_crossing_angle_deg"]:
            return "crossing angle"
        if len(cross) > 1:
            d = dm.hypot(*(cross.points[:, None, :] - cross.points[None, :, :]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            if d.min() < k["min_crossing_sep_px"]:
                return "crossings too close"
            # Two crossings of one pair must read as two: white between the strokes in the lens.
            pair_id = cross.first * n + cross.second
            for pid in np.nonzero(np.bincount(pair_id, minlength=n * n) > 1)[0]:  # pairs that cross more than once
                i, j = divmod(int(pid), n)
                a_ = _vertices(xs, ys[i])
                b_ = _vertices(xs, ys[j])
                # (both monotone in x on the same abscissae: monotone_crossings gives segment_crossings' answer)
                ab = geo.monotone_crossings(a_, xs, b_, xs)
                both = (ab, geo.seen_from_other(ab, b_))
                if geo.lens_narrower_than(a_, b_, (k["min_lens_gap_lw"] + 1.0) * thickness, crossings=both):
                    return "crossings too close (lens)"

        # Markers and labels.
        r = f["marker_r"]
        starts = np.stack([np.full(n, xs[0]), ys[:, 0]], axis=1)
        ends = np.stack([np.full(n, xs[-1]), ys[:, -1]], axis=1)
        markers = np.concatenate([starts, ends])  # [2n, 2]
        if len(cross):
            to_marker = dm.hypot(*(cross.points[:, None, :] - markers[None, :, :]).transpose(2, 0, 1))
            if to_marker.min() < r + k["crossing_clearance_px"]:
                return "crossing near marker"

        # Away from crossings, no two curves come closer than min_gap_lw line widths.
        min_gap = k["min_gap_lw"] * thickness
        gaps = geo.graph_vertex_gaps(xs, ys, reach=min_gap)  # [n, n, M]
        close = gaps < min_gap
        if close.any():
            # A close vertex of curve i to curve j is excused only near a crossing of i and j (all
            # pairs at once: which crossings belong to which pair, and which are near which vertex).
            vert = _vertices(xs, ys)  # [n, M, 2]
            x = np.arange(len(cross))
            of_pair = np.zeros((n, n, len(cross)), dtype=bool)  # [i, j, X]
            of_pair[cross.first, cross.second, x] = of_pair[cross.second, cross.first, x] = True
            reach = 1.25 * min_gap / dm.sin(np.radians(cross.angle_deg)) + VERTEX_SPACING_PX  # [X]
            dist = dm.hypot(*(vert[:, :, None, :] - cross.points[None, None, :, :]).transpose(3, 0, 1, 2))  # [n, M, X]
            excused = (of_pair[:, :, None, :] & (dist < reach)[:, None, :, :]).any(axis=-1)  # [i, j, M]
            if (close & ~excused).any():
                return "curves too close"

        # Curves keep clear of other curves' markers (markers sit at the first/last vertex).
        clear = r + half + k["marker_clearance_px"]
        band = int(math.ceil(clear / (xs[1] - xs[0]))) + 2
        for side, mk in ((slice(0, band + 1), starts), (slice(-band - 1, None), ends)):
            sx, sy = xs[side], ys[:, side]  # [S], [n, S]
            s0 = _vertices(sx[:-1], sy[:, :-1])  # [n, S-1, 2]
            s1 = _vertices(sx[1:], sy[:, 1:])
            dist = geo.point_segment_distance(mk[:, None, None, :], s0[None], s1[None]).min(axis=-1)  # [marker, curve]
            dist[np.arange(n), np.arange(n)] = np.inf
            if dist.min() < clear:
                return "curve near marker"

        # Scene accepted: labels, colours, query.
        end_numbers = rng.permutation(n) + 1  # number written at end slot s
        if k["same_colour"]:
            colours = [ONE_COLOUR] * n
        else:
            names = list(PALETTE)
            colours = [(names[c], PALETTE[names[c]]) for c in rng.choice(len(names), n, replace=False)]
        crossings_per_curve = np.bincount(np.concatenate([cross.first, cross.second]), minlength=n)
        if crossings_per_curve[q] == 0:
            return "no crossing on the queried curve"

        labels, label_boxes = [], []
        curves = []
        points = _vertices(xs, ys).tolist()  # [n][M][2]
        for i in range(n):
            letter = START_LETTERS[i]
            number = str(int(end_numbers[perm[i]]))
            for text, (mx, my), side in ((letter, starts[i], -1), (number, ends[i], +1)):
                tw, th, td = text_size(text, FONT_SCALE, FONT_THICKNESS)
                gap = r + k["label_gap_px"] + FONT_THICKNESS / 2.0 + 1.0
                ox = int(round(mx - 0.5 - gap - tw)) if side < 0 else int(round(mx - 0.5 + gap))
                oy = int(round(my - 0.5 + th / 2.0))
                box = text_box(text, (ox, oy), FONT_SCALE, FONT_THICKNESS)
                if box[0] < k["border_px"] * 0.5 or box[2] > w - k["border_px"] * 0.5:
                    return "label off canvas"
                labels.append({"text": text, "origin": [ox, oy], "box": [float(v) for v in box], "curve": i})
                label_boxes.append(box)
            curves.append(
                {
                    "start_label": letter,
                    "end_label": number,
                    "colour": colours[i][0],
                    "rgb": list(colours[i][1]),
                    "points": points[i],
                }
            )
        # Every pair of labels at once (geo.boxes_overlap's test), then every label against every crossing.
        lb = np.array(label_boxes)  # [L, 4]
        m_ = k["label_gap_px"]
        x0, y0, x1, y1 = lb[:, None, 0], lb[:, None, 1], lb[:, None, 2], lb[:, None, 3]  # [L, 1]
        apart = (x1 + m_ <= lb[None, :, 0]) | (lb[None, :, 2] + m_ <= x0) | (y1 + m_ <= lb[None, :, 1]) | (lb[None, :, 3] + m_ <= y0)
        if not apart[geo.pairs(len(lb))].all():
            return "labels overlap"
        if len(cross):
            px, py = cross.points[None, :, 0], cross.points[None, :, 1]  # [1, X]
            bx = geo.clip(px, x0, x1) - px
            by = geo.clip(py, y0, y1) - py
            if dm.hypot(bx, by).min() < k["crossing_clearance_px"]:
                return "crossing near label"

        marker_list = [
            {"curve": i, "kind": kind, "center": pt.tolist(), "radius": r}
            for kind, arr in (("start", starts), ("end", ends))
            for i, pt in enumerate(arr)
        ]
        end_box = next(lb for lb in labels if lb["curve"] == q and lb["text"] == curves[q]["end_label"])["box"]
        targets = [
            {"type": "disc", "center": ends[q].tolist(), "radius": r},
            {"type": "rect", "box": end_box},
        ]
        geometry = {
            "canvas": [w, h],
            "thickness_px": thickness,
            "font": {"scale": FONT_SCALE, "thickness_px": FONT_THICKNESS},
            "curves": curves,
            "markers": marker_list,
            "labels": labels,
            "crossings": [
                {"curves": [int(a), int(b)], "point": [round(float(x), 4), round(float(y), 4)], "angle_deg": round(float(t), 3)}
                for a, b, (x, y), t in zip(cross.first, cross.second, cross.points, cross.angle_deg)
            ],
            "query": {"curve": q, "start_label": curves[q]["start_label"], "end_label": curves[q]["end_label"]},
            "targets": targets,
        }
        knobs = {
            "curves": n,
            "bends": bends,
            "crossings": len(cross),
            "query_crossings": int(crossings_per_curve[q]),
            "same_colour": bool(k["same_colour"]),
            "thickness_px": thickness,
            "wiggle": round(wiggle, 6),
            "query_length_px": round(geo.polyline_length(np.stack([xs, ys[q]], axis=1)), 3),
        }
        question = self.question_template.format(start=curves[q]["start_label"])
        return Scene((w, h), question, curves[q]["end_label"], geometry, knobs)

    # ------------------------------------------------------------------ drawing

    def draw(self, geometry: Mapping[str, Any]) -> list[Primitive]:
        t = int(geometry["thickness_px"])
        font = geometry["font"]
        prims: list[Primitive] = [
            Polyline(np.asarray(c["points"]), tuple(c["rgb"]), t) for c in geometry["curves"]
        ]
        rgb = [tuple(c["rgb"]) for c in geometry["curves"]]
        prims += [Disc(tuple(m["center"]), m["radius"], rgb[m["curve"]]) for m in geometry["markers"]]
        prims += [
            Text(lb["text"], tuple(lb["origin"]), font["scale"], LABEL_RGB, font["thickness_px"]) for lb in geometry["labels"]
        ]
        return prims
