"""Pointing and box answers: the formats real VLMs emit, parsed; scored the way the source
benchmarks score them. Pure functions of text and plain data.

Parsed formats (all coordinates end up in image px, (x1, y1, x2, y2) for boxes, (x, y) for points):

| format | example | coordinates |
|---|---|---|
| Qwen2.5-VL JSON | `[{"bbox_2d": [12, 40, 200, 310], "label": "dog"}]`, `{"point_2d": [120, 88]}` | absolute px of the image given |
| Molmo points | `<point x="41.2" y="63.0" alt="dog">dog</point>`, `<points x1="10" y1="20" x2="30" y2="40" ...>` | percent (0–100) |
| LLaVA boxes | `[0.12, 0.30, 0.55, 0.81]` | normalised 0–1 |
| Qwen2-VL tokens | `<|box_start|>(120,340),(560,810)<|box_end|>` | 0–1000 |
| plain | `(120, 88)`, `[12, 40, 200, 310]` | px when a value is > 1, normalised when all are <= 1 |

Scoring:
- boxes (RefCOCO): correct when the IoU of the first predicted box with the target box is >= 0.5
  (`IOU`), the RefCOCO accuracy@0.5;
- points (PixMo-Points): predicted and target points are matched one-to-one (Hungarian, cost =
  distance), a match counts when the predicted point lies inside the target's mask or box when the
  row has one, else within `POINT_DISTANCE` of the target point (a share of the image diagonal);
  a row is correct when every target is matched and no predicted point is left over; precision
  and recall over points are reported too.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

IOU = 0.5
POINT_DISTANCE = 0.05  # of the image diagonal
MAX_TEXT = 8192  # characters of a prediction that are read (first and last half)

_NUM = r"-?\d+(?:\.\d+)?"
_MOLMO_POINT = re.compile(r"<point\s+x\s*=\s*\"(?P<x>" + _NUM + r")\"\s+y\s*=\s*\"(?P<y>" + _NUM + r")\"", re.I)
_MOLMO_POINTS = re.compile(r"<points\b(?P<attrs>[^>]*)>", re.I)
_MOLMO_ATTR = re.compile(r"\b(?P<axis>[xy])(?P<i>\d+)\s*=\s*\"(?P<v>" + _NUM + r")\"", re.I)
_QWEN2_BOX = re.compile(r"<\|box_start\|>\s*\(\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*\)\s*,\s*\(\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*\)")
_LIST4 = re.compile(r"[\[(]\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*[\])]")
_PAIR = re.compile(r"[\[(]\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*[\])]")
_JSON_START = re.compile(r"\{")  # objects only: boxes and points in lists of numbers are the regexes' job
MAX_JSON_TRIES = 64  # decoding attempts per answer (a run of "{" must not make parsing quadratic)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT // 2] + "\n" + text[-MAX_TEXT // 2 :]


def _finite(vals: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in vals)


def _json_values(text: str) -> list[Any]:
    """Every JSON object in the text that parses (markdown fences and surrounding lists are fine:
    `[{"bbox_2d": ...}, {...}]` gives each object), at most MAX_JSON_TRIES attempts."""
    out, dec, i = [], json.JSONDecoder(), 0
    for _ in range(MAX_JSON_TRIES):
        m = _JSON_START.search(text, i)
        if not m:
            return out
        try:
            value, end = dec.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            i = m.start() + 1
            continue
        out.append(value)
        i = end
    return out


def _walk(value: Any):
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def _scale_box(b: Sequence[float], size: tuple[int, int], unit: float | None) -> list[float]:
    w, h = size
    if unit is None:  # plain numbers: normalised when every value is <= 1
        unit = 1.0 if max(abs(v) for v in b) <= 1.0 else 0.0
    if unit == 0.0:
        x1, y1, x2, y2 = b
    else:
        x1, y1, x2, y2 = b[0] * w / unit, b[1] * h / unit, b[2] * w / unit, b[3] * h / unit
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def parse_boxes(text: Any, size: tuple[int, int]) -> list[list[float]]:
    """Boxes (x1, y1, x2, y2) px from a model's answer, in the order given (see the module docstring)."""
    if not isinstance(text, str):
        if isinstance(text, (list, tuple)) and len(text) == 4 and all(isinstance(v, (int, float)) for v in text):
            text = json.dumps(list(text))
        else:
            return []
    text = _cap(text)
    boxes = []
    for value in _json_values(text):
        for d in _walk(value):
            b = d.get("bbox_2d", d.get("bbox"))
            if isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b):
                if _finite(b):
                    boxes.append(_scale_box([float(v) for v in b], size, 0.0))  # Qwen2.5-VL: absolute px
    if boxes:
        return boxes
    for m in _QWEN2_BOX.finditer(text):
        boxes.append(_scale_box([float(v) for v in m.groups()], size, 1000.0))
    if boxes:
        return boxes
    for m in _LIST4.finditer(text):
        vals = [float(v) for v in m.groups()]
        if _finite(vals):
            boxes.append(_scale_box(vals, size, None))
    return boxes


