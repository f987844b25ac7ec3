"""The intersection generator: balanced answers, audits re-checked independently, pixels agree."""

import json
from collections import Counter

import numpy as np
import pytest

from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec, get_task, resolve_params
from pixel_audit import check_intersection

TASK = get_task("intersection")


def scenes(level, n, seed=0, canvas=(448, 448), **overrides):
    params = resolve_params(TASK, level, ParamSpec(canvas, level, overrides))
    rng = np.random.default_rng(seed)
    return params, [TASK.sample(rng, params) for _ in range(n)]


def test_answers_are_uniform_over_the_count_range():
    params, batch = scenes("medium", 600, seed=1)
    lo, hi = params["knobs"]["count"]
    hist = Counter(int(s.answer) for s in batch)
    assert set(hist) == set(range(lo, hi + 1))
    expected = len(batch) / (hi - lo + 1)
    chi2 = sum((hist[v] - expected) ** 2 / expected for v in hist)
    assert chi2 < 20.5  # p ~ 0.001 for 5 degrees of freedom


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_audit_holds_by_independent_geometry(level):
    params, batch = scenes(level, 15, seed=3)
    k = params["knobs"]
    w, h = params["canvas"]
    for s in batch:
        g = s.geometry
        lines = [np.array(ln["points"]) for ln in g["lines"]]
        t = g["thickness_px"]
        counted, points, angles = 0, [], []
        for i in range(len(lines)):
            assert lines[i].min() >= k["border_px"] and lines[i][:, 0].max() <= w - k["border_px"]
            assert lines[i][:, 1].max() <= h - k["border_px"]
            for j in range(len(lines)):
                if i == j:
                    continue
                ends = np.array([lines[i][0], lines[i][-1]])
                assert geo.points_to_polyline(ends, lines[j]).min() >= k["endpoint_clearance_px"]
                if j < i:
                    continue
                c = geo.segment_crossings(lines[i], lines[j])
                points += list(c.points)
                angles += list(c.angle_deg)
                if sorted(g["query"]["lines"]) == [i, j] or g["query"]["kind"] == "total":
                    counted += len(c)
                if len(c) == 0:
                    assert geo.polyline_distance(lines[i], lines[j]) >= k["min_gap_lw"] * t - 1e-9
        assert str(counted) == s.answer == str(s.knobs["count"])
        assert len(points) == s.knobs["total_crossings"] == len(g["crossings"])
        if points:
            pts = np.array(points)
            assert min(angles) >= k["min_crossing_angle_deg"]
            cb = k["crossing_border_px"]
            assert pts.min() >= cb and pts[:, 0].max() <= w - cb and pts[:, 1].max() <= h - cb
            d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1)) + np.eye(len(pts)) * 1e9
            assert d.min() >= k["min_crossing_sep_px"]


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_pixels_agree_with_the_answer(level):
    maker = RowMaker(RunSpec("intersection", n=6, seed=4, params=ParamSpec(difficulty=level), maps=()))
    for i in range(6):
        row = maker(i)
        assert check_intersection(row) is None
        wrong = dict(row, answer=str(int(row["answer"]) + 1))
        assert check_intersection(wrong) is not None  # the checker can fail


def test_total_question_in_one_colour():
    params, batch = scenes("medium", 20, seed=5, question="total", same_colour=True, count=[0, 6])
    for s in batch:
        assert s.question == TASK.question_templates["total"]
        assert s.knobs["question_kind"] == "total" and s.knobs["other_crossings"] == 0
        assert int(s.answer) == len(s.geometry["crossings"])
        assert {ln["colour"] for ln in s.geometry["lines"]} == {"black"}
    rows = [RowMaker(RunSpec("intersection", n=3, seed=2, maps=(), params=ParamSpec(difficulty="hard", overrides={"question": "total"})))(i) for i in range(3)]
    assert all(check_intersection(r) is None for r in rows)


