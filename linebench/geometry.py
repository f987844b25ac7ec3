"""Exact vector geometry on plain numpy arrays.

Conventions: canvas pixels, x to the right, y downwards, (0, 0) is the top-left corner of the
top-left pixel, so the pixel (col, row) covers [col, col + 1) x [row, row + 1). Polylines are
float arrays of shape [M, 2]. Nothing here draws, samples or does I/O. Transcendental functions,
hypot, interp and sums of products come from `detmath`, so rows get the same bits on every machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from . import detmath as dm


def clip(a, lo, hi):
    """`np.clip` without its per-call overhead (a few microseconds, paid thousands of times per
    scene by the audits): the same values, minimum(maximum(a, lo), hi)."""
    out = np.maximum(a, lo)
    return out if hi is None else np.minimum(out, hi)

# OpenCV draws with `shift=4` fractional bits: coordinates are multiples of 1/16 px. Geometry is
# snapped to the same lattice so that what we measure is exactly what gets drawn.
SUBPIXEL = 16


def snap(points: np.ndarray, step: float = 1.0 / SUBPIXEL) -> np.ndarray:
    """Round coordinates to the drawing lattice (multiples of `step`)."""
    return np.round(np.asarray(points, dtype=np.float64) / step) * step


# --------------------------------------------------------------------------- curves


def hermite_spline(points: np.ndarray, tangents: np.ndarray, samples_per_span: int) -> np.ndarray:
    """Flatten a cubic Hermite spline through `points` [K, 2] with `tangents` [K, 2].

    Returns [(K - 1) * samples_per_span + 1, 2]; the control points are vertices of the result.
    """
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(tangents, dtype=np.float64)
    t = np.arange(samples_per_span, dtype=np.float64) / samples_per_span  # [S]
    t2, t3 = t * t, t * t * t
    h00 = 2 * t3 - 3 * t2 + 1
    h10 = t3 - 2 * t2 + t
    h01 = -2 * t3 + 3 * t2
    h11 = t3 - t2
    # [K-1, S, 2]
    seg = (
        h00[None, :, None] * p[:-1, None, :]
        + h10[None, :, None] * m[:-1, None, :]
        + h01[None, :, None] * p[1:, None, :]
        + h11[None, :, None] * m[1:, None, :]
    )
    return np.concatenate([seg.reshape(-1, 2), p[-1:]], axis=0)


def catmull_rom_tangents(points: np.ndarray, flat_ends: bool = True) -> np.ndarray:
    """Catmull-Rom tangents (uniform parameter). With `flat_ends`, end tangents keep only the
    x component of the neighbouring chord, so a curve leaves its end markers horizontally."""
    p = np.asarray(points, dtype=np.float64)
    m = np.empty_like(p)
    m[1:-1] = (p[2:] - p[:-2]) / 2.0
    m[0] = p[1] - p[0]
    m[-1] = p[-1] - p[-2]
    if flat_ends:
        m[0, 1] = 0.0
        m[-1, 1] = 0.0
    return m


def monotone_cubic(xs: np.ndarray, ys: np.ndarray, step: float) -> np.ndarray:
    """Flatten the monotone cubic (Fritsch-Carlson PCHIP) through (xs, ys), xs strictly increasing,
    with vertices about `step` apart in x -> [M, 2]; the knots are vertices of the result.

    Between two knots the curve stays within their y-range (no overshoot), so curves that keep
    to disjoint horizontal bands between knots cannot meet there.
    """
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    h = np.diff(x)
    d = np.diff(y) / h  # secant slopes [K-1]
    m = np.empty_like(y)
    m[0], m[-1] = d[0], d[-1]
    if len(d) > 1:
        w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
        same = d[:-1] * d[1:] > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m[1:-1] = np.where(same, (w1 + w2) / (w1 / d[:-1] + w2 / d[1:]), 0.0)
    n = np.maximum(1, np.ceil(h / step).astype(np.int64))  # samples per span
    k = np.repeat(np.arange(len(h)), n)  # span of each output vertex after the first
    t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 1) / np.repeat(n, n)
    t2, t3 = t * t, t * t * t
    yy = (
        (2 * t3 - 3 * t2 + 1) * y[k]
        + (t3 - 2 * t2 + t) * h[k] * m[k]
        + (-2 * t3 + 3 * t2) * y[k + 1]
        + (t3 - t2) * h[k] * m[k + 1]
    )
    xx = x[k] + t * h[k]
    return np.concatenate([[[x[0], y[0]]], np.stack([xx, yy], axis=1)])


def polyline_length(poly: np.ndarray) -> float:
    d = np.diff(np.asarray(poly, dtype=np.float64), axis=0)
    return float(dm.hypot(d[:, 0], d[:, 1]).sum())


def acute_angle_deg(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Angle in degrees, in [0, 90], between lines along direction vectors d1 and d2 [..., 2]."""
    cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    dot = d1[..., 0] * d2[..., 0] + d1[..., 1] * d2[..., 1]
    return np.degrees(dm.arctan2(np.abs(cross), np.abs(dot)))


