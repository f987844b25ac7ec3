"""Ground-truth attention maps P(S): targets -> a probability distribution over a layout's tokens.

Three levels, as in the KLAL paper: *target* tokens (those whose canvas cell holds any target
area) share the mass `target` in proportion to the exact target area inside each cell; their
*neighbours* (within `radius` cells, Chebyshev distance, same grid) share `neighbour` equally;
every other token shares `floor` equally. When a level has no tokens its mass goes to the other
levels in proportion to theirs, so the map always sums to 1.

Targets are plain dicts (stored on every row in `geometry["targets"]`):
  {"type": "disc", "center": [x, y], "radius": r}
  {"type": "rect", "box": [x0, y0, x1, y1]}
  {"type": "polygon", "points": [[x, y], ...]}   (simple, may be concave; implicitly closed)
Shapes of one sample are disjoint, so the target area is the sum of their areas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import UsageError
from .geometry import disc_cell_areas, polygon_cell_areas, rect_cell_areas
from .grids import Layout, TokenGrid


@dataclass(frozen=True)
class MapParams:
    target: float = 0.80  # total mass on target tokens
    neighbour: float = 0.15  # total mass on their neighbours
    floor: float = 0.05  # total mass on every other token
    radius: int = 1  # neighbourhood radius in tokens (Chebyshev)

    def __post_init__(self) -> None:
        masses = (self.target, self.neighbour, self.floor)
        if not all(math.isfinite(m) for m in masses) or min(masses) < 0 or abs(sum(masses) - 1.0) > 1e-9:
            raise UsageError(
                f"map masses must be >= 0 and sum to 1 (target + neighbour + floor), got {self.target} + "
                f"{self.neighbour} + {self.floor}"
            )
        if self.target <= 0:
            raise UsageError("map target mass must be > 0")
        if self.radius < 0:
            raise UsageError(f"map neighbourhood radius must be >= 0, got {self.radius}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_areas(targets: Sequence[Mapping[str, Any]], grid: TokenGrid) -> np.ndarray:
    """Exact target area (px^2) inside each cell of `grid` -> float64 [rows, cols]."""
    area = np.zeros(grid.shape, dtype=np.float64)
    for t in targets:
        kind = t["type"]
        if kind == "disc":
            area += disc_cell_areas(t["center"], t["radius"], grid.x_edges, grid.y_edges)
        elif kind == "rect":
            area += rect_cell_areas(t["box"], grid.x_edges, grid.y_edges)
        elif kind == "polygon":
            area += polygon_cell_areas(t["points"], grid.x_edges, grid.y_edges)
        else:
            raise ValueError(f"unknown target type {kind!r}")
    return area


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    rows, cols = mask.shape
    radius = min(radius, max(rows, cols))  # a wider neighbourhood reaches nothing more
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            src = mask[max(0, -dy) : rows - max(0, dy), max(0, -dx) : cols - max(0, dx)]
            out[max(0, dy) : rows - max(0, -dy), max(0, dx) : cols - max(0, -dx)] |= src
    return out


def attention_map(
    targets: Sequence[Mapping[str, Any]], layout: Layout, params: MapParams = MapParams()
) -> list[np.ndarray]:
    """P(S) on every grid of `layout`: float64 arrays of each grid's shape, summing to 1 together."""
    areas = [target_areas(targets, g) for g in layout.grids]
    is_target = [a > 0 for a in areas]
    is_neigh = [_dilate(t, params.radius) & ~t for t in is_target]
    total_area = sum(float(a.sum()) for a in areas)
    n_neigh = sum(int(m.sum()) for m in is_neigh)
    n_floor = layout.num_tokens - sum(int(t.sum()) for t in is_target) - n_neigh
    if total_area <= 0:
        raise ValueError("the targets cover no token of this layout")
    mass = np.array([params.target, params.neighbour if n_neigh else 0.0, params.floor if n_floor else 0.0])
    mass /= mass.sum()
    out = []
    for a, nb in zip(areas, is_neigh):
        p = a * (mass[0] / total_area)
        if n_neigh:
            p[nb] = mass[1] / n_neigh
        if n_floor:
            p[(a <= 0) & ~nb] = mass[2] / n_floor
        out.append(p)
    return out
