"""Profile strings -> token layouts: which canvas region each visual token of a model covers, in the
model's token order.

The layout types (`TokenGrid`, `Layout`) and the profile registry live in `linebench.profiles.base`
and are re-exported here, so `from linebench.grids import Layout, TokenGrid, layout` keeps working.
This module only resolves a profile string to a layout. `gridN` / `gridRxC` are uniform grids over the
canvas; model profiles live in `linebench.profiles` (one module per family, registered when that
package is imported, which this module does). Checkpoint parameters (min/max pixels, max tiles) are
keyword arguments with the defaults of the checkpoint each profile names; in a profile string they
follow the name: `qwen2.5-vl:max_pixels=1003520`.
"""

from __future__ import annotations

import functools

import re
from typing import Mapping

import numpy as np

from . import profiles  # noqa: F401  (registers the model profiles)
from .errors import UsageError
from .profiles.base import PROFILES, Layout, Profile, TokenGrid, image_grid, register, uniform_grid  # noqa: F401  (re-exported)


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


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str) -> Profile:
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
