"""The tracing generator: audits hold, answers are right by an independent pixel-level check."""

from collections import Counter

import numpy as np
import pytest

from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec, get_task, resolve_params
from pixel_audit import check_tracing

TASK = get_task("tracing")


def scenes(level, count, seed=0, canvas=(448, 448)):
    params = resolve_params(TASK, level, ParamSpec(canvas, level, {}))
    rng = np.random.default_rng(seed)
    return params, [TASK.sample(rng, params) for _ in range(count)]


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_pixels_agree_with_the_answer(level):
    """The independent pixel checker (benchmarks/pixel_audit.py): the start marker's curve drawn
    alone reaches exactly the answer's end marker; with distinct colours, so does following the
    start marker's colour through the real picture. A wrong answer must be caught."""
    maker = RowMaker(RunSpec("tracing", n=12, seed=11, params=ParamSpec(difficulty=level), maps=()))
    for i in range(12):
        row = maker(i)
        assert check_tracing(row) is None
        assert check_tracing(dict(row, answer=str(int(row["answer"]) % 8 + 1))) is not None


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_audit_holds_by_independent_geometry(level):
    params, batch = scenes(level, 30, seed=3)
    k = params["knobs"]
    w, h = params["canvas"]
    for s in batch:
        g = s.geometry
        curves = [np.array(c["points"]) for c in g["curves"]]
        t = g["thickness_px"]
        pts, angles = [], []
        for i in range(len(curves)):
            assert curves[i][:, 1].min() >= k["border_px"] and curves[i][:, 1].max() <= h - k["border_px"]
            for j in range(i + 1, len(curves)):
                c = geo.segment_crossings(curves[i], curves[j])
                pts += list(c.points)
                angles += list(c.angle_deg)
                if len(c) == 0:
                    assert geo.polyline_distance(curves[i], curves[j]) >= k["min_gap_lw"] * t - 1e-9
        assert len(pts) == s.knobs["crossings"] == len(g["crossings"])
        lo, hi = k["crossings"]
        assert lo <= len(pts) <= hi
        assert min(angles) >= k["min_crossing_angle_deg"]
        pts = np.array(pts)
        if len(pts) > 1:
            d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1)) + np.eye(len(pts)) * 1e9
            assert d.min() >= k["min_crossing_sep_px"]
        boxes = [np.array(lb["box"]) for lb in g["labels"]]
        for a in range(len(boxes)):
            assert 0 <= boxes[a][0] and boxes[a][2] <= w and 0 <= boxes[a][1] and boxes[a][3] <= h
            for b in range(a + 1, len(boxes)):
                assert not geo.boxes_overlap(boxes[a], boxes[b])
            for c in curves:
                assert geo.box_polyline_distance(boxes[a], c) >= k["label_gap_px"]
        for m in g["markers"]:
            for ci, c in enumerate(curves):
                if ci != m["curve"]:
                    assert geo.points_to_polyline(np.array([m["center"]]), c)[0] >= m["radius"] + t / 2
        q = g["query"]["curve"]
        assert s.knobs["query_crossings"] >= 1
        assert s.answer == g["curves"][q]["end_label"]
        assert sorted(c["end_label"] for c in g["curves"]) == [str(i) for i in range(1, len(curves) + 1)]


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_levels_respect_their_knobs(level):
    params, batch = scenes(level, 20, seed=9)
    k = params["knobs"]
    for s in batch:
        for name in ("curves", "bends", "thickness_px"):
            lo, hi = (k[name], k[name]) if not isinstance(k[name], list) else k[name]
            assert lo <= s.knobs[name] <= hi
        assert s.knobs["same_colour"] == k["same_colour"]
        colours = [c["colour"] for c in s.geometry["curves"]]
        assert (len(set(colours)) == 1) if k["same_colour"] else (len(set(colours)) == len(colours))


def test_sampling_is_a_pure_function_of_seed_and_params():
    params = resolve_params(TASK, "medium", ParamSpec())
    a = TASK.sample(np.random.default_rng(42), params)
    b = TASK.sample(np.random.default_rng(42), params)
    assert a.geometry == b.geometry and a.answer == b.answer


def test_targets_are_the_queried_end_marker_and_its_label():
    _, (s,) = scenes("easy", 1, seed=1)
    g = s.geometry
    q = g["query"]["curve"]
    disc, rect = g["targets"]
    assert disc["center"] == g["curves"][q]["points"][-1]
    label = next(lb for lb in g["labels"] if lb["box"] == rect["box"])
    assert label["text"] == s.answer


def test_non_square_canvas():
    _, batch = scenes("medium", 5, seed=2, canvas=(640, 360))
    for s in batch:
        assert s.canvas == (640, 360)
        pts = np.concatenate([np.array(c["points"]) for c in s.geometry["curves"]])
        assert pts[:, 0].max() < 640 and pts[:, 1].max() < 360


