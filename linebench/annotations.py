"""Map targets from standard grounding annotations: points, boxes, polygons and masks on real
images of any size — pure functions of plain data (no I/O).

`annotation_geometry(size, points=..., boxes=..., polygons=..., masks=...)` returns a geometry dict
`{"canvas": [width, height], "targets": [...], "annotations": {...}}`, the shape a generated row's
`geometry` has (plus the annotations themselves in px, e.g. the whole box when the map uses its
centre, which is what answers are scored against: `linebench.pointing`),
so `linebench.attention_map(geometry, profile)` gives the exact per-model map (target mass by exact
area inside each token cell, the three levels target / neighbour / floor as for the synthetic
tasks) for every profile, and the same dict stored in a `geometry` column recomputes it later.

Conventions (the image is `size` = (width, height) px; pixel (i, j) covers [i, i+1) x [j, j+1)):

- coordinates `coords`: "px" (pixels), "norm" (0–1 of width / height), "percent" (0–100:
  PixMo-Points stores points like this);
- boxes `box_format`: "xyxy" (x1, y1, x2, y2) or "xywh" (x, y, width, height: COCO and RefCOCO);
  `box_mode`: "area" (the whole box, the default) or "centre" (the middle CENTRE_FRACTION of the
  box's width and height, i.e. a quarter of its area: the paper's choice for RefCOCO, where a box
  holds background around the object);
- points are discs of `point_radius`: a value below 1 is a fraction of the image's short side
  (default 0.02: 8.5 px on 640x427), from 1 up it is pixels;
- polygons are COCO's flat `[x1, y1, x2, y2, ...]` lists (or lists of [x, y] pairs), each a target;
- masks are COCO RLE (`{"size": [h, w], "counts": ...}`, compressed or not) or 2-D 0/1 arrays,
  decoded by pycocotools; their area per token is exact for the pixel squares (an integral image).

Bad annotations (NaN, a negative size, a box wholly outside the image, x2 < x1 — often xywh read
as xyxy) raise `UsageError` with one line that says what to change.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import UsageError

COORDS = ("px", "norm", "percent")
BOX_FORMATS = ("xyxy", "xywh")
BOX_MODES = ("area", "centre")
CENTRE_FRACTION = 0.5  # box_mode="centre": the middle half of the width and of the height
POINT_RADIUS = 0.02  # of the short side (a value >= 1 is px)
SLACK = 0.01  # a box may overshoot the image by this share of its size (rounding in the source), then is clipped


def _scale(coords: str, size: tuple[int, int]) -> tuple[float, float]:
    if coords not in COORDS:
        raise UsageError(f"coords must be one of {', '.join(COORDS)}, got {coords!r}")
    w, h = size
    return {"px": (1.0, 1.0), "norm": (float(w), float(h)), "percent": (w / 100.0, h / 100.0)}[coords]


def _numbers(values: Any, what: str, n: int | None = None) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be numbers, got {values!r}"[:200]) from None
    if n is not None and len(out) != n:
        raise UsageError(f"{what} must have {n} numbers, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise UsageError(f"{what} has a value that is not a finite number: {values!r}"[:200])
    return out


def _point(p: Any) -> list[float]:
    if isinstance(p, Mapping):  # PixMo: {"x": .., "y": ..}
        if "x" not in p or "y" not in p:
            raise UsageError(f"a point needs x and y, got {dict(p)!r}"[:200])
        return _numbers([p["x"], p["y"]], "a point", 2)
    return _numbers(p, "a point", 2)


def point_radius_px(radius: float | None, size: tuple[int, int]) -> float:
    r = POINT_RADIUS if radius is None else float(radius)
    if not math.isfinite(r) or r <= 0:
        raise UsageError(f"point radius must be positive, got {radius!r}")
    return r * min(size) if r < 1 else r


def point_targets(points: Iterable[Any], size: tuple[int, int], *, coords: str = "px", radius: float | None = None) -> list[dict]:
    sx, sy = _scale(coords, size)
    w, h = size
    r = point_radius_px(radius, size)
    out = []
    for p in points:
        x, y = _point(p)
        x, y = x * sx, y * sy
        if not (0 <= x <= w and 0 <= y <= h):
            raise UsageError(f"point ({x:g}, {y:g}) px lies outside the {w}x{h} image (are the coordinates {coords}?)")
        out.append({"type": "disc", "center": [x, y], "radius": r})
    return out


def box_xyxy(box: Any, size: tuple[int, int], *, box_format: str = "xyxy", coords: str = "px") -> list[float]:
    """A box in any supported convention -> (x1, y1, x2, y2) px, clipped to the image; checked."""
    if box_format not in BOX_FORMATS:
        raise UsageError(f"box format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    a, b, c, d = _numbers(box, "a box", 4)
    sx, sy = _scale(coords, size)
    w, h = size
    if box_format == "xywh":
        if c < 0 or d < 0:
            raise UsageError(f"box {list(box)!r} has a negative width or height")
        x1, y1, x2, y2 = a * sx, b * sy, (a + c) * sx, (b + d) * sy
    else:
        if c < a or d < b:
            raise UsageError(f"box {list(box)!r} has x2 < x1 or y2 < y1: if it is (x, y, width, height), use box format xywh")
        x1, y1, x2, y2 = a * sx, b * sy, c * sx, d * sy
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        raise UsageError(f"box {list(box)!r} has no area")
    tol_x, tol_y = SLACK * w, SLACK * h
    if x1 < -tol_x or y1 < -tol_y or x2 > w + tol_x or y2 > h + tol_y:
        other = "xyxy" if box_format == "xywh" else "xywh"
        raise UsageError(
            f"box {list(box)!r} ({box_format}, {coords}) reaches outside the {w}x{h} image: "
            f"are the boxes {other}, or the coordinates other than {coords}?"
        )
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]


def box_targets(
    boxes: Iterable[Any], size: tuple[int, int], *, box_format: str = "xyxy", coords: str = "px", box_mode: str = "area"
) -> list[dict]:
    if box_mode not in BOX_MODES:
        raise UsageError(f"box mode must be one of {', '.join(BOX_MODES)}, got {box_mode!r}")
    out = []
    for box in boxes:
        x1, y1, x2, y2 = box_xyxy(box, size, box_format=box_format, coords=coords)
        if box_mode == "centre":
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, CENTRE_FRACTION * (x2 - x1) / 2, CENTRE_FRACTION * (y2 - y1) / 2
            x1, y1, x2, y2 = cx - hw, cy - hh, cx + hw, cy + hh
        out.append({"type": "rect", "box": [x1, y1, x2, y2]})
    return out


def polygon_targets(polygons: Iterable[Any], size: tuple[int, int], *, coords: str = "px") -> list[dict]:
    sx, sy = _scale(coords, size)
    w, h = size
    out = []
    for poly in polygons:
        flat = [v for p in poly for v in p] if poly and not isinstance(poly[0], (int, float)) else list(poly)
        vals = _numbers(flat, "a polygon")
        if len(vals) < 6 or len(vals) % 2:
            raise UsageError(f"a polygon needs at least 3 (x, y) points, got {len(vals)} numbers")
        pts = [[min(max(x * sx, 0.0), float(w)), min(max(y * sy, 0.0), float(h))] for x, y in zip(vals[::2], vals[1::2])]
        out.append({"type": "polygon", "points": pts})
    return out


def _rle(mask: Any, size: tuple[int, int]) -> dict:
    """A mask as compressed COCO RLE ({"size": [h, w], "counts": str}), checked against the image size."""
    from pycocotools import mask as cmask

    w, h = size
    if isinstance(mask, Mapping):
        if "size" not in mask or "counts" not in mask:
            raise UsageError("an RLE mask needs 'size' and 'counts' (COCO format)")
        rle = dict(mask)
        try:
            mh, mw = (int(v) for v in rle["size"])
        except (TypeError, ValueError):
            raise UsageError(f"an RLE mask's size must be [height, width], got {rle['size']!r}") from None
        runs = _rle_runs(rle["counts"])
        if sum(runs) != mh * mw:  # pycocotools would decode it anyway, to a slanted or truncated shape
            raise UsageError(f"an RLE mask's counts cover {sum(runs)} pixels, its size {mw}x{mh} has {mh * mw}: the counts do not match the size")
        if isinstance(rle["counts"], list):  # uncompressed RLE
            rle = cmask.frPyObjects(rle, mh, mw)
        counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
        rle = {"size": [mh, mw], "counts": counts}
    else:
        arr = np.asarray(mask)
        if arr.ndim != 2:
            raise UsageError(f"a mask must be 2-D (height, width), got shape {arr.shape}")
        enc = cmask.encode(np.asfortranarray((arr != 0).astype(np.uint8)))
        rle = {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}
    if rle["size"] != [h, w]:
        raise UsageError(f"a mask is {rle['size'][1]}x{rle['size'][0]}, the image {w}x{h}")
    return rle


def _rle_runs(counts: Any) -> list[int]:
    """The run lengths of COCO RLE counts: a list of ints, or the compressed string (pycocotools'
    rleFrString: 6-bit groups from '0', 5 data bits and a continuation bit, sign-extended, each run
    after the second stored as the difference from the run two before)."""
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise UsageError("an RLE mask's counts must be non-negative whole numbers")
        return counts
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str) or any(not 48 <= ord(c) < 112 for c in counts):
        raise UsageError("an RLE mask's counts must be a list of numbers or a COCO compressed string")
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p == len(counts):
                raise UsageError("an RLE mask's compressed counts end in the middle of a number")
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise UsageError("an RLE mask's compressed counts decode to a negative run")
        runs.append(x)
    return runs


def mask_targets(masks: Iterable[Any], size: tuple[int, int]) -> list[dict]:
    return [{"type": "mask", "rle": _rle(m, size)} for m in masks]


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    import warnings

    from pycocotools import mask as cmask

    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2: a DeprecationWarning about copy=
        warnings.simplefilter("ignore", DeprecationWarning)
        return cmask.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")})


@functools.lru_cache(maxsize=8)
def decoded_mask(counts: str, size: tuple[int, int]) -> np.ndarray:
    """`decode_mask`, cached: a row's mask is decoded once for all its profiles (and its scoring)."""
    return decode_mask({"size": list(size), "counts": counts})


