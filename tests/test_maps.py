import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout, uniform_grid
from linebench.maps import MapParams, grid_maps, target_areas


def test_three_levels_and_masses():
    lay = layout("grid8", (80, 80))  # 10 px cells
    targets = [{"type": "rect", "box": [22.0, 22.0, 28.0, 28.0]}]  # inside cell (2, 2)
    p = MapParams(target=0.7, neighbour=0.2, floor=0.1, radius=1)
    (m,) = grid_maps(targets, lay, p)
    assert m.shape == (8, 8)
    assert m.sum() == pytest.approx(1.0, abs=1e-12)
    assert m[2, 2] == pytest.approx(0.7)
    ring = [(r, c) for r in range(1, 4) for c in range(1, 4) if (r, c) != (2, 2)]
    for r, c in ring:
        assert m[r, c] == pytest.approx(0.2 / 8)
    others = np.ones_like(m, bool)
    others[1:4, 1:4] = False
    np.testing.assert_allclose(m[others], 0.1 / (64 - 9))


def test_target_mass_follows_exact_area():
    lay = layout("grid4", (40, 40))
    # 6 px of the box in column 0, 4 px in column 1, same rows
    targets = [{"type": "rect", "box": [4.0, 12.0, 14.0, 18.0]}]
    (m,) = grid_maps(targets, lay, MapParams(target=1.0, neighbour=0.0, floor=0.0, radius=1))
    assert m[1, 0] == pytest.approx(0.6)
    assert m[1, 1] == pytest.approx(0.4)
    assert m.sum() == pytest.approx(1.0)


def test_disc_and_rect_targets_add():
    grid = uniform_grid((100, 100), 10, 10)
    a = target_areas([{"type": "disc", "center": [50.0, 50.0], "radius": 5.0}, {"type": "rect", "box": [0, 0, 10, 10]}], grid)
    assert a.sum() == pytest.approx(np.pi * 25 + 100)


def test_empty_level_mass_is_redistributed():
    lay = layout("grid2", (20, 20))
    # target covers all four cells: no neighbours, no floor
    (m,) = grid_maps([{"type": "rect", "box": [0, 0, 20, 20]}], lay, MapParams())
    np.testing.assert_allclose(m, 0.25)


def test_non_square_grid_and_canvas():
    lay = layout("grid3x5", (500, 300))
    (m,) = grid_maps([{"type": "disc", "center": [450.0, 250.0], "radius": 10.0}], lay)
    assert m.shape == (3, 5)
    assert np.unravel_index(m.argmax(), m.shape) == (2, 4)
    assert m.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [dict(target=0.5, neighbour=0.5, floor=0.5), dict(target=-0.1, neighbour=0.6, floor=0.5), dict(radius=-1), dict(target=0.0, neighbour=0.5, floor=0.5)])
def test_bad_map_params(kwargs):
    with pytest.raises(UsageError):
        MapParams(**kwargs)


def test_unknown_profile():
    with pytest.raises(UsageError, match="unknown map profile"):
        layout("llava-9000", (448, 448))


def test_cells_the_disc_does_not_reach_are_exactly_zero():
    from linebench.geometry import disc_cell_areas

    rng = np.random.default_rng(0)
    xe, ye = np.linspace(0, 448, 25), np.linspace(0, 448, 25)
    for _ in range(500):
        c, r = rng.uniform(0, 448, 2), rng.uniform(0.5, 12)
        a = disc_cell_areas(c, r, xe, ye)
        nx = np.clip(c[0], xe[:-1], xe[1:]) - c[0]
        ny = np.clip(c[1], ye[:-1], ye[1:]) - c[1]
        reached = np.hypot(ny[:, None], nx[None, :]) < r
        assert np.array_equal(a > 0, reached)
    assert disc_cell_areas((5, 5), 0.0, xe, ye).sum() == 0


def test_radius_wider_than_the_grid_and_non_finite_masses():
    (m,) = grid_maps([{"type": "rect", "box": [0, 0, 5, 5]}], layout("grid4", (40, 40)), MapParams(radius=30))
    # every other token is a neighbour: no floor tokens, so the floor mass is redistributed
    assert m.sum() == pytest.approx(1.0) and m[0, 0] == pytest.approx(0.8 / 0.95)
    with pytest.raises(UsageError):
        MapParams(target=float("nan"), neighbour=0.15, floor=0.05)


def test_polygon_target_areas_and_map():
    lay = layout("grid4", (40, 40))  # 10 px cells
    # an L-shaped (concave) hexagon: 10x10 in cell (0, 0) plus a 5x10 arm in cell (0, 1)
    poly = [[0.0, 0.0], [15.0, 0.0], [15.0, 10.0], [10.0, 10.0], [10.0, 10.0], [0.0, 10.0]]
    area = target_areas([{"type": "polygon", "points": poly}], lay.grids[0])
    assert area[0, 0] == pytest.approx(100.0) and area[0, 1] == pytest.approx(50.0)
    assert np.count_nonzero(area) == 2
    (m,) = grid_maps([{"type": "polygon", "points": poly}], lay, MapParams(target=0.9, neighbour=0.05, floor=0.05))
    assert m.sum() == pytest.approx(1.0) and m[0, 0] == pytest.approx(0.6) and m[0, 1] == pytest.approx(0.3)