@pytest.mark.parametrize(
    "canvas,overrides,message",
    [
        ((448, 120), {"curves": 6}, "too small"),
        ((448, 448), {"curves": 8, "same_colour": True, "crossings": [1, 3], "exact_crossings": False}, None),  # allowed
        ((448, 448), {"curves": 5, "crossings": [2, 6]}, "at least curves - 1 = 4"),
        ((448, 448), {"curves": 2, "crossings": [50, 60], "bends": 0, "exact_crossings": False}, "50 crossings cannot be drawn"),
        ((448, 448), {"curves": 2, "crossings": [1, 3]}, "2 curves cannot be drawn"),  # a raw ValueError from sampling before
        ((448, 448), {"curves": [2, 4], "crossings": [3, 5]}, "2 curves cannot be drawn"),
        ((448, 448), {"curves": 2, "crossings": [1, 3], "exact_crossings": False}, None),
        ((448, 448), {"crossings": 0}, "must cross"),
        ((96, 448), {}, "too narrow"),
    ],
)
def test_impossible_parameters_are_refused(canvas, overrides, message):
    spec = ParamSpec(canvas, "easy", overrides)
    if message is None:
        resolve_params(TASK, "easy", spec)
        return
    with pytest.raises(UsageError, match=message):
        resolve_params(TASK, "easy", spec)


def end_rank(s):
    g = s.geometry
    ends = sorted(m["center"][1] for m in g["markers"] if m["kind"] == "end")
    q = g["query"]["curve"]
    return ends.index(next(m["center"][1] for m in g["markers"] if m["kind"] == "end" and m["curve"] == q))


def test_the_queried_curve_ends_anywhere_whatever_it_starts():
    """The end slot (from the top) the queried curve reaches is uniform and independent of its
    start: straight across is as likely as any other end (it was under-chosen when the query was
    picked after the scene)."""
    params, batch = scenes("easy", 900, seed=12)
    table = np.zeros((3, 3))
    for s in batch:
        table[s.geometry["query"]["curve"], end_rank(s)] += 1
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    assert ((table - expected) ** 2 / expected).sum() < 18.5  # chi-square, 4 dof, p = 0.001
    assert abs(np.trace(table) / table.sum() - 1 / 3) < 0.05  # straight across: a third of the time
    near = 0
    for s in batch:
        g = s.geometry
        y0 = next(m["center"][1] for m in g["markers"] if m["kind"] == "start" and m["curve"] == g["query"]["curve"])
        ends = sorted(m["center"][1] for m in g["markers"] if m["kind"] == "end")
        near += int(np.argmin(np.abs(np.array(ends) - y0))) == end_rank(s)
    assert abs(near / len(batch) - 1 / 3) < 0.05  # the "nearest end in height" guess is at chance


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_the_total_is_drawn_first_and_met_exactly(level):
    params, batch = scenes(level, 120, seed=13)
    lo, hi = params["knobs"]["crossings"]
    totals = Counter(s.knobs["crossings"] for s in batch)
    assert set(totals) == set(range(lo, hi + 1))
    assert all(s.knobs["crossings"] == len(s.geometry["crossings"]) and s.knobs["query_crossings"] > 0 for s in batch)


def test_end_assignments_realise_the_total():
    from generators.tracing import _orders

    for n, q, dest, total in [(3, 0, 0, 2), (3, 0, 2, 2), (5, 2, 4, 4), (5, 0, 0, 5), (4, 3, 0, 3)]:
        options = _orders(n, q, dest, total)
        assert options
        for perm in options:
            inv = sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))
            assert perm[q] == dest and inv <= total and (total - inv) % 2 == 0
    assert _orders(3, 0, 2, 1) == ()  # the top curve cannot reach the bottom end with one crossing


def test_every_query_answer_and_total_the_check_allows_is_drawable():
    """The check's rule, against `_orders` by brute force: with 3 or more curves every (start, end)
    has an end assignment for every total from |start - end| (2 when they are level) up; with 2
    curves the parity of the total is fixed by the answer, so exact totals are refused."""
    from generators.tracing import _orders

    for n in range(2, 7):
        for q in range(n):
            for dest in range(n):
                least = 2 if q == dest else abs(q - dest)
                for total in range(0, 12):
                    ok = bool(_orders(n, q, dest, total))
                    if n == 2:
                        assert ok == (total >= least and (total - least) % 2 == 0)
                    else:
                        assert ok == (total >= least), (n, q, dest, total)
    # so a level that passes the check (crossings >= curves - 1, curves >= 3) never meets an empty choice
    for n in range(3, 7):
        assert all(_orders(n, q, dest, t) for q in range(n) for dest in range(n) for t in range(n - 1, n + 6) if t >= 2)


def test_end_assignments_are_exactly_the_most_inverted_realisable_ones():
    """From the definition, by brute force: every assignment with perm[q] = dest whose inversions
    fit the total (same parity, two more when the queried curve is in none), those with the most
    inversions, in itertools.permutations order."""
    import itertools

    from generators.tracing import _orders

    def inversions(p):
        return sum(p[i] > p[j] for i in range(len(p)) for j in range(i + 1, len(p)))

    checked = 0
    for n, q, dest, total in [(3, 1, 1, 2), (3, 0, 0, 3), (4, 0, 3, 3), (4, 2, 2, 4), (5, 1, 3, 6), (6, 5, 0, 8), (6, 2, 2, 5)]:
        fits = []
        for p in itertools.permutations(range(n)):
            if p[q] != dest:
                continue
            inv = inversions(p)
            q_free = all((p[i] > dest) == (i > q) for i in range(n) if i != q)
            if inv + (2 if q_free else 0) <= total and (total - inv) % 2 == 0:
                fits.append((inv, p))
        most = max(inv for inv, _ in fits)
        want = tuple(p for inv, p in fits if inv == most)
        got = _orders(n, q, dest, total)
        assert got == want and all(type(v) is int for p in got for v in p), (n, q, dest, total)
        checked += len(got)
    assert checked > 20