def mask_cell_areas(mask: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Exact area of a 0/1 pixel mask [h, w] inside each cell of a grid -> float64 [rows, cols].

    G(X, Y), the mask's area in [0, X] x [0, Y], is the integral image at whole pixels and bilinear
    in between (the mask is constant on each pixel square), so each cell is
    G(x1, y1) - G(x0, y1) - G(x1, y0) + G(x0, y0) exactly, at any fractional edges."""
    h, w = mask.shape
    s = np.zeros((h + 1, w + 1), dtype=np.float64)
    s[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1)
    xe = np.clip(np.asarray(x_edges, dtype=np.float64), 0.0, float(w))
    ye = np.clip(np.asarray(y_edges, dtype=np.float64), 0.0, float(h))
    xi = np.minimum(np.floor(xe).astype(np.int64), w - 1)
    yi = np.minimum(np.floor(ye).astype(np.int64), h - 1)
    fx, fy = xe - xi, ye - yi
    s00, s01 = s[yi][:, xi], s[yi][:, xi + 1]
    s10, s11 = s[yi + 1][:, xi], s[yi + 1][:, xi + 1]
    g = (1 - fy)[:, None] * ((1 - fx) * s00 + fx * s01) + fy[:, None] * ((1 - fx) * s10 + fx * s11)
    area = g[1:, 1:] - g[:-1, 1:] - g[1:, :-1] + g[:-1, :-1]
    # rounding in the differences of large sums leaves ~1e-10 where the mask is absent: a cell the
    # mask does not reach gets exactly 0 (the guarantee the other target types give)
    area[area < 1e-6] = 0.0
    return area


def annotation_geometry(
    size: Sequence[int],
    *,
    points: Iterable[Any] | None = None,
    boxes: Iterable[Any] | None = None,
    polygons: Iterable[Any] | None = None,
    masks: Iterable[Any] | None = None,
    coords: str = "px",
    box_format: str = "xyxy",
    box_mode: str = "area",
    point_radius: float | None = None,
) -> dict[str, Any]:
    """{"canvas": [w, h], "targets": [...]} for `linebench.attention_map` (see the module docstring).
    Several annotations (of one kind or several) make one map with several targets."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UsageError(f"image size must be (width, height), got {size!r}") from None
    if w < 1 or h < 1:
        raise UsageError(f"image size must be positive, got {w}x{h}")
    targets: list[dict] = []
    given: dict[str, list] = {}  # the annotations themselves, in px (what answers are scored against)
    if points is not None:
        pts = point_targets(points, (w, h), coords=coords, radius=point_radius)
        targets += pts
        given["points"] = [t["center"] for t in pts]
    if boxes is not None:
        boxes = list(boxes)
        targets += box_targets(boxes, (w, h), box_format=box_format, coords=coords, box_mode=box_mode)
        given["boxes"] = [box_xyxy(b, (w, h), box_format=box_format, coords=coords) for b in boxes]
    if polygons is not None:
        polys = polygon_targets(polygons, (w, h), coords=coords)
        targets += polys
        given["polygons"] = [t["points"] for t in polys]
    if masks is not None:
        rles = mask_targets(masks, (w, h))
        targets += rles
        given["masks"] = [t["rle"] for t in rles]
    if not targets:
        raise UsageError("no annotation: give points, boxes, polygons or masks")
    return {"canvas": [w, h], "targets": targets, "annotations": given}


# --------------------------------------------------------------------------- reading a dataset's columns


def image_size(value: Any, base: Path | None) -> tuple[int, int]:
    """(width, height) of a `datasets` Image value ({bytes, path}; a relative path is under `base`)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, dict):
        raise UsageError(f"the image column holds {type(value).__name__}, not an image")
    try:
        if value.get("bytes"):
            with Image.open(io.BytesIO(value["bytes"])) as im:
                return im.size
        if value.get("path"):
            p = Path(value["path"])
            p = p if p.is_absolute() or base is None else base / p
            with Image.open(p) as im:
                return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise UsageError(f"an image cannot be read ({e})") from None
    raise UsageError("a row has no image bytes or path")


def as_list(kind: str, value: Any) -> list:
    """One annotation or a list of them -> a list (a box is 4 numbers, a point 2 or {x, y}, ...)."""
    if value is None:
        return []
    if kind == "masks":
        return [value] if isinstance(value, dict) else list(value)
    if isinstance(value, dict):
        return [value]
    value = list(value)
    if value and isinstance(value[0], (int, float)) and not isinstance(value[0], bool):
        return [value]  # a single box / point / flat polygon
    return value