def parse_points(text: Any, size: tuple[int, int]) -> list[list[float]]:
    """Points (x, y) px from a model's answer (see the module docstring)."""
    if not isinstance(text, str):
        return []
    text = _cap(text)
    w, h = size
    pts = [[float(m["x"]) * w / 100, float(m["y"]) * h / 100] for m in _MOLMO_POINT.finditer(text)]
    for m in _MOLMO_POINTS.finditer(text):
        coords: dict[str, dict[str, float]] = {}
        for a in _MOLMO_ATTR.finditer(m["attrs"]):
            coords.setdefault(a["i"], {})[a["axis"].lower()] = float(a["v"])
        pts += [[c["x"] * w / 100, c["y"] * h / 100] for _, c in sorted(coords.items(), key=lambda kv: int(kv[0])) if "x" in c and "y" in c]
    if pts:
        return pts
    for value in _json_values(text):
        for d in _walk(value):
            p = d.get("point_2d", d.get("point"))
            if isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p):
                pts.append([float(p[0]), float(p[1])])  # Qwen2.5-VL: absolute px
    if pts:
        return pts
    pairs = [[float(a), float(b)] for a, b in _PAIR.findall(text)]
    if pairs and all(max(abs(v) for v in p) <= 1.0 for p in pairs):
        return [[p[0] * w, p[1] * h] for p in pairs]
    return pairs


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(point: Sequence[float], target: Mapping[str, Any]) -> bool | None:
    """Whether a point lies on a target region (None for a point target: decided by distance)."""
    x, y = point
    if target["type"] == "rect":
        x1, y1, x2, y2 = target["box"]
        return x1 <= x <= x2 and y1 <= y <= y2
    if target["type"] == "mask":
        from .annotations import decoded_mask

        m = decoded_mask(target["rle"]["counts"], tuple(target["rle"]["size"]))
        i, j = int(y), int(x)
        return 0 <= i < m.shape[0] and 0 <= j < m.shape[1] and bool(m[i, j])
    if target["type"] == "polygon":
        from skimage.measure import points_in_poly

        return bool(points_in_poly([[x, y]], np.asarray(target["points"]))[0])
    return None


def target_region(kind: str, item: Any) -> dict:
    if kind == "polygons":
        return {"type": "polygon", "points": item}
    if kind == "masks":
        return {"type": "mask", "rle": item}
    if kind == "boxes":
        return {"type": "rect", "box": item}
    return {"type": "disc", "center": item}


def judge(prediction: Any, geometry: Mapping[str, Any]) -> tuple[bool | None, int, int, int]:
    """One `linebench maps` row: -> (correct, or None when no box / point could be parsed;
    matched, predicted, targets). Box datasets are scored by IoU >= IOU of the first predicted box
    with the annotated box; point, polygon and mask datasets by matching predicted points to the
    annotations (see the module docstring)."""
    size = (int(geometry["canvas"][0]), int(geometry["canvas"][1]))
    ann = geometry.get("annotations") or {}
    if "boxes" in ann:
        boxes = parse_boxes(prediction, size)
        if not boxes:
            return None, 0, 0, 1
        ok = iou(boxes[0], ann["boxes"][0]) >= IOU
        return ok, int(ok), 1, 1
    kind = next((k for k in ("points", "polygons", "masks") if k in ann), None)
    if kind is None:
        raise ValueError("the row's geometry records no annotations (not a `linebench maps` row)")
    regions = [target_region(kind, item) for item in ann[kind]]
    pts = parse_points(prediction, size)
    if not pts:
        return None, 0, 0, len(regions)
    from scipy.optimize import linear_sum_assignment

    limit = POINT_DISTANCE * math.hypot(*size)
    centres = [centre(t) for t in regions]
    cost = np.array([[math.dist(p, c) for c in centres] for p in pts])
    rows, cols = linear_sum_assignment(cost)
    matched = 0
    for r, c in zip(rows, cols):
        inside = _inside(pts[r], regions[c])
        matched += bool(inside) if inside is not None else bool(cost[r, c] <= limit)
    return matched == len(regions) == len(pts), matched, len(pts), len(regions)


def centre(t: Mapping[str, Any]) -> list[float]:
    if t["type"] == "rect":
        x1, y1, x2, y2 = t["box"]
        return [(x1 + x2) / 2, (y1 + y2) / 2]
    if t["type"] == "polygon":
        return np.asarray(t["points"], dtype=float).mean(axis=0).tolist()
    if t["type"] == "mask":
        from .annotations import decoded_mask

        ys, xs = np.nonzero(decoded_mask(t["rle"]["counts"], tuple(t["rle"]["size"])))
        return [float(xs.mean()) + 0.5, float(ys.mean()) + 0.5] if len(xs) else [0.0, 0.0]
    return list(t["center"])


def answer_text(geometry: dict[str, Any]) -> str:
    """A row's annotation as the answer text trained on and shown: `[x1, y1, x2, y2]` px for a box,
    `(x, y), (x, y)` px for points (region centres for polygons and masks). it is read back by
    `parse_boxes` / `parse_points`, as it reads the formats models emit."""
    ann = geometry.get("annotations") or {}
    if "boxes" in ann:
        return "[" + ", ".join(str(round(v)) for v in ann["boxes"][0]) + "]"
    kind = next(k for k in ("points", "polygons", "masks") if k in ann)
    pts = ann[kind] if kind == "points" else [centre(target_region(kind, item)) for item in ann[kind]]
    return ", ".join(f"({round(x)}, {round(y)})" for x, y in pts)