def test_targets_are_the_counted_crossings_or_the_closest_approach():
    _, batch = scenes("medium", 40, seed=6)
    zero = 0
    for s in batch:
        g = s.geometry
        a, b = (np.array(g["lines"][i]["points"]) for i in g["query"]["lines"])
        if s.answer == "0":
            zero += 1
            (disc,) = g["targets"]
            pa, pb, dist = geo.closest_points(a, b)
            assert np.allclose(disc["center"], (pa + pb) / 2) and disc["radius"] >= dist / 2
        else:
            pts = geo.segment_crossings(a, b).points
            assert len(g["targets"]) == len(pts) == int(s.answer)
            centres = np.array([t["center"] for t in g["targets"]])
            assert np.allclose(np.sort(centres, axis=0), np.sort(pts, axis=0))
    assert zero > 0


def test_question_names_the_queried_colours():
    _, batch = scenes("hard", 10, seed=7)
    for s in batch:
        names = [s.geometry["lines"][i]["colour"] for i in s.geometry["query"]["lines"]]
        assert s.question == TASK.question_templates["pair"].format(a=names[0], b=names[1])
        assert len({ln["colour"] for ln in s.geometry["lines"]}) == len(s.geometry["lines"])


def test_sampling_is_a_pure_function_of_seed_and_params():
    params = resolve_params(TASK, "hard", ParamSpec())
    a = TASK.sample(np.random.default_rng(42), params)
    b = TASK.sample(np.random.default_rng(42), params)
    assert json.dumps(a.geometry) == json.dumps(b.geometry) and a.answer == b.answer


def test_non_square_canvas():
    _, batch = scenes("medium", 5, seed=2, canvas=(640, 480))
    for s in batch:
        pts = np.concatenate([np.array(ln["points"]) for ln in s.geometry["lines"]])
        assert pts[:, 0].max() < 640 and pts[:, 1].max() < 480


@pytest.mark.parametrize(
    "canvas,overrides,message",
    [
        ((448, 448), {"same_colour": True}, "needs question=total"),
        ((128, 128), {"lines": 8}, "too small"),
        ((448, 448), {"count": [0, 20], "crossings": [20, 22], "moves": [24, 25], "thickness_px": 1}, "do not fit"),
        ((448, 448), {"crossings": [3, 6]}, "at least count's hi = 5"),
        ((448, 448), {"moves": [4, 5]}, "moves=4 per line is too few"),
        ((640, 360), {}, "too small"),
    ],
)
def test_impossible_parameters_are_refused(canvas, overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve_params(TASK, "medium", ParamSpec(canvas, "medium", overrides))


def contingency_chi2(xs, ys):
    """Pearson's chi-square statistic and degrees of freedom of a contingency table of two lists."""
    xv, yv = sorted(set(xs)), sorted(set(ys))
    table = np.zeros((len(xv), len(yv)))
    for x, y in zip(xs, ys):
        table[xv.index(x), yv.index(y)] += 1
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), (len(xv) - 1) * (len(yv) - 1)


@pytest.mark.parametrize("level", ["medium", "hard"])
def test_the_pictures_total_says_nothing_about_the_answer(level):
    """Total crossings are drawn independently of the answer: their joint histogram is a product
    (chi-square well inside its p = 0.001 bound), and every total occurs with every answer."""
    params, batch = scenes(level, 600, seed=8)
    totals = [s.knobs["total_crossings"] for s in batch]
    answers = [int(s.answer) for s in batch]
    lo, hi = params["knobs"]["crossings"]
    assert set(totals) == set(range(lo, hi + 1))
    chi2, dof = contingency_chi2(totals, answers)
    assert chi2 < {5: 20.5, 10: 29.6}[dof]
    before = Counter(zip(totals, answers))
    assert all(before[(x, a)] > 0 for x in range(lo, hi + 1) for a in range(6))


def test_easy_total_is_the_answer_by_design():
    _, batch = scenes("easy", 30, seed=9)
    assert all(s.knobs["total_crossings"] == int(s.answer) and s.knobs["lines"] == 2 for s in batch)


