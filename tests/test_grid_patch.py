"""The grid-patch generator: answers agree with the pixels, cells are balanced, markers keep to
their cells, the query is unique, levels hold, impossible knobs are refused, maps and files work."""

import json
import re
from collections import Counter

import numpy as np
import pytest

from linebench import geometry as geo
from linebench.errors import UsageError
from linebench.grids import layout
from linebench.maps import grid_maps, target_areas
from linebench.render import Disc, Polygon, Polyline, Text, decode_png, encode_png, rasterise
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec, get_task, resolve_params

TASK = get_task("grid_patch")
ANSWER = re.compile(r"^\((\d+), (\d+)\)$")


import pixel_audit as AUDIT  # noqa: E402  (benchmarks/, on the path via conftest.py)


def scenes(level, count, seed=0, canvas=(448, 448), **overrides):
    params = resolve_params(TASK, level, ParamSpec(canvas, level, overrides))
    rng = np.random.default_rng(seed)
    return params, [TASK.sample(rng, params) for _ in range(count)]


def rows(level, count, seed=1, maps=()):
    maker = RowMaker(RunSpec("grid_patch", split="test", n=count, seed=seed, params=ParamSpec(difficulty=level), maps=maps))
    return [maker(i) for i in range(count)]


def cell_rect(geometry, r, c):
    """Canvas rectangle of cell (r, c), 1-based, from the stored grid edges."""
    xe, ye = geometry["grid"]["x_edges"], geometry["grid"]["y_edges"]
    return xe[c - 1], ye[r - 1], xe[c], ye[r]


def marker_extent(mk):
    if "radius" in mk:
        (x, y), r = mk["center"], mk["radius"]
        return x - r, y - r, x + r, y + r
    p = np.array(mk["points"])
    return (*p.min(axis=0), *p.max(axis=0))


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_answer_agrees_with_an_independent_pixel_check(level):
    for row in rows(level, 6):
        assert ANSWER.match(row["answer"])
        assert AUDIT.check_grid_patch(row) is None, row["id"]


def test_pixel_check_catches_a_wrong_answer_and_a_missing_marker():
    row = rows("medium", 1, seed=4)[0]
    r, c = map(int, ANSWER.match(row["answer"]).groups())
    g = json.loads(row["geometry"])
    n = g["grid"]["n"]
    wrong = dict(row, answer=f"({r % n + 1}, {c})")
    assert "cell" in AUDIT.check_grid_patch(wrong)
    # the same picture without the target marker: the queried marker is nowhere
    g["markers"] = [m for i, m in enumerate(g["markers"]) if i != g["query"]["marker"]]
    png = encode_png(rasterise(tuple(g["canvas"]), TASK.draw(g)))
    assert "0 " in AUDIT.check_grid_patch(dict(row, image=png))


def test_answer_cell_is_uniform_and_grid_uniform_in_its_range():
    _, batch = scenes("easy", 640, seed=21, grid=4)
    counts = Counter(s.answer for s in batch)
    assert set(counts) == {f"({r}, {c})" for r in range(1, 5) for c in range(1, 5)}
    expected = 640 / 16
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in counts)
    assert chi2 < 37.7  # 15 degrees of freedom, p = 0.001
    _, batch = scenes("medium", 300, seed=22)
    grids = Counter(s.knobs["grid"] for s in batch)
    assert set(grids) == set(range(7, 12)) and min(grids.values()) > 300 / 5 * 0.6


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_markers_keep_inside_their_cells_and_the_query_is_unique(level):
    params, batch = scenes(level, 15, seed=3)
    k = params["knobs"]
    gap = k["min_border_gap_px"]
    for s in batch:
        g = s.geometry
        n = g["grid"]["n"]
        xe, ye = np.array(g["grid"]["x_edges"]), np.array(g["grid"]["y_edges"])
        assert len(xe) == len(ye) == n + 1 and np.allclose(np.diff(xe), g["grid"]["cell_px"])
        seen = set()
        for mk in g["markers"]:
            r, c = mk["cell"]
            assert 1 <= r <= n and 1 <= c <= n and (r, c) not in seen
            seen.add((r, c))
            x0, y0, x1, y1 = marker_extent(mk)
            cx0, cy0, cx1, cy1 = cell_rect(g, r, c)
            assert x0 >= cx0 + gap and x1 <= cx1 - gap and y0 >= cy0 + gap and y1 <= cy1 - gap
            # the cell is where the marker is: found from its position, not its label
            assert (np.searchsorted(ye, mk["center"][1]), np.searchsorted(xe, mk["center"][0])) == (r, c)
            if "points" in mk:
                p = np.array(mk["points"])
                np.testing.assert_array_equal(p * geo.SUBPIXEL, np.round(p * geo.SUBPIXEL))  # drawing lattice
        colour, shape = re.search(r"contains the (\w+) (\w+)\?", s.question).groups()
        same = [mk for mk in g["markers"] if mk["colour"] == colour and mk["shape"] == shape]
        assert len(same) == 1
        assert s.answer == "({}, {})".format(*same[0]["cell"])
        assert f"{n} x {n} grid" in s.question
        assert len(g["markers"]) == s.knobs["distractors"] + 1