# --------------------------------------------------------------------------- crossings


@dataclass(frozen=True)
class Crossings:
    """Crossing points between polylines. All arrays have one entry per crossing."""

    first: np.ndarray  # [X] index of the first polyline (or 0 for a single pair)
    second: np.ndarray  # [X] index of the second polyline
    segment: np.ndarray  # [X] segment index in the first polyline
    points: np.ndarray  # [X, 2]
    angle_deg: np.ndarray  # [X] acute crossing angle
    # where known (monotone_crossings): each crossing's segment in the second polyline and its
    # parameter along that segment, which give the same crossings seen from it (`seen_from_other`)
    other_segment: np.ndarray | None = field(default=None, repr=False, compare=False)
    other_t: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @staticmethod
    def none() -> "Crossings":
        """No crossings (of one pair: both polylines' segments known, all empty)."""
        empty = np.zeros(0, dtype=np.int64)
        return Crossings(empty, empty, empty, np.zeros((0, 2)), np.zeros(0), empty, np.zeros(0))


def segment_crossings(a: np.ndarray, b: np.ndarray) -> Crossings:
    """Proper crossings between polylines `a` [M, 2] and `b` [K, 2] (any shape, all segment pairs).

    Parameters on both segments are half-open, t in [0, 1), so a crossing exactly at a shared
    vertex is counted once; the last vertex of a polyline is closed. Collinear overlaps have no
    single crossing point and are not reported (audits catch them as zero distance).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    p, r = a[:-1, None, :], (a[1:] - a[:-1])[:, None, :]  # [M-1, 1, 2]
    q, s = b[None, :-1, :], (b[1:] - b[:-1])[None, :, :]  # [1, K-1, 2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [M-1, K-1]
    qp = q - p
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # (near-)parallel: t, u inf or huge, no hit
        t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / denom
        u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / denom
    t_hi = np.where(np.arange(a.shape[0] - 1)[:, None] == a.shape[0] - 2, 1.0 + 1e-12, 1.0)
    u_hi = np.where(np.arange(b.shape[0] - 1)[None, :] == b.shape[0] - 2, 1.0 + 1e-12, 1.0)
    hit = (denom != 0) & (t >= 0) & (t < t_hi) & (u >= 0) & (u < u_hi)
    i, j = np.nonzero(hit)
    pts = a[i] + t[i, j][:, None] * (a[i + 1] - a[i])
    ang = acute_angle_deg(a[i + 1] - a[i], b[j + 1] - b[j])
    zeros = np.zeros(len(i), dtype=np.int64)
    return Crossings(zeros, zeros + 1, i.astype(np.int64), pts, ang)


def monotone_crossings(a: np.ndarray, ua: np.ndarray, b: np.ndarray, ub: np.ndarray) -> Crossings:
    """`segment_crossings(a, b)` for polylines that are both monotone along one axis: `ua`, `ub` are
    their vertices' strictly increasing coordinates along it. Only segments whose spans overlap on
    that axis can cross, so only those pairs are tested; the result is the same, in the same order."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lo, hi = overlap_window(ua, ub)
    width = int((hi - lo).max(initial=0))
    if width <= 0:
        return Crossings.none()
    j = lo[:, None] + np.arange(width)[None, :]  # [M-1, W] candidate segments of b
    ok = j < hi[:, None]
    i = np.broadcast_to(np.arange(len(a) - 1)[:, None], j.shape)[ok]
    j = j[ok]
    hit, pts, ang, u = segment_pair_crossings(a, i, b, j, len(b) - 2)
    i = i[hit]
    zeros = np.zeros(len(i), dtype=np.int64)
    return Crossings(zeros, zeros + 1, i.astype(np.int64), pts, ang, j[hit].astype(np.int64), u)


