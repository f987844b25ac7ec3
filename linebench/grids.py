"""Token grids: which canvas region each visual token of a model covers, in the model's token order.

A `Layout` is a list of `TokenGrid`s (e.g. tiles then a thumbnail); tokens are numbered grid by
grid, row-major inside each grid. For now the profiles are uniform grids over the canvas
(`grid24` = 24x24, `grid16`, any `gridN`); model profiles come through the same `layout()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class TokenGrid:
    """rows x cols tokens; token (r, c) covers [x_edges[c], x_edges[c+1]) x [y_edges[r], y_edges[r+1])
    in canvas px (edges may extend past the canvas where a model pads)."""

    rows: int
    cols: int
    x_edges: np.ndarray  # [cols + 1]
    y_edges: np.ndarray  # [rows + 1]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


@dataclass(frozen=True)
class Layout:
    profile: str
    canvas: tuple[int, int]
    grids: tuple[TokenGrid, ...]

    @property
    def num_tokens(self) -> int:
        return sum(g.rows * g.cols for g in self.grids)


def uniform_grid(canvas: tuple[int, int], rows: int, cols: int) -> TokenGrid:
    w, h = canvas
    return TokenGrid(rows, cols, np.linspace(0.0, float(w), cols + 1), np.linspace(0.0, float(h), rows + 1))


_UNIFORM = re.compile(r"grid(\d+)(?:x(\d+))?$")
DEFAULT_MAPS = ("grid24", "grid16")


def layout(profile: str, canvas: tuple[int, int]) -> Layout:
    """The token layout of `profile` for an image of `canvas` = (width, height) px.

    `gridN` is N x N tokens over the whole canvas, `gridRxC` is R rows by C columns.
    """
    m = _UNIFORM.match(profile)
    if m:
        rows = int(m.group(1))
        cols = int(m.group(2) or rows)
        if not (1 <= rows <= 1024 and 1 <= cols <= 1024):
            raise UsageError(f"grid profile {profile!r}: rows and columns must be within 1..1024")
        return Layout(profile, canvas, (uniform_grid(canvas, rows, cols),))
    raise UsageError(f"unknown map profile {profile!r}; available: gridN (e.g. grid24), gridRxC (e.g. grid12x16)")


def grid_shape(profile: str, canvas: tuple[int, int]) -> tuple[int, int]:
    """Shape of the stored map column: (rows, cols) for one grid, (1, tokens) for several."""
    lay = layout(profile, canvas)
    if len(lay.grids) == 1:
        return lay.grids[0].shape
    return (1, lay.num_tokens)
