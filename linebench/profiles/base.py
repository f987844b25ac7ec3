"""The types a model profile builds and the registry it joins: `TokenGrid`, `Layout`, `image_grid`,
`uniform_grid`, `Profile`, `PROFILES` and `register`.

A `Layout` is a list of `TokenGrid`s in the order the model puts their tokens in its sequence (tiles,
thumbnail, base image...); tokens are numbered grid by grid, row-major inside each grid. Edges are in
canvas px and may extend past the canvas where a model pads. A map over a layout is a flat vector of
`num_tokens` values in that order; `Layout.expand` spreads it over the model's image placeholder
tokens, which also include any per-row newline tokens (LLaVA-NeXT, LLaVA-OneVision).

Each profile module (one per model family) builds its grids with `image_grid` / `TokenGrid` and
registers itself with `register`; `linebench.grids` turns a profile string into a layout. This module
imports nothing else from linebench, so a profile never imports `grids`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class TokenGrid:
    """rows x cols tokens; token (r, c) covers [x_edges[c], x_edges[c+1]) x [y_edges[r], y_edges[r+1])
    in canvas px (edges may extend past the canvas where a model pads)."""

    rows: int
    cols: int
    x_edges: np.ndarray  # [cols + 1]
    y_edges: np.ndarray  # [rows + 1]
    label: str = ""  # "base", "tile 1,2", "thumbnail", ...
    newline: bool = False  # the model appends one extra image token (a learned newline) after each row
    before: str = ""  # text tokens the model's prompt puts right before this grid's tokens

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Layout:
    profile: str  # canonical profile string, e.g. "qwen2.5-vl" or "internvl:max_tiles=6"
    canvas: tuple[int, int]  # (width, height) px
    grids: tuple[TokenGrid, ...]
    after: str = ""  # text tokens the prompt puts after the last grid
    params: Mapping[str, Any] = field(default_factory=dict)  # the profile's resolved parameters

    @property
    def num_tokens(self) -> int:
        """Visual tokens that carry map values (what `attention_map` returns, in order)."""
        return sum(g.size for g in self.grids)

    @property
    def num_placeholders(self) -> int:
        """Image tokens in the model's input_ids: visual tokens plus per-row newline tokens."""
        return self.num_tokens + sum(g.rows for g in self.grids if g.newline)

    def placeholder_index(self) -> np.ndarray:
        """For each image token in input_ids (in order), its index into the map, or -1 for a newline."""
        out, start = [], 0
        for g in self.grids:
            idx = np.arange(start, start + g.size, dtype=np.int64).reshape(g.rows, g.cols)
            if g.newline:
                idx = np.concatenate([idx, np.full((g.rows, 1), -1, dtype=np.int64)], axis=1)
            out.append(idx.ravel())
            start += g.size
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def expand(self, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A flat map of `num_tokens` values -> `num_placeholders` values aligned with the model's image
        tokens in input_ids (`fill` at newline tokens)."""
        p = np.asarray(p).ravel()
        if p.size != self.num_tokens:
            raise ValueError(f"map has {p.size} values, layout {self.profile} has {self.num_tokens} tokens")
        idx = self.placeholder_index()
        out = np.full(idx.shape, fill, dtype=p.dtype)
        out[idx >= 0] = p[idx[idx >= 0]]
        return out

    def split(self, p: np.ndarray) -> list[np.ndarray]:
        """A flat map -> one [rows, cols] array per grid."""
        p = np.asarray(p).ravel()
        out, start = [], 0
        for g in self.grids:
            out.append(p[start : start + g.size].reshape(g.shape))
            start += g.size
        return out

    def describe(self) -> str:
        """One line: the grids in token order and the token counts."""
        parts: list[list] = []  # [text, count]: runs of alike grids (tiles) are counted, not listed
        for g in self.grids:
            kind = g.label.split(" ")[0] if g.label else ""
            s = f"{kind + ' ' if kind else ''}{g.rows}x{g.cols}" + ("+newlines" if g.newline else "")
            if parts and parts[-1][0] == s and kind == "tile":
                parts[-1][1] += 1
            else:
                parts.append([s, 1])
        parts = [f"{n} x {s}" if n > 1 else s for s, n in parts]
        extra = self.num_placeholders - self.num_tokens
        tail = f" (+{extra} newline)" if extra else ""
        return f"{' + '.join(parts)} = {self.num_tokens} tokens{tail}"


# --------------------------------------------------------------------------- building blocks


def image_grid(
    rows: int,
    cols: int,
    cell: float | tuple[float, float],
    *,
    canvas: tuple[int, int],
    resized: tuple[float, float],
    offset: tuple[float, float] = (0.0, 0.0),
    start: tuple[float, float] = (0.0, 0.0),
    **kw: Any,
) -> TokenGrid:
    """A grid defined in the model's image coordinates.

    The canvas (w, h) was resized to `resized` = (W, H) px (aspect not necessarily kept) and pasted at
    `offset` = (ox, oy) into the model's image; token (r, c) covers model px
    [start_x + c * cell_w, start_x + (c + 1) * cell_w) x [start_y + r * cell_h, ...). Returns the grid
    with edges in canvas px: x_canvas = (x_model - ox) * w / W.
    """
    cw, ch = (cell, cell) if isinstance(cell, (int, float)) else cell
    w, h = canvas
    xs = (start[0] + cw * np.arange(cols + 1, dtype=np.float64) - offset[0]) * (w / resized[0])
    ys = (start[1] + ch * np.arange(rows + 1, dtype=np.float64) - offset[1]) * (h / resized[1])
    return TokenGrid(rows, cols, xs, ys, **kw)


def uniform_grid(canvas: tuple[int, int], rows: int, cols: int, **kw: Any) -> TokenGrid:
    w, h = canvas
    return TokenGrid(rows, cols, np.linspace(0.0, float(w), cols + 1), np.linspace(0.0, float(h), rows + 1), **kw)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Profile:
    name: str
    build: Callable[..., Layout]  # build(canvas, **params) -> grids (tuple) or Layout fields
    defaults: Mapping[str, int]  # checkpoint parameters and their defaults
    summary: str  # one line: model family, checkpoint, what the preprocessing does
    source: str  # the processor / model code it reproduces


PROFILES: dict[str, Profile] = {}


def register(name: str, *, summary: str, source: str, **defaults: int):
    """Decorator: `build(canvas, **params)` returns a tuple of TokenGrids, or (grids, after_text)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in PROFILES:
            raise ValueError(f"profile {name!r} registered twice")
        PROFILES[name] = Profile(name, fn, dict(defaults), summary, source)
        return fn

    return deco