@pytest.mark.parametrize("canvas", [(640, 480), (480, 640), (1000, 300)])
def test_padding_tokens_get_only_the_floor(canvas):
    """llava-1.5-pad pastes a wide (or tall) picture into a square: tokens that show none of it must
    carry no target or neighbour mass, even when a target disc reaches past the picture's edge."""
    w, h = canvas
    lay = layout("llava-1.5-pad", canvas)
    grid = lay.grids[0]
    x_in = (np.minimum(grid.x_edges[1:], w) - np.maximum(grid.x_edges[:-1], 0)) > 0
    y_in = (np.minimum(grid.y_edges[1:], h) - np.maximum(grid.y_edges[:-1], 0)) > 0
    padding = ~(y_in[:, None] & x_in[None, :])
    assert padding.any()
    # a disc centred 3 px inside the top-left corner, reaching ~97 px past both edges
    target = [{"type": "disc", "center": [3.0, 3.0], "radius": 100.0}]
    p = MapParams()
    (m,) = grid_maps(target, lay, p)
    floor_value = m[padding].max()
    assert np.allclose(m[padding], floor_value)  # every padding token: the same (floor) value
    assert floor_value < m[~padding].max() / 50
    inside = target_areas(target, grid, canvas)
    assert inside[padding].sum() == 0
    # the target area counted is the part of the disc on the canvas (x, y >= 0), by quadrature
    xs = np.linspace(0.0, 103.0, 200001)
    half = np.sqrt(np.maximum(100.0**2 - (xs - 3.0) ** 2, 0.0))
    visible = np.clip(3.0 + half, 0.0, None) - np.clip(3.0 - half, 0.0, None)
    assert inside.sum() == pytest.approx(np.trapezoid(visible, xs), rel=1e-4)
    n_floor = int((m == floor_value).sum())
    assert m[padding].sum() == pytest.approx(p.floor * padding.sum() / n_floor, rel=1e-6)


def test_targets_past_the_edge_count_only_their_visible_area():
    lay = layout("grid4", (40, 40))
    (m,) = grid_maps([{"type": "rect", "box": [-20.0, 0.0, 10.0, 10.0]}], lay, MapParams(target=1.0, neighbour=0.0, floor=0.0))
    assert m[0, 0] == pytest.approx(1.0)


def test_dilate_is_the_chebyshev_neighbourhood():
    """Cells within `radius` (Chebyshev) of a True cell, nothing wrapping or entering from outside."""
    from linebench.maps import _dilate

    rng = np.random.default_rng(3)
    for shape, radius in (((5, 7), 1), ((9, 4), 2), ((3, 3), 0), ((6, 6), 40), ((1, 8), 1)):
        mask = rng.random(shape) < 0.15
        ii, jj = np.nonzero(mask)
        r_, c_ = np.indices(shape)
        want = np.zeros(shape, bool)
        for i, j in zip(ii, jj):
            want |= np.maximum(abs(r_ - i), abs(c_ - j)) <= radius
        got = _dilate(mask, radius)
        assert got.dtype == bool and np.array_equal(got, want)
        assert np.array_equal(_dilate(np.asfortranarray(mask), radius), want)
    assert _dilate(np.zeros((0, 4), bool), 2).shape == (0, 4)


def test_a_neighbourhood_wider_than_a_short_grid_side():
    """radius 12 on a 448x160 canvas (Qwen2.5-VL's grid there is 6 tokens tall): all tokens are
    targets or neighbours (the slice-based dilation it replaced raised here)."""
    from linebench.maps import attention_map

    geometry = {"canvas": [448, 160], "targets": [{"type": "rect", "box": [10, 10, 30, 30]}]}
    values = attention_map(geometry, "qwen2.5-vl", radius=12).values
    assert values.sum() == pytest.approx(1.0) and values.min() > 0


def test_cached_grid_preparation_follows_the_grid_it_was_made_for():
    """Clipped edges are prepared once per read-only (cached) grid; a grid whose edges can still
    change is prepared afresh each time, so changing it changes the areas."""
    from linebench.grids import TokenGrid

    target = [{"type": "rect", "box": [0.0, 0.0, 30.0, 30.0]}]
    lay = layout("grid4", (40, 40))
    first = target_areas(target, lay.grids[0], lay.canvas)
    assert target_areas(target, lay.grids[0], lay.canvas).tobytes() == first.tobytes()
    assert not lay.grids[0].x_edges.flags.writeable  # a cached layout's grid: prepared once
    edges = np.linspace(0.0, 40.0, 5)
    mine = TokenGrid(4, 4, edges.copy(), edges.copy())
    assert target_areas(target, mine, (40, 40)).tobytes() == first.tobytes()
    mine.x_edges[:] = np.linspace(0.0, 80.0, 5)  # 20 px wide cells now
    moved = target_areas(target, mine, (40, 40))
    assert moved[0, 0] == pytest.approx(200.0) and moved[0, 1] == pytest.approx(100.0) and moved[0, 2:].sum() == 0.0
