"""Shared checks for model profiles against the real transformers processors (offline, PIL backends).

A check draws a white disc (the marker) on a black canvas at a position where, by the profile, the
disc falls clearly inside one token of each grid that sees it, runs the real image processor, measures
the marker's brightness per token in the processor's output (family-specific decoding of
`pixel_values`, done by the caller), and asserts that the brightest token of each grid is the token on
which `linebench.attention_map` (maps.grid_maps) puts the most mass.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from linebench.annotations import annotation_geometry
from linebench.grids import Layout
from linebench.maps import MapParams, grid_maps, target_areas

# Real photo sizes (COCO, RefCOCO): there the marker is a box, and its target comes from a box
# annotation through linebench.annotations (issue 17); elsewhere a disc, from a point annotation.
REAL = [(640, 427), (1024, 683)]
CANVASES = [(448, 448), (640, 360), (360, 640), (500, 333), (1000, 180)] + REAL


def disc(center, radius) -> dict:
    return {"type": "disc", "center": [float(center[0]), float(center[1])], "radius": float(radius)}


def marker_target(canvas, center, radius: float) -> dict:
    """The map target of a marker, made the way a user's annotation is made."""
    x, y = float(center[0]), float(center[1])
    if tuple(canvas) in REAL:
        x0, y0, x1, y1 = _pixel_box(center, radius)
        box = [x0, y0, x1 - x0, y1 - y0]  # xywh px, as COCO stores boxes
        return annotation_geometry(canvas, boxes=[box], box_format="xywh")["targets"][0]
    if radius < 1:  # a point radius below 1 would mean a fraction of the short side
        return disc(center, radius)
    return annotation_geometry(canvas, points=[[x, y]], point_radius=radius)["targets"][0]


def _pixel_box(center, radius: float) -> tuple[int, int, int, int]:
    """The marker square on whole pixels: pixels x0..x1-1 cover exactly [x0, x1) in canvas px."""
    x, y = center
    return round(x - radius), round(y - radius), round(x + radius), round(y + radius)


def marker_image(canvas: tuple[int, int], center, radius: float) -> Image.Image:
    """A black RGB canvas with a white disc, or a white square on the REAL sizes (PIL draws it; no
    anti-aliasing needed for an argmax)."""
    img = Image.new("RGB", canvas, (0, 0, 0))
    x, y = center
    if tuple(canvas) in REAL:
        x0, y0, x1, y1 = _pixel_box(center, radius)
        ImageDraw.Draw(img).rectangle([x0, y0, x1 - 1, y1 - 1], fill=(255, 255, 255))  # PIL's end pixel is inclusive
    else:
        ImageDraw.Draw(img).ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 255, 255))
    return img


def clear_positions(lay: Layout, n: int, radius: float, seed: int = 0, purity: float = 0.9):
    """Up to `n` marker centres inside the canvas such that, in every grid, the disc either misses the
    grid or puts >= `purity` of its in-grid area into one token."""
    rng = np.random.default_rng(seed)
    w, h = lay.canvas
    out = []
    for _ in range(200 * n):
        c = (rng.uniform(radius + 2, w - radius - 2), rng.uniform(radius + 2, h - radius - 2))
        areas = [target_areas([marker_target(lay.canvas, c, radius)], g) for g in lay.grids]
        if sum(a.sum() for a in areas) <= 0:
            continue
        if all(a.sum() == 0 or a.max() >= purity * a.sum() for a in areas):
            out.append(c)
            if len(out) == n:
                break
    assert out, f"no clear marker position for {lay.profile} at {lay.canvas}"
    return out


def marker_radius(lay, most: float = 6.0) -> float:
    """A third of the smallest token side (canvas px) over all grids, at most `most`."""
    side = min(min(np.diff(g.x_edges).min(), np.diff(g.y_edges).min()) for g in lay.grids)
    return min(most, side / 3)


def marker_positions(lay, n: int, radius: float, seed: int) -> list:
    """`clear_positions` whose disc puts, in every grid it touches, at least a quarter of its area (a
    sliver along a tile edge would leave the map's argmax on a neighbour token)."""
    full = (4.0 if tuple(lay.canvas) in REAL else np.pi) * radius**2
    out = []
    for c in clear_positions(lay, 10 * n, radius, seed=seed):
        areas = [target_areas([marker_target(lay.canvas, c, radius)], g).sum() for g in lay.grids]
        if all(a == 0 or a >= 0.25 * full for a in areas):
            out.append(c)
            if len(out) == n:
                break
    assert out, f"no marker position for {lay.profile} at {lay.canvas}"
    return out


def expected_tokens(lay: Layout, center, radius: float) -> list[tuple[int, int] | None]:
    """Per grid: the target token (row, col) on which the map puts the most mass, or None when no target
    falls in the grid. (Restricted to target tokens: where only a sliver of the disc falls in a grid,
    a neighbour token can hold more mass than that sliver's token.)"""
    target = marker_target(lay.canvas, center, radius)
    maps = grid_maps([target], lay, MapParams())
    areas = [target_areas([target], g) for g in lay.grids]
    return [None if a.sum() == 0 else np.unravel_index(int(np.argmax(np.where(a > 0, m, -1))), m.shape) for m, a in zip(maps, areas)]


def assert_marker_lands(lay: Layout, brightness: list[np.ndarray], center, radius: float) -> None:
    """`brightness[i]` is the marker's mean brightness per token of grid i, measured on the processor's
    output; its argmax must be the map's argmax in every grid the marker falls in."""
    assert [b.shape for b in brightness] == [g.shape for g in lay.grids], (
        f"{lay.profile} {lay.canvas}: processor grids {[b.shape for b in brightness]} != profile {[g.shape for g in lay.grids]}"
    )
    wants = expected_tokens(lay, center, radius)
    lit = min(float(b.max() - np.median(b)) for b, want in zip(brightness, wants) if want is not None)
    for i, (b, want) in enumerate(zip(brightness, wants)):
        if want is None:  # the map says this grid does not see the marker: the processor must agree
            assert float(b.max() - np.median(b)) < 0.25 * lit, f"{lay.profile} {lay.canvas} grid {i} ({lay.grids[i].label}) sees the marker at {center}, the map says it does not"
            continue
        got = np.unravel_index(int(np.argmax(b)), b.shape)
        assert tuple(got) == tuple(want), f"{lay.profile} {lay.canvas} grid {i} ({lay.grids[i].label}): marker at {center} in token {got}, map says {want}"


def patch_means(img: np.ndarray, cell: int, rows: int, cols: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    """Mean over channels and cell x cell pixels of a [C, H, W] (or [H, W, C]) array, -> [rows, cols]."""
    a = np.asarray(img, dtype=np.float64)
    if a.shape[0] not in (1, 3):
        a = a.transpose(2, 0, 1)
    a = a.mean(axis=0)[y0 : y0 + rows * cell, x0 : x0 + cols * cell]
    return a.reshape(rows, cell, cols, cell).mean(axis=(1, 3))