@pytest.mark.parametrize(
    "level,overrides",
    [("medium", {}), ("ood", {}), ("hard", {"grid_lines": False, "line_px": 2, "min_border_gap_px": 4.0}), ("medium", {"line_px": 3, "min_border_gap_px": 4.5})],
)
def test_markers_never_share_a_pixel_with_grid_lines_or_labels(level, overrides):
    """Rendered apart, markers and grid lines never ink one pixel visibly (>= 8/255: OpenCV's
    anti-aliasing leaves traces of a few /255 up to ~3 px from sharp vertices); labels never
    share any pixel with either."""
    _, batch = scenes(level, 6, seed=8, jitter=1.0, **overrides)
    for s in batch:
        g = s.geometry
        prims = TASK.draw(g)

        def ink(kinds):
            return 255 - rasterise(s.canvas, [p for p in prims if isinstance(p, kinds)]).min(axis=2).astype(int)

        lines, markers, labels = ink(Polyline), ink((Polygon, Disc)), ink(Text)
        assert not ((lines >= 8) & (markers >= 8)).any()
        assert not ((labels > 0) & ((markers > 0) | (lines > 0))).any()
        for lb in g["labels"]:
            x0, y0, x1, y1 = lb["box"]
            assert 0 <= x0 and x1 <= s.canvas[0] and 0 <= y0 and y1 <= s.canvas[1]


def test_draw_rebuilds_the_picture_from_the_stored_geometry():
    row = rows("hard", 1, seed=5)[0]
    g = json.loads(row["geometry"])
    assert encode_png(rasterise(tuple(g["canvas"]), TASK.draw(g))) == row["image"]
    assert decode_png(row["image"]).shape == (448, 448, 3)


def test_sampling_is_a_pure_function_of_seed_and_params():
    params = resolve_params(TASK, "hard", ParamSpec(difficulty="hard"))
    a = TASK.sample(np.random.default_rng(42), params)
    b = TASK.sample(np.random.default_rng(42), params)
    assert a.geometry == b.geometry and a.question == b.question and a.answer == b.answer and a.knobs == b.knobs
    assert json.loads(json.dumps(a.geometry)) == a.geometry  # plain JSON data


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_levels_respect_their_knobs(level):
    params, batch = scenes(level, 20, seed=9)
    k = params["knobs"]

    def within(name, v):
        lo, hi = k[name] if isinstance(k[name], list) else (k[name], k[name])
        return lo - 1e-9 <= v <= hi + 1e-9

    for s in batch:
        g = s.geometry
        for name in ("grid", "distractors", "confusable", "marker_size", "jitter"):
            assert within(name, s.knobs[name]), name
        assert s.knobs["grid_lines"] == k["grid_lines"] == g["grid"]["lines"]
        assert bool(g["labels"]) == s.knobs["labels"] == k["labels"]
        if k["labels"]:
            assert sorted(int(lb["text"]) for lb in g["labels"] if lb["axis"] == "row") == list(range(1, g["grid"]["n"] + 1))
        assert s.knobs["marker_px"] == pytest.approx(s.knobs["marker_size"] * g["grid"]["cell_px"], abs=1e-3)
        assert s.knobs["marker_px"] >= k["min_marker_px"]
        if k["confusable"] == 0.0:
            assert s.knobs["shape_twins"] == s.knobs["colour_twins"] == 0
        assert s.answer == f"({s.knobs['target_row']}, {s.knobs['target_col']})"