def overlap_window(ua: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each segment k of a polyline with increasing vertex coordinates `ua`: the segments
    [lo[k], hi[k]) of one with coordinates `ub` whose spans can overlap it (monotone_crossings'
    candidates)."""
    lo = clip(np.searchsorted(ub, ua[:-1], side="right") - 1, 0, len(ub) - 2)  # first b segment reaching a's start
    hi = clip(np.searchsorted(ub, ua[1:], side="left"), 1, len(ub) - 1)  # one past the last b segment starting before a's end
    return lo, hi


def seen_from_other(cr: Crossings, b: np.ndarray) -> Crossings:
    """The crossings of a with b (`cr`, from monotone_crossings(a, ua, b, ub)) as b sees them: exactly
    monotone_crossings(b, ub, a, ua), without testing the segment pairs again. Swapping the two
    polylines only negates both sides of each parameter's quotient (x - y = -(y - x) exactly in
    floating point), so b's parameter on a crossing is the `other_t` already computed, the same
    pairs cross, and b's point is computed from it as monotone_crossings would; in its order (by b's
    segment, then a's). Its `other_segment` is a's segment; its `other_t` is not known (None)."""
    if cr.other_segment is None or cr.other_t is None:
        raise ValueError("seen_from_other needs crossings from monotone_crossings (with other_segment and other_t)")
    b = np.asarray(b, dtype=np.float64)
    order = np.lexsort((cr.segment, cr.other_segment))
    j, u = cr.other_segment[order], cr.other_t[order]
    pts = b[j] + u[:, None] * (b[j + 1] - b[j])
    return Crossings(cr.first[order], cr.second[order], j, pts, cr.angle_deg[order], cr.segment[order])  # (a's parameters: not kept)


def segment_pair_crossings(a: np.ndarray, i: np.ndarray, b: np.ndarray, j: np.ndarray, b_last) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For candidate pairs (segment i[k] of polyline a, segment j[k] of polyline b): which cross
    (segment_crossings' rule: half-open parameters, the last segment of each polyline closed;
    `b_last`: the index of b's last segment, per pair or one for all), and the crossing points
    [H, 2], acute angles [H] and parameters along b's segments [H] of the H pairs that do."""
    p, r = a[i], a[i + 1] - a[i]
    q, s = b[j], b[j + 1] - b[j]
    denom = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
    qp = q - p
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / denom
        u = (qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]) / denom
    t_hi = np.where(i == len(a) - 2, 1.0 + 1e-12, 1.0)
    u_hi = np.where(j == b_last, 1.0 + 1e-12, 1.0)
    hit = (denom != 0) & (t >= 0) & (t < t_hi) & (u >= 0) & (u < u_hi)
    i, j, t = i[hit], j[hit], t[hit]
    pts = a[i] + t[:, None] * (a[i + 1] - a[i])
    return hit, pts, acute_angle_deg(a[i + 1] - a[i], b[j + 1] - b[j]), u[hit]


@functools.lru_cache(maxsize=64)
def pairs(c: int) -> tuple[np.ndarray, np.ndarray]:
    """np.triu_indices(c, k=1) (every pair i < j of c things), computed once per c."""
    first, second = np.triu_indices(c, k=1)
    first.setflags(write=False)
    second.setflags(write=False)
    return first, second


def graph_crossing_count(ys: np.ndarray) -> int:
    """Number of crossings `graph_crossings` would return (cheap: no points, no angles)."""
    first, second = pairs(ys.shape[0])
    pos = ys[first] > ys[second]  # [P, M]
    return int(np.count_nonzero(pos[:, :-1] != pos[:, 1:]))


