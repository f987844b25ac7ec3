"""Ground-truth attention maps P(S): targets -> a probability distribution over a layout's tokens.

Three levels, as in the KLAL paper: *target* tokens (those whose canvas cell holds any target
area) share the mass `target` in proportion to the exact target area inside each cell; their
*neighbours* (within `radius` cells, Chebyshev distance, same grid) share `neighbour` equally;
every other token shares `floor` equally. Only what lies on the canvas counts: a token that covers
no canvas (padding, e.g. `llava-1.5-pad` on a wide picture) is never a target or a neighbour, and a
target reaching past the picture's edge gives area only to the tokens that show it. When a level has no tokens its mass goes to the other
levels in proportion to theirs, so the map always sums to 1.

Targets are plain dicts (stored on every row in `geometry["targets"]`):
  {"type": "disc", "center": [x, y], "radius": r}
  {"type": "rect", "box": [x0, y0, x1, y1]}
  {"type": "polygon", "points": [[x, y], ...]}   (simple, may be concave; implicitly closed)
Shapes of one sample are disjoint, so the target area is the sum of their areas.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from .errors import MapError, UsageError
from .geometry import clip, disc_cell_areas, polygon_cell_areas, rect_cell_areas
from .grids import Layout, TokenGrid, layout as make_layout


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

    def flags(self) -> str:
        """These levels as the CLI's options (in the commands the manifests and cards record)."""
        return f"--map-target {self.target} --map-neighbour {self.neighbour} --map-floor {self.floor} --map-radius {self.radius}"


