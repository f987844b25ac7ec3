"""Token layouts: which canvas region each visual token of a model covers, in the model's token order.

A `Layout` is a list of `TokenGrid`s in the order the model puts their tokens in its sequence (tiles,
thumbnail, base image...); tokens are numbered grid by grid, row-major inside each grid. Edges are in
canvas px and may extend past the canvas where a model pads. A map over a layout is a flat vector of
`num_tokens` values in that order; `Layout.expand` spreads it over the model's image placeholder
tokens, which also include any per-row newline tokens (LLaVA-NeXT, LLaVA-OneVision).

Profiles turn a canvas size into a layout. `gridN` / `gridRxC` are uniform grids over the canvas;
model profiles live in `linebench.profiles` (one module per family) and register here. Checkpoint
parameters (min/max pixels, max tiles) are keyword arguments with the defaults of the checkpoint each
profile names; in a profile string they follow the name: `qwen2.5-vl:max_pixels=1003520`.
"""

from __future__ import annotations

import functools

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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
# Stored by `linebench generate` unless --maps says otherwise: a model-free grid and the most used
# families (any other profile can be added later from the stored geometry: linebench.attention_map).
DEFAULT_MAPS = ("grid24", "llava-1.5", "qwen2.5-vl", "internvl")


def default_maps(canvas: tuple[int, int]) -> tuple[str, ...]:
    """DEFAULT_MAPS, with llava-1.5-pad for llava-1.5 on a non-square canvas (where llava-1.5's centre
    crop would leave targets without a token). On a square canvas the two are the same map."""
    if canvas[0] == canvas[1]:
        return DEFAULT_MAPS
    return tuple("llava-1.5-pad" if m == "llava-1.5" else m for m in DEFAULT_MAPS)
_UNIFORM = re.compile(r"grid(\d+)(?:x(\d+))?$")
_loaded = False


def register(name: str, *, summary: str, source: str, **defaults: int):
    """Decorator: `build(canvas, **params)` returns a tuple of TokenGrids, or (grids, after_text)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in PROFILES:
            raise ValueError(f"profile {name!r} registered twice")
        PROFILES[name] = Profile(name, fn, dict(defaults), summary, source)
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import profiles  # noqa: F401  (registers the model profiles)


def profile_names() -> list[str]:
    _load()
    return list(PROFILES)


def get_profile(name: str) -> Profile:
    _load()
    if name not in PROFILES:
        raise UsageError(
            f"unknown map profile {name!r}; available: {', '.join(PROFILES)}, gridN (e.g. grid24), gridRxC (e.g. grid12x16)"
        )
    return PROFILES[name]


MAX_PARAM = 10**9  # a profile parameter (pixels, tiles, px) beyond this is a typo


def parse_profile(spec: str) -> tuple[str, dict[str, int]]:
    """'internvl:max_tiles=6:min_tiles=1' -> ('internvl', {'max_tiles': 6, 'min_tiles': 1})."""
    name, *rest = spec.strip().split(":")
    params: dict[str, int] = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"map profile {spec!r}: parameters are written name:key=value[:key=value]")
        try:
            params[key.strip()] = int(value)
            if abs(params[key.strip()]) > MAX_PARAM:
                raise UsageError(f"map profile {spec!r}: {key} must be within -{MAX_PARAM:,}..{MAX_PARAM:,}, got {value}")
        except ValueError:
            raise UsageError(f"map profile {spec!r}: {key} must be an integer, got {value!r}") from None
    return name, params


def canonical(name: str, params: Mapping[str, int]) -> str:
    """The profile string for `name` with `params` (defaults left out, keys sorted)."""
    prof = None if _UNIFORM.match(name) else get_profile(name)
    extra = {k: v for k, v in sorted(params.items()) if prof is None or prof.defaults.get(k) != v}
    return name + "".join(f":{k}={v}" for k, v in extra.items())


MAX_TOKENS = 1 << 20  # image tokens per layout (a uniform grid1024 has this many; real VLMs use < 20,000)


def layout(profile: str, canvas: tuple[int, int], **params: int) -> Layout:
    """The token layout of `profile` for an image of `canvas` (see `_layout`); cached, since a run
    asks for the same few layouts once per row and profile (the layouts are frozen dataclasses)."""
    try:
        key = (profile, (int(canvas[0]), int(canvas[1])), tuple(sorted(params.items())))
        hash(key)
    except (TypeError, ValueError, IndexError):
        return _layout(profile, canvas, **params)
    return _cached_layout(*key)


@functools.lru_cache(maxsize=512)
def _cached_layout(profile: str, canvas: tuple[int, int], params: tuple) -> Layout:
    lay = _layout(profile, canvas, **dict(params))
    for g in lay.grids:  # shared by every caller: read-only
        for arr in (g.x_edges, g.y_edges):
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False
    return lay


def _layout(profile: str, canvas: tuple[int, int], **params: int) -> Layout:
    """The token layout of `profile` for an image of `canvas` = (width, height) px.

    `gridN` is N x N tokens over the whole canvas, `gridRxC` is R rows by C columns; every other name is
    a model profile (`linebench grids` lists them). Parameters come from the profile string
    (`name:key=value`) and/or keyword arguments.
    """
    name, given = parse_profile(profile)
    given.update(params)
    w, h = (int(canvas[0]), int(canvas[1]))
    if w < 1 or h < 1:
        raise UsageError(f"canvas must be at least 1x1 px, got {w}x{h}")
    m = _UNIFORM.match(name)
    if m:
        if given:
            raise UsageError(f"grid profile {name!r} takes no parameters")
        rows = int(m.group(1))
        cols = int(m.group(2) or rows)
        if not (1 <= rows <= 1024 and 1 <= cols <= 1024):
            raise UsageError(f"grid profile {name!r}: rows and columns must be within 1..1024")
        return Layout(name, (w, h), (uniform_grid((w, h), rows, cols),))
    prof = get_profile(name)
    unknown = sorted(set(given) - set(prof.defaults))
    if unknown:
        known = ", ".join(prof.defaults) or "none"
        raise UsageError(f"map profile {name!r} has no parameter {unknown[0]!r} (its parameters: {known})")
    full = {**prof.defaults, **given}
    try:
        built = prof.build((w, h), **full)
    except UsageError as e:
        raise UsageError(f"map profile {name} on a {w}x{h} canvas: {e}") from None
    grids, after = built if isinstance(built, tuple) and len(built) == 2 and isinstance(built[1], str) else (built, "")
    tokens = sum(g.rows * g.cols for g in grids)
    if tokens > MAX_TOKENS:
        raise UsageError(f"map profile {canonical(name, given)} gives {tokens:,} image tokens on a {w}x{h} canvas; at most {MAX_TOKENS:,} are supported")
    return Layout(canonical(name, given), (w, h), tuple(grids), after, full)


def canonical_maps(profiles, canvas: tuple[int, int]) -> tuple[str, ...]:
    """Profile strings -> canonical names (the `attn_` column names), checked, without duplicates."""
    out = []
    for p in profiles:
        if not isinstance(p, str) or not p.strip():
            raise UsageError(f"map profiles are names like qwen2.5-vl or grid24, got {p!r}")
        name = layout(p, canvas).profile
        if name in out:
            raise UsageError(f"map profile {name} is listed twice")
        out.append(name)
    return tuple(out)


def grid_shape(profile: str, canvas: tuple[int, int]) -> tuple[int, int]:
    """Shape of the stored map column: (rows, cols) for one grid, (1, tokens) for several."""
    lay = layout(profile, canvas)
    if len(lay.grids) == 1:
        return lay.grids[0].shape
    return (1, lay.num_tokens)