def graph_crossings(xs: np.ndarray, ys: np.ndarray) -> Crossings:
    """All pairwise crossings of C polylines that share abscissae: curve c is (xs, ys[c]).

    `xs` [M] strictly increasing, `ys` [C, M]. Because segment k of every curve spans the same
    [xs[k], xs[k+1]], two segments cross exactly when the difference of the curves changes sign
    there, so this is exact and needs no all-segment-pairs test. Values equal to zero count with
    the negative side, which makes each vertex belong to one segment only. The one inexact case is
    two curves touching at a shared vertex without crossing (counted 0 or 2 at one point); the
    tracing audit rejects it (two crossings at distance 0, or a gap of 0).
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    first, second = pairs(ys.shape[0])
    d = ys[first] - ys[second]  # [P, M]
    pos = d > 0
    pair, k = np.nonzero(pos[:, :-1] != pos[:, 1:])
    d0, d1 = d[pair, k], d[pair, k + 1]
    t = d0 / (d0 - d1)
    dx = xs[k + 1] - xs[k]
    fi, se = first[pair], second[pair]
    yi0, dyi = ys[fi, k], ys[fi, k + 1] - ys[fi, k]
    dyj = ys[se, k + 1] - ys[se, k]
    pts = np.empty((k.size, 2))
    pts[:, 0] = xs[k] + t * dx
    pts[:, 1] = yi0 + t * dyi
    # acute angle between directions (dx, dyi) and (dx, dyj)
    ang = np.degrees(dm.arctan2(np.abs(dx * (dyj - dyi)), np.abs(dx * dx + dyi * dyj)))
    return Crossings(fi, se, k, pts, ang)


def _lens_arcs(a: np.ndarray, b: np.ndarray, crossings: tuple[Crossings, Crossings] | None) -> list[tuple]:
    """Per polyline (a, then b): its points as float64, the arc length at each vertex, and the sorted
    arc lengths of its crossings with the other one (lens ends)."""
    arcs = []
    for side, (p, q) in enumerate(((a, b), (b, a))):
        p = np.asarray(p, dtype=np.float64)
        cr = crossings[side] if crossings is not None else segment_crossings(p, q)
        cum = np.concatenate([[0.0], np.cumsum(dm.hypot(*np.diff(p, axis=0).T))])
        s = np.sort(cum[cr.segment] + dm.hypot(*(cr.points - p[cr.segment]).T))
        arcs.append((p, cum, s))
    if len(arcs[0][2]) != len(arcs[1][2]):  # pragma: no cover - both count the same crossings
        raise ValueError("lens_widths: the two polylines disagree on their crossings")
    return arcs


def _at(p: np.ndarray, cum: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """Points at arc lengths `ss` along polyline `p` (vertex arc lengths `cum`)."""
    return dm.interp(ss, cum, p)  # [S, 2]: each coordinate as np.interp(ss, cum, p[:, c])


def _dense_at(s0: float, s1: float, step_px: float) -> np.ndarray:
    """Arc lengths every step_px over the lens arc [s0, s1] (both ends included)."""
    return np.linspace(s0, s1, max(2, int(np.ceil((s1 - s0) / step_px)) + 1))


def _exact(p: np.ndarray, cum: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """The lens arc [s0, s1] of `p` as a polyline: its two ends and the vertices between."""
    return _at(p, cum, np.concatenate([[s0], cum[(cum > s0) & (cum < s1)], [s1]]))


def lens_widths(a: np.ndarray, b: np.ndarray, step_px: float = 1.0, crossings: tuple[Crossings, Crossings] | None = None) -> np.ndarray:
    """For polylines `a` and `b` that cross X times and are both monotone in one direction (their
    crossings come in the same order along each), the widest centre-line distance between them
    inside each of the X - 1 lenses between consecutive crossings: the largest distance from a point
    of either arc (points every `step_px`) to the other arc. A lens not much wider than a line reads
    as one blob, not as two crossings. `crossings`: `segment_crossings(a, b)` and `(b, a)`, if known."""
    (pa, ca, sa), (pb, cb, sb) = _lens_arcs(a, b, crossings)
    widths = []
    for a0, a1, b0, b1 in zip(sa[:-1], sa[1:], sb[:-1], sb[1:]):
        ea, eb = _exact(pa, ca, a0, a1), _exact(pb, cb, b0, b1)
        widths.append(max(points_to_polyline(_at(pa, ca, _dense_at(a0, a1, step_px)), eb).max(),
                          points_to_polyline(_at(pb, cb, _dense_at(b0, b1, step_px)), ea).max()))
    return np.asarray(widths, dtype=np.float64)


def lens_narrower_than(a: np.ndarray, b: np.ndarray, limit: float, step_px: float = 1.0, crossings: tuple[Crossings, Crossings] | None = None) -> bool:
    """`lens_widths(a, b, step_px, crossings).min() < limit` (False without a lens), measuring less:
    a lens is at least `limit` wide as soon as one of its points is that far from the other arc, so
    each lens first tries the middle point of each arc and is measured in full only when both are
    nearer. The distances are the same numbers lens_widths computes, so the answer is the same."""
    (pa, ca, sa), (pb, cb, sb) = _lens_arcs(a, b, crossings)
    for a0, a1, b0, b1 in zip(sa[:-1], sa[1:], sb[:-1], sb[1:]):
        ea, eb = _exact(pa, ca, a0, a1), _exact(pb, cb, b0, b1)
        sa_, sb_ = _dense_at(a0, a1, step_px), _dense_at(b0, b1, step_px)
        mid_a, mid_b = len(sa_) // 2, len(sb_) // 2
        if (points_to_polyline(_at(pa, ca, sa_[mid_a:mid_a + 1]), eb)[0] >= limit
                or points_to_polyline(_at(pb, cb, sb_[mid_b:mid_b + 1]), ea)[0] >= limit):
            continue
        if points_to_polyline(_at(pa, ca, sa_), eb).max() < limit and points_to_polyline(_at(pb, cb, sb_), ea).max() < limit:
            return True
    return False


# --------------------------------------------------------------------------- distances


def point_segment_distance(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Distance from points `p` to segments s0->s1; all arguments broadcast over leading axes [..., 2]."""
    d = s1 - s0
    dd = (d * d).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.where(dd > 0, ((p - s0) * d).sum(-1) / dd, 0.0)
    t = clip(t, 0.0, 1.0)
    proj = s0 + t[..., None] * d
    diff = p - proj
    return np.sqrt((diff * diff).sum(-1))