def _prepare(grid: TokenGrid, canvas: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid's edges clipped to the canvas (a token's cell counts only the part of it that shows
    the picture; a padding token's cell is empty) and which cells show any of it."""
    xe, ye = (grid.x_edges, grid.y_edges) if canvas is None else (clip(grid.x_edges, 0.0, float(canvas[0])), clip(grid.y_edges, 0.0, float(canvas[1])))
    return xe, ye, (np.diff(ye) > 0)[:, None] & (np.diff(xe) > 0)[None, :]


_PREPARED: dict[tuple[int, tuple[int, int]], tuple[TokenGrid, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def _prepared(grid: TokenGrid, canvas: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_prepare`, once per read-only grid (a cached layout's) and canvas, read-only: a run asks
    about the same few grids every row."""
    if canvas is None or any(not isinstance(a, np.ndarray) or a.flags.writeable for a in (grid.x_edges, grid.y_edges)):
        return _prepare(grid, canvas)  # a grid its owner may still change
    key = (id(grid), (int(canvas[0]), int(canvas[1])))
    hit = _PREPARED.get(key)
    if hit is None or hit[0] is not grid:
        if len(_PREPARED) >= 256:  # bounded, for a long-lived process that meets ever new grids
            _PREPARED.clear()
        arrays = _prepare(grid, key[1])
        for arr in arrays:
            arr.flags.writeable = False
        hit = _PREPARED[key] = (grid, arrays)  # holding the grid keeps its id its own
    return hit[1]


def target_areas(targets: Sequence[Mapping[str, Any]], grid: TokenGrid, canvas: tuple[int, int] | None = None) -> np.ndarray:
    """Exact target area (px^2) inside each cell of `grid` -> float64 [rows, cols]; with `canvas`
    (width, height), only the area that lies on the canvas (a target reaching past the picture's
    edge gives nothing to the padding tokens there)."""
    xe, ye, _ = _prepared(grid, canvas)
    area = np.zeros(grid.shape, dtype=np.float64)
    for t in targets:
        kind = t["type"]
        if kind == "disc":
            area += disc_cell_areas(t["center"], t["radius"], xe, ye)
        elif kind == "rect":
            area += rect_cell_areas(t["box"], xe, ye)
        elif kind == "polygon":
            area += polygon_cell_areas(t["points"], xe, ye)
        elif kind == "mask":  # a COCO RLE mask (maps from annotations: linebench.annotations)
            from .annotations import decoded_mask, mask_cell_areas

            area += mask_cell_areas(decoded_mask(t["rle"]["counts"], tuple(t["rle"]["size"])), xe, ye)
        else:
            raise ValueError(f"unknown target type {kind!r}")
    return area


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Cells within Chebyshev distance `radius` of a True cell (nothing from outside the grid)."""
    rows, cols = mask.shape
    if mask.size == 0:
        return mask.astype(bool)
    size = 2 * min(radius, max(rows, cols)) + 1  # a wider neighbourhood reaches nothing more
    src = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    out = cv2.dilate(src, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def grid_maps(targets: Sequence[Mapping[str, Any]], layout: Layout, params: MapParams = MapParams()) -> list[np.ndarray]:
    """P(S) on every grid of `layout`: float64 arrays of each grid's shape, summing to 1 together."""
    areas = [target_areas(targets, g, layout.canvas) for g in layout.grids]
    is_target = [a > 0 for a in areas]
    # a padding token (its cell shows none of the picture) is never a target or a neighbour: floor
    is_neigh = [_dilate(t, params.radius) & ~t & _prepared(g, layout.canvas)[2] for t, g in zip(is_target, layout.grids)]
    total_area = sum(float(a.sum()) for a in areas)
    n_neigh = sum(int(m.sum()) for m in is_neigh)
    n_floor = layout.num_tokens - sum(int(t.sum()) for t in is_target) - n_neigh
    if total_area <= 0:
        w, h = layout.canvas
        raise MapError(f"the targets lie outside every token of {layout.profile} on a {w}x{h} canvas")
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


def map_values(targets: Sequence[Mapping[str, Any]], layout: Layout, params: MapParams = MapParams()) -> np.ndarray:
    """P(S) flat in token order, float32 (`AttentionMap.values`)."""
    return np.concatenate([g.ravel() for g in grid_maps(targets, layout, params)]).astype(np.float32)


# --------------------------------------------------------------------------- rows -> maps


@dataclass(frozen=True)
class AttentionMap:
    """A map in a model's token order: `values` (float32, sums to 1) is flat, one value per visual token;
    `shapes` gives each grid's (rows, cols) in order; `layout` says which canvas region each token
    covers and how the tokens sit among the model's image placeholders (`layout.expand(values)`)."""

    values: np.ndarray
    shapes: tuple[tuple[int, int], ...]
    layout: Layout

    def grids(self) -> list[np.ndarray]:
        """One [rows, cols] array per grid."""
        return self.layout.split(self.values)


def _geometry_and_params(source: Any) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """(geometry, stored map params) from a dataset row, a Scene, or a geometry dict."""
    geometry = getattr(source, "geometry", source)
    stored: dict[str, Any] = {}
    if isinstance(geometry, Mapping) and "geometry" in geometry:  # a row
        row = geometry
        geometry = row["geometry"]
        params = row.get("params")
        if params is not None:
            params = json.loads(params) if isinstance(params, str) else params
            stored = {k: v for k, v in params.get("maps", {}).items() if k in MapParams.__dataclass_fields__}
    if isinstance(geometry, (str, bytes)):
        geometry = json.loads(geometry)
    if isinstance(geometry, Mapping) and "targets" not in geometry and "size" in geometry:  # annotations as they are
        from .annotations import annotation_geometry

        opts = dict(geometry)
        geometry = annotation_geometry(opts.pop("size"), **opts)
    if not isinstance(geometry, Mapping) or "targets" not in geometry or "canvas" not in geometry:
        raise UsageError(
            "attention_map takes a linebench row, a Scene, a geometry dict with 'canvas' and 'targets', "
            "or annotations {'size': (w, h), 'boxes' | 'points' | 'polygons' | 'masks': [...], ...}"
        )
    return geometry, stored


def attention_map(source: Any, profile: str | Layout, **map_params: float) -> AttentionMap:
    """The ground-truth map of one sample in `profile`'s token order, from its stored geometry.

    `source` is a row of any linebench dataset (a dict with `geometry`, as `datasets` returns it), a
    `Scene`, a geometry dict, or grounding annotations as they are: `{"size": (w, h), "boxes": [...],
    "box_format": "xywh", ...}` (the arguments of `linebench.annotations.annotation_geometry`: points,
    boxes, polygons or masks on a real image; docs/annotations.md). `profile` is a profile string (`"qwen2.5-vl"`,
    `"internvl:max_tiles=6"`, `"grid24"`; see `linebench grids`) or a `Layout`. `map_params`
    (target, neighbour, floor, radius) default to the ones the row was generated with (so
    `attention_map(row, "grid24").values` equals the stored `attn_grid24` column), else to MapParams().
    """
    geometry, stored = _geometry_and_params(source)
    canvas = (int(geometry["canvas"][0]), int(geometry["canvas"][1]))
    unknown = sorted(set(map_params) - set(MapParams.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown map parameter {unknown[0]!r} (map parameters: target, neighbour, floor, radius)")
    if "radius" in map_params and (isinstance(map_params["radius"], bool) or int(map_params["radius"]) != map_params["radius"]):
        raise UsageError(f"map radius must be a whole number of tokens, got {map_params['radius']!r}")
    params = MapParams(**{**stored, **map_params})
    lay = profile if isinstance(profile, Layout) else make_layout(profile, canvas)
    if tuple(lay.canvas) != canvas:
        raise UsageError(f"layout is for a {lay.canvas[0]}x{lay.canvas[1]} canvas, the sample's is {canvas[0]}x{canvas[1]}")
    return AttentionMap(map_values(geometry["targets"], lay, params), tuple(g.shape for g in lay.grids), lay)


def target_tokens(source: Any, profile: str | Layout) -> np.ndarray:
    """Which of `profile`'s visual tokens (flat, in token order) hold target area: the tokens of the
    map's top level. Attention diagnostics compare a model's attention there with its attention
    everywhere (the paper's ratio)."""
    geometry, _ = _geometry_and_params(source)
    canvas = (int(geometry["canvas"][0]), int(geometry["canvas"][1]))
    lay = profile if isinstance(profile, Layout) else make_layout(profile, canvas)
    return np.concatenate([(target_areas(geometry["targets"], g, lay.canvas) > 0).ravel() for g in lay.grids])


def map_transform(profile: str, *, column: str | None = None, only_new: bool = False, annotations: Mapping[str, Any] | None = None, **map_params: float):
    """A batched `datasets` transform adding `profile`'s map (flat float32 list per row) as `column`
    (default `attn_<profile>`):

        ds.with_transform(map_transform("qwen2.5-vl"))                       # on the fly, on access
        ds.map(map_transform("qwen2.5-vl", only_new=True), batched=True)     # stored in a new column

    `only_new=True` returns just the new column (what `ds.map` should add; returning the image column
    too would make `map` re-encode every image).

    On a real grounding dataset without `geometry`, say where the annotations are:
    `annotations={"column": "bbox", "kind": "boxes", "box_format": "xywh", "image_column": "image"}`
    (any option of `annotation_geometry`: coords, box_mode, point_radius); each row's image size is
    read from its image (a PIL image, or stored bytes).
    """
    name = column or f"attn_{profile}"
    make_layout(profile, (448, 448))  # a bad profile fails here, not on the first batch
    ann = dict(annotations or {})
    ann_column, ann_kind, image_column = ann.pop("column", None), ann.pop("kind", "boxes"), ann.pop("image_column", "image")
    if annotations is not None and ann_column is None:
        raise UsageError("map_transform(annotations=...) needs the annotation 'column'")

    def geometry_of(batch: Mapping[str, list], i: int) -> Any:
        if annotations is None:
            return batch["geometry"][i]
        from .annotations import as_list, image_size

        img = batch[image_column][i]
        size = img.size if hasattr(img, "size") and not isinstance(img, dict) else image_size(img, None)
        return {"size": size, ann_kind: as_list(ann_kind, batch[ann_column][i]), **ann}

    def transform(batch: Mapping[str, list]) -> dict[str, list]:
        n = len(batch["geometry" if annotations is None else ann_column])
        rows = [{"geometry": geometry_of(batch, i), "params": batch["params"][i] if "params" in batch else None} for i in range(n)]
        new = [attention_map(r, profile, **map_params).values for r in rows]
        return {name: new} if only_new else {**batch, name: new}

    return transform
