"""The tracing generator: audits hold, answers are right by an independent pixel-level check."""

import re

import numpy as np
import pytest
from skimage.measure import label as connected_components
from skimage.morphology import dilation, disk

from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.render import Polyline, decode_png, encode_png, rasterise
from linebench.tasks import ParamSpec, get_task, resolve_params

TASK = get_task("tracing")


def scenes(level, count, seed=0, canvas=(448, 448)):
    params = resolve_params(TASK, level, ParamSpec(canvas, level, {}))
    rng = np.random.default_rng(seed)
    return params, [TASK.sample(rng, params) for _ in range(count)]


def nearest_label(geometry, point, texts):
    """The label (among `texts`) whose box is nearest to `point` — found from positions only."""
    best, best_d = None, np.inf
    for lb in geometry["labels"]:
        if lb["text"] not in texts:
            continue
        x0, y0, x1, y1 = lb["box"]
        d = np.hypot(max(x0 - point[0], 0, point[0] - x1), max(y0 - point[1], 0, point[1] - y1))
        if d < best_d:
            best, best_d = lb, d
    return best


def start_marker_of(geometry, letter):
    starts = [m for m in geometry["markers"] if m["kind"] == "start"]
    letters = {lb["text"] for lb in geometry["labels"] if lb["text"].isalpha()}
    return min(starts, key=lambda m: 0 if nearest_label(geometry, m["center"], letters)["text"] == letter else 1)


def pixel(point):
    return int(point[1]), int(point[0])  # (row, col) of the pixel holding a canvas point


def answer_from_pixels(geometry, mask, start):
    """Number label of the single end marker connected to `start` in the binary `mask`."""
    comp = connected_components(mask, connectivity=2)
    cid = comp[pixel(start["center"])]
    assert cid != 0, "the start marker is not on the traced line"
    ends = [m for m in geometry["markers"] if m["kind"] == "end" and comp[pixel(m["center"])] == cid]
    assert len(ends) == 1, f"the traced line reaches {len(ends)} end markers"
    numbers = {lb["text"] for lb in geometry["labels"] if lb["text"].isdigit()}
    return nearest_label(geometry, ends[0]["center"], numbers)["text"]


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_answer_by_rasterising_the_queried_curve_alone(level):
    _, batch = scenes(level, 25, seed=11)
    for s in batch:
        g = s.geometry
        letter = re.search(r"starting at ([A-Z])", s.question).group(1)
        start = start_marker_of(g, letter)
        # the curve that starts at that marker, identified by position only
        curve = min(g["curves"], key=lambda c: np.hypot(*(np.array(c["points"][0]) - start["center"])))
        img = rasterise(s.canvas, [Polyline(np.array(curve["points"]), (0, 0, 0), g["thickness_px"])])
        assert answer_from_pixels(g, img[..., 0] < 128, start) == s.answer


@pytest.mark.parametrize("level", ["easy", "medium"])
def test_answer_by_following_the_colour_in_the_rendered_image(level):
    """Distinct colours: follow the start marker's colour through the real picture."""
    _, batch = scenes(level, 25, seed=5)
    for s in batch:
        g = s.geometry
        rgb = decode_png(encode_png(rasterise(s.canvas, TASK.draw(g)))).astype(int)
        start = start_marker_of(g, re.search(r"starting at ([A-Z])", s.question).group(1))
        colour = rgb[pixel(start["center"])]
        mask = np.abs(rgb - colour).max(axis=2) <= 40
        # other curves drawn on top cut the line at crossings: bridge gaps of a line width
        mask = dilation(mask, disk(g["thickness_px"] + 2))
        assert answer_from_pixels(g, mask, start) == s.answer


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
        ((448, 448), {"curves": 8, "same_colour": False, "crossings": [1, 3]}, None),  # allowed
        ((448, 448), {"curves": 2, "crossings": [50, 60], "bends": 0}, "cannot be drawn"),
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