def points_to_polyline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from each of `points` [P, 2] to the polyline `poly` [M, 2] -> [P]."""
    pts = np.asarray(points, dtype=np.float64)[:, None, :]
    poly = np.asarray(poly, dtype=np.float64)
    return point_segment_distance(pts, poly[None, :-1], poly[None, 1:]).min(axis=1)


def closest_points(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Points of closest approach (pa on a, pb on b) of two non-crossing polylines and their distance.

    Between non-crossing polylines the minimum is reached at a vertex of one of them and its
    projection on a segment of the other, so vertex-to-segment projections are exhaustive."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    best = (np.inf, None, None)
    for p, q, swap in ((a, b, False), (b, a, True)):
        s0, d = q[None, :-1], (q[1:] - q[:-1])[None]  # [1, S, 2]
        dd = (d * d).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = clip(np.where(dd > 0, ((p[:, None] - s0) * d).sum(-1) / dd, 0.0), 0.0, 1.0)  # [V, S]
        proj = s0 + t[..., None] * d  # [V, S, 2]
        dist = dm.hypot(*(p[:, None] - proj).transpose(2, 0, 1))
        v, s = np.unravel_index(np.argmin(dist), dist.shape)
        if dist[v, s] < best[0]:
            pair = (proj[v, s], p[v]) if swap else (p[v], proj[v, s])
            best = (float(dist[v, s]), *pair)
    return best[1], best[2], best[0]


def polyline_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact minimum distance between two polylines (0 if they cross or touch)."""
    if len(segment_crossings(a, b)):
        return 0.0
    # Between non-crossing polylines the minimum is reached at a vertex of one of them.
    return float(min(points_to_polyline(a, b).min(), points_to_polyline(b, a).min()))


