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
    _, batch = scenes("medium", 5, seed=2, canvas=(640, 360))
    for s in batch:
        pts = np.concatenate([np.array(ln["points"]) for ln in s.geometry["lines"]])
        assert pts[:, 0].max() < 640 and pts[:, 1].max() < 360


@pytest.mark.parametrize(
    "canvas,overrides,message",
    [
        ((448, 448), {"same_colour": True}, "needs question=total"),
        ((128, 128), {"lines": 8}, "too small"),
        ((448, 448), {"count": 30, "other_crossings": 30}, "do not fit"),
    ],
)
def test_impossible_parameters_are_refused(canvas, overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve_params(TASK, "medium", ParamSpec(canvas, "medium", overrides))