def test_ood_is_harder_than_every_training_level():
    lv = TASK.levels
    hardest = lambda name: max(np.max(lv[x][name]) for x in ("easy", "medium", "hard"))  # noqa: E731
    assert np.min(lv["ood"]["grid"]) > hardest("grid")
    assert np.min(lv["ood"]["distractors"]) > hardest("distractors")
    assert np.min(lv["ood"]["confusable"]) >= hardest("confusable")
    assert lv["ood"]["labels"] is False and lv["ood"]["jitter"] == 1.0
    # and smaller markers, in pixels, than the hard level draws on average
    _, ood = scenes("ood", 30, seed=1)
    _, hard = scenes("hard", 30, seed=1)
    assert np.mean([s.knobs["marker_px"] for s in ood]) < np.mean([s.knobs["marker_px"] for s in hard]) - 2


def test_the_knob_defaults_are_drawable_on_the_default_canvas():
    knobs = {k.name: k.default for k in TASK.knobs}
    TASK.check({"task": TASK.name, "version": TASK.version, "canvas": [448, 448], "level": "-", "knobs": knobs})


@pytest.mark.parametrize(
    "canvas,overrides,message",
    [
        ((448, 448), {"grid": 40, "labels": False, "distractors": 10}, "min_marker_px"),
        ((224, 224), {"grid": 24, "labels": False, "distractors": 10, "marker_size": 0.45}, "min_marker_px"),
        ((448, 448), {"grid": 3, "distractors": 12}, "distractors"),
        ((448, 448), {"grid": 30, "labels": True, "distractors": 10, "marker_size": 0.4}, "labels"),
        ((448, 448), {"min_border_gap_px": 1.0}, "min_border_gap_px"),
        ((448, 448), {"marker_size": 0.95}, "does not fit"),
        ((40, 40), {"grid": 30, "distractors": 3}, "no room"),
        ((640, 360), {}, None),  # allowed
    ],
)
def test_impossible_parameters_are_refused(canvas, overrides, message):
    spec = ParamSpec(canvas, "medium", overrides)
    if message is None:
        params = resolve_params(TASK, "medium", spec)
        s = TASK.sample(np.random.default_rng(0), params)
        assert max(marker_extent(m)[2] for m in s.geometry["markers"]) < 640
        return
    with pytest.raises(UsageError, match=message):
        resolve_params(TASK, "medium", spec)


@pytest.mark.parametrize("profile", ["grid24", "grid16", "grid7x5"])
def test_target_map_sums_to_one_and_sits_on_the_answer_cell(profile):
    _, batch = scenes("medium", 12, seed=13)
    for s in batch:
        g = s.geometry
        lay = layout(profile, s.canvas)
        (p,) = grid_maps(g["targets"], lay)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        target = g["markers"][g["query"]["marker"]]
        (t,) = g["targets"]
        assert t["type"] == ("disc" if target["shape"] == "circle" else "polygon")
        area = target_areas(g["targets"], lay.grids[0])
        exact = np.pi * target["radius"] ** 2 if "radius" in target else geo.polygon_area(np.array(target["points"]))
        assert area.sum() == pytest.approx(exact, rel=1e-9)
        # every target token overlaps the answer cell
        r, c = map(int, ANSWER.match(s.answer).groups())
        x0, y0, x1, y1 = cell_rect(g, r, c)
        grid = lay.grids[0]
        for tr, tc in zip(*np.nonzero(area > 0)):
            assert grid.x_edges[tc] < x1 and grid.x_edges[tc + 1] > x0 and grid.y_edges[tr] < y1 and grid.y_edges[tr + 1] > y0


def test_generate_round_trip_through_load_dataset(tmp_path):
    import datasets

    from linebench.dataset import generate

    out = tmp_path / "gp"
    generate(RunSpec("grid_patch", split="train", n=20, seed=3), out, workers=1, shard_size=10)
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(ds) == 20 and len(set(ds["id"])) == 20
    assert ds.features["grid"].dtype == "int32" and ds.features["labels"].dtype == "bool"
    assert ds.features["marker_size"].dtype == "float32"
    assert set(ds["difficulty"]) <= {"easy", "medium", "hard"}
    for row in ds:
        assert ANSWER.match(row["answer"]) and row["generator_version"].endswith("grid_patch1")
        assert abs(float(np.asarray(row["attn_grid24"]).sum()) - 1.0) < 1e-5
        assert row["image"].size == (448, 448)
    # the folder loads through its card too
    assert len(datasets.load_dataset(str(out), split="train")) == 20