def graph_vertex_gaps(xs: np.ndarray, ys: np.ndarray, reach: float) -> np.ndarray:
    """For curves sharing abscissae, the distance from every vertex of curve i to curve j.

    Returns [C, C, M] (the diagonal is +inf). Exact where below `reach`; +inf elsewhere means
    "at least reach". Only segments whose x-span lies within `reach` of a vertex can be that
    close, and a vertex whose ordinate is more than `reach` outside the other curve's y-extent
    over those segments cannot be either; the exact point-segment distances are computed only for
    the (rare) vertices that pass both filters.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    c, m = ys.shape
    w = int(np.ceil(reach / float(np.min(np.diff(xs))))) + 1
    seg = clip(np.arange(m)[:, None] + np.arange(-w, w)[None, :], 0, m - 2)  # [M, W] segment ids
    ends = np.concatenate([seg, seg[:, -1:] + 1], axis=1)  # [M, W+1] vertices spanned
    near = ys[:, ends]  # [C, M, W+1]
    lo = near.min(axis=-1)  # [C, M] y-extent of curve j's segments near vertex k
    hi = near.max(axis=-1)
    yi = ys[:, None, :]  # [C(i), 1, M]
    cand = (yi > lo[None, :, :] - reach) & (yi < hi[None, :, :] + reach)  # [C, C, M]
    cand[np.arange(c), np.arange(c)] = False
    out = np.full((c, c, m), np.inf)
    i, j, k = np.nonzero(cand)
    if i.size:
        s = seg[k]  # [K, W]
        px, py = xs[k][:, None], ys[i, k][:, None]
        x0, x1 = xs[s], xs[s + 1]
        y0, y1 = ys[j[:, None], s], ys[j[:, None], s + 1]
        dx, dy = x1 - x0, y1 - y0
        t = clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        out[i, j, k] = dm.hypot(px - x0 - t * dx, py - y0 - t * dy).min(axis=1)
    return out


def segments_hit_box(s0: np.ndarray, s1: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Whether segments s0->s1 [..., 2] touch the closed box (x0, y0, x1, y1) (slab test)."""
    lo = np.asarray(box[:2], dtype=np.float64)
    hi = np.asarray(box[2:], dtype=np.float64)
    d = s1 - s0
    t0 = np.zeros(d.shape[:-1])
    t1 = np.ones(d.shape[:-1])
    ok = np.ones(d.shape[:-1], dtype=bool)
    for ax in (0, 1):
        da, pa = d[..., ax], s0[..., ax]
        par = da == 0
        ok &= ~(par & ((pa < lo[ax]) | (pa > hi[ax])))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # +-inf slabs are what we want
            ta = (lo[ax] - pa) / da
            tb = (hi[ax] - pa) / da
        near = np.where(par, -np.inf, np.minimum(ta, tb))
        far = np.where(par, np.inf, np.maximum(ta, tb))
        t0 = np.maximum(t0, near)
        t1 = np.minimum(t1, far)
    return ok & (t0 <= t1)


def box_polyline_distance(box: np.ndarray, poly: np.ndarray) -> float:
    """Exact distance between the axis-aligned box (x0, y0, x1, y1) and a polyline."""
    poly = np.asarray(poly, dtype=np.float64)
    s0, s1 = poly[:-1], poly[1:]
    if segments_hit_box(s0, s1, box).any():
        return 0.0
    x0, y0, x1, y1 = (float(v) for v in box)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    # Vertex-to-box distances plus corner-to-segment distances cover every closest pair.
    dx = np.maximum(np.maximum(x0 - poly[:, 0], poly[:, 0] - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - poly[:, 1], poly[:, 1] - y1), 0.0)
    vertex = float(dm.hypot(dx, dy).min())
    corner = float(points_to_polyline(corners, poly).min())
    return min(vertex, corner)


def boxes_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Whether boxes (x0, y0, x1, y1) come closer than `margin` (overlap when margin = 0)."""
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


# --------------------------------------------------------------------------- exact areas


def rect_cell_areas(box: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Area of the box (x0, y0, x1, y1) inside each cell of the grid -> [rows, cols]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ox = clip(np.minimum(x_edges[1:], x1) - np.maximum(x_edges[:-1], x0), 0.0, None)
    oy = clip(np.minimum(y_edges[1:], y1) - np.maximum(y_edges[:-1], y0), 0.0, None)
    return oy[:, None] * ox[None, :]


def _quarter_disc_area(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Area of the disc of radius r at the origin inside [0, x] x [0, y] for x, y >= 0."""
    x = np.minimum(x, r)
    y = np.minimum(y, r)
    xc = np.sqrt(np.maximum(r * r - y * y, 0.0))  # where the circle reaches height y
    lo = np.minimum(x, xc)

    # prim(t) = 0.5 * (t * sqrt(r^2 - t^2) + r^2 * asin(t / r)), the antiderivative of sqrt(r^2 - t^2),
    # at x and at lo in one go: dm.arcsin costs ~50 numpy operations per call, whatever the size
    t = np.concatenate([x.ravel(), lo.ravel()])
    prim = 0.5 * (t * np.sqrt(np.maximum(r * r - t * t, 0.0)) + r * r * dm.arcsin(clip(t / r, -1.0, 1.0)))
    prim_x, prim_lo = prim[: x.size].reshape(x.shape), prim[x.size :].reshape(lo.shape)
    return y * lo + prim_x - prim_lo