def test_double_crossings_leave_white_between_the_strokes():
    """Between two crossings of one pair the strokes are at least min_lens_gap_lw line widths apart
    (checked on points every 0.25 px, against the other line's every segment)."""
    params, batch = scenes("ood", 12, seed=10)
    k = params["knobs"]
    checked = 0
    for s in batch:
        g = s.geometry
        t = g["thickness_px"]
        lines = [np.array(ln["points"]) for ln in g["lines"]]
        for i in range(len(lines)):
            for j in range(i + 1, len(lines)):
                cr = geo.segment_crossings(lines[i], lines[j])
                if len(cr) < 2:
                    continue
                a = lines[i]
                seg = np.hypot(*np.diff(a, axis=0).T)
                cum = np.concatenate([[0.0], np.cumsum(seg)])
                pos = np.sort(cum[cr.segment] + np.hypot(*(cr.points - a[cr.segment]).T))
                for s0, s1 in zip(pos[:-1], pos[1:]):
                    ss = np.arange(s0, s1, 0.25)
                    pts = np.stack([np.interp(ss, cum, a[:, 0]), np.interp(ss, cum, a[:, 1])], axis=1)
                    widest = geo.points_to_polyline(pts, lines[j]).max()
                    assert widest - t >= k["min_lens_gap_lw"] * t - 0.5
                    checked += 1
    assert checked > 10


def test_the_named_lines_start_side_by_side_whatever_the_answer():
    """So nothing has to be crossed to bring them together, for any answer (a model cannot learn
    'far apart at the start -> few crossings'); checked on the drawn lines' first points along the
    frame's u axis."""
    _, batch = scenes("hard", 40, seed=11)
    for s in batch:
        g = s.geometry
        theta = np.radians(s.knobs["rotation_deg"])
        v_axis = np.array([-np.sin(theta), np.cos(theta)])
        firsts = [np.asarray(ln["points"])[0] @ v_axis for ln in g["lines"]]
        rank = list(np.argsort(firsts))
        a, b = g["query"]["lines"]
        assert abs(rank.index(a) - rank.index(b)) == 1


def test_vertex_gaps_of_all_pairs_are_exact_below_reach():
    """_gaps measures every vertex against every other line in one pass: below `reach` it is the
    exact vertex-to-polyline distance, elsewhere at least reach, and inf from a line to itself."""
    from generators.intersection import _gaps

    rng = np.random.default_rng(4)
    for trial in range(30):
        n, theta = int(rng.integers(2, 6)), rng.uniform(0, np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        us = [np.cumsum(rng.uniform(0.3, 9.0, int(rng.integers(2, 40)))) for _ in range(n)]
        lines = [np.stack([u, rng.uniform(0, 25, len(u))], 1) @ rot.T for u in us]
        reach = float(rng.uniform(1, 15))
        gaps = _gaps(lines, us, reach)
        first = np.concatenate([[0], np.cumsum([len(ln) for ln in lines])])
        assert gaps.shape == (n, first[-1])
        for i in range(n):
            for j in range(n):
                got = gaps[j, first[i]:first[i + 1]]
                if i == j:
                    assert np.all(np.isinf(got))
                    continue
                exact = geo.points_to_polyline(lines[i], lines[j])
                below = exact < reach
                np.testing.assert_allclose(got[below], exact[below], rtol=0, atol=1e-9)
                assert np.all(got[~below] >= reach - 1e-9)


def test_pair_crossings_equal_monotone_crossings_pair_by_pair():
    """All pairs in one pass per line: the same crossings, in the same order, to the bit."""
    from generators.intersection import _pair_crossings

    rng = np.random.default_rng(5)
    checked = 0
    for trial in range(40):
        n, theta = int(rng.integers(2, 7)), rng.uniform(0, np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        us = [np.cumsum(rng.uniform(0.3, 9.0, int(rng.integers(2, 40)))) for _ in range(n)]
        lines = [np.stack([u, rng.uniform(0, 25, len(u))], 1) @ rot.T for u in us]
        got = _pair_crossings(lines, us)
        assert set(got) == {(i, j) for i in range(n) for j in range(i + 1, n)}
        for (i, j), cr in got.items():
            want = geo.monotone_crossings(lines[i], us[i], lines[j], us[j])
            for f in ("first", "second", "segment", "points", "angle_deg", "other_segment", "other_t"):
                a, b = getattr(cr, f), getattr(want, f)
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f
            checked += len(cr)
    assert checked > 50