def disc_cell_areas(center: np.ndarray, radius: float, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Exact area of the disc inside each cell of the grid -> [rows, cols].

    Uses the signed corner function g(x, y) = area of the disc in [0, x] x [0, y] (relative to
    the centre, by symmetry sign(x) sign(y) times a quarter-disc area), so each cell's area is
    g(x1, y1) - g(x0, y1) - g(x1, y0) + g(x0, y0): closed form, no sampling.
    """
    gx = np.asarray(x_edges, dtype=np.float64) - float(center[0])
    gy = np.asarray(y_edges, dtype=np.float64) - float(center[1])
    area = np.zeros((gy.size - 1, gx.size - 1))
    if radius <= 0:
        return area
    # Only cells overlapping the disc's bounding box can hold any of it (the others stay exactly
    # 0, as the nearest-point rule below would make them): the same numbers on a smaller window.
    x0 = max(int(np.searchsorted(gx, -radius, side="right")) - 1, 0)
    x1 = min(int(np.searchsorted(gx, radius, side="left")), gx.size - 1)
    y0 = max(int(np.searchsorted(gy, -radius, side="right")) - 1, 0)
    y1 = min(int(np.searchsorted(gy, radius, side="left")), gy.size - 1)
    if x1 <= x0 or y1 <= y0:
        return area
    gx, gy = gx[x0:x1 + 1], gy[y0:y1 + 1]
    # [1, cols+1] and [rows+1, 1]: the quarter-disc formula broadcasts them to the window's corners
    # (elementwise the same operations as on a meshgrid, without building one)
    sign = np.sign(gy)[:, None] * np.sign(gx)[None, :]
    g = sign * _quarter_disc_area(np.abs(gx)[None, :], np.abs(gy)[:, None], float(radius))
    win = np.maximum((g[1:, 1:] - g[:-1, 1:]) - (g[1:, :-1] - g[:-1, :-1]), 0.0)
    # The corner differences leave ~1e-15 in cells the disc does not reach; such a cell must be
    # exactly 0, or it would count as a target token. A cell is reached iff its nearest point to
    # the centre is inside the disc.
    near_x = clip(0.0, gx[:-1], gx[1:])  # [cols] offset of the cell's nearest x from the centre
    near_y = clip(0.0, gy[:-1], gy[1:])
    win[dm.hypot(near_y[:, None], near_x[None, :]) >= radius] = 0.0
    area[y0:y1, x0:x1] = win
    return area


def _next(a: np.ndarray) -> np.ndarray:
    """Each element's successor around a closed polygon: np.roll(a, -1, axis=0) without its overhead."""
    return np.concatenate((a[1:], a[:1]))


def polygon_area(points: np.ndarray) -> float:
    """Absolute area of a simple polygon [M, 2] (shoelace; may be concave)."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p[0]  # relative to a vertex: degenerate (collinear) pieces come out exactly 0
    return 0.5 * abs(float(dm.matmul(p[:, 0], _next(p[:, 1])) - dm.matmul(p[:, 1], _next(p[:, 0]))))


def _clip_half_plane(poly: np.ndarray, axis: int, value: float, keep_above: bool) -> np.ndarray:
    """One Sutherland-Hodgman step: the part of `poly` with coordinate `axis` >= value (or <=).

    Vertex i (if kept) is followed by the crossing on edge i -> i+1 (if any), which keeps the
    boundary order. Crossings get exactly `value` on the clip axis."""
    s = poly[:, axis] - value if keep_above else value - poly[:, axis]
    inside = s >= 0
    if inside.all():
        return poly
    if not inside.any():
        return poly[:0]
    nxt = _next(poly)
    s_n = _next(s)
    cross = inside != _next(inside)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.where(cross, s / (s - s_n), 0.0)
    inter = poly + t[:, None] * (nxt - poly)
    inter[:, axis] = value
    out = np.stack([poly, inter], axis=1).reshape(-1, 2)
    return out[np.stack([inside, cross], axis=1).reshape(-1)]


def _below_left_areas(p: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """G[j, i] = +-area of the polygon `p` inside {x <= xs[i], y <= ys[j]} (sign: orientation).

    The horizontal chord of a simple polygon at height y, clipped to x <= X, has length
    |sum over the edges crossing y of dir(edge) * min(x_edge(y), X)| (crossings alternate in
    direction), and the sign is the same at every y. So G is a sum over edges of the integral of
    min(x_edge(y), X) dy up to Y: closed form per edge, vectorised over edges, X and Y.
    """
    a, b = p, _next(p)
    keep = a[:, 1] != b[:, 1]  # horizontal edges cross no horizontal line
    a, b = a[keep], b[keep]
    down = (b[:, 1] > a[:, 1])[:, None]
    lo, hi = np.where(down, a, b), np.where(down, b, a)  # lower / upper end in y
    direction = np.where(down[:, 0], 1.0, -1.0)
    slope = (hi[:, 0] - lo[:, 0]) / (hi[:, 1] - lo[:, 1])  # dx / dy
    span = (clip(ys[None, :], lo[:, 1:2], hi[:, 1:2]) - lo[:, 1:2])[:, :, None]  # [E, NY, 1]
    fu = lo[:, 0][:, None, None]  # x at the lower end
    fv = fu + slope[:, None, None] * span  # x where the edge leaves y <= Y
    gu, gv = fu - xs[None, None, :], fv - xs[None, None, :]  # [E, NY, NX]: x - X at both ends
    gp, gn = np.maximum(gu, gv), np.minimum(gu, gv)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        beyond = np.where(gn >= 0, span * (gu + gv) / 2.0, np.where(gp <= 0, 0.0, span * gp * gp / (2.0 * (gp - gn))))
    per_edge = span * (fu + fv) / 2.0 - beyond  # [E, NY, NX]
    e, ny, nx = per_edge.shape
    return dm.matmul(direction, per_edge.reshape(e, ny * nx)).reshape(ny, nx)  # signed sum over edges, in order


def _cell_area_by_clipping(p: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> float:
    """Sutherland-Hodgman clip against one cell, then the shoelace area. With a convex clip
    region the clipped outline may run back and forth along the cell border, but such degenerate
    edges enclose no area, so this is exact for concave polygons too (and exactly 0 for a cell
    the polygon only touches)."""
    piece = _clip_half_plane(_clip_half_plane(p, 0, x0, True), 0, x1, False)
    if piece.shape[0] >= 3:
        piece = _clip_half_plane(_clip_half_plane(piece, 1, y0, True), 1, y1, False)
    return polygon_area(piece) if piece.shape[0] >= 3 else 0.0


def polygon_cell_areas(points: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Exact area of a simple polygon [M, 2] (concave allowed, e.g. a star) inside each cell of the
    grid -> float64 [rows, cols].

    Like `disc_cell_areas`: a corner function G(X, Y) = area in {x <= X, y <= Y}, in closed form
    (`_below_left_areas`), evaluated on the grid edges within the polygon's bounding box; each
    cell is G(x1, y1) - G(x0, y1) - G(x1, y0) + G(x0, y0). Cells that come out (near) zero are
    recomputed by clipping, so a cell the polygon does not reach, or only touches, is exactly 0.
    """
    p = np.asarray(points, dtype=np.float64)
    xe = np.asarray(x_edges, dtype=np.float64)
    ye = np.asarray(y_edges, dtype=np.float64)
    out = np.zeros((ye.size - 1, xe.size - 1))
    if p.shape[0] < 3:
        return out
    (x_lo, y_lo), (x_hi, y_hi) = p.min(axis=0), p.max(axis=0)
    cols = np.nonzero((xe[1:] > x_lo) & (xe[:-1] < x_hi))[0]
    rows = np.nonzero((ye[1:] > y_lo) & (ye[:-1] < y_hi))[0]
    if cols.size == 0 or rows.size == 0:
        return out
    c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    q = p - (x_lo, y_lo)  # small coordinates: less cancellation
    w, h = x_hi - x_lo, y_hi - y_lo
    g = _below_left_areas(q, clip(xe[c0 : c1 + 1] - x_lo, 0.0, w), clip(ye[r0 : r1 + 1] - y_lo, 0.0, h))
    signed = float(dm.matmul(q[:, 0], _next(q[:, 1])) - dm.matmul(q[:, 1], _next(q[:, 0])))
    g = g if signed > 0 else -g
    block = (g[1:, 1:] - g[:-1, 1:]) - (g[1:, :-1] - g[:-1, :-1])
    tiny = 1e-9 * ((w + h) * (w + h))  # far above rounding, far below any cell a marker really reaches
    for r, c in zip(*np.nonzero(block < tiny)):
        block[r, c] = _cell_area_by_clipping(p, xe[c0 + c], xe[c0 + c + 1], ye[r0 + r], ye[r0 + r + 1])
    out[r0:r1, c0:c1] = block
    return out
