"""Pictures of maps: a sample's image with a profile's map over it, one panel per token grid.

The colour of a token is its probability on a log scale from the floor value to the largest value,
shared by all the panels of a map, so the three levels of a map (target, neighbour, floor) all show; token borders are drawn where tokens are
at least 6 output px wide; canvas area outside the image (a model's padding) is grey.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import UsageError
from .maps import AttentionMap

PANEL_H = 320  # px, height of a panel's picture
BAR_H = 22  # px, height of a panel's caption
GAP = 8  # px between panels
PADDING = (128, 128, 128)  # BGR, canvas outside the image


def decode(png: bytes) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:  # a damaged PNG (a flipped byte): OpenCV gives nothing, or an assertion
        raise UsageError("the row's image is not a readable PNG (the shard is damaged): run `linebench verify` on the folder")
    return image


def _panel(image: np.ndarray, parts: list, lo: float, hi: float, caption: str) -> np.ndarray:
    """One picture of the canvas region that `parts` [(grid, probabilities)] cover (disjoint grids, e.g.
    tiles, share a panel); canvas outside the image is grey, tokens coloured by log probability."""
    x0 = min(g.x_edges[0] for g, _ in parts)
    x1 = max(g.x_edges[-1] for g, _ in parts)
    y0 = min(g.y_edges[0] for g, _ in parts)
    y1 = max(g.y_edges[-1] for g, _ in parts)
    scale = min(PANEL_H / (y1 - y0), 3 * PANEL_H / (x1 - x0))
    w, h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    # output px (u, v) shows canvas point (x0 + u / scale, y0 + v / scale)
    m = np.array([[1 / scale, 0, x0], [0, 1 / scale, y0]], dtype=np.float64)
    pic = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=PADDING)
    xs, ys = x0 + (np.arange(w) + 0.5) / scale, y0 + (np.arange(h) + 0.5) / scale
    norm = np.full((h, w), np.nan)
    for g, p in parts:
        inx = (xs >= g.x_edges[0]) & (xs < g.x_edges[-1])
        iny = (ys >= g.y_edges[0]) & (ys < g.y_edges[-1])
        cols = np.searchsorted(g.x_edges, xs[inx], side="right") - 1
        rows = np.searchsorted(g.y_edges, ys[iny], side="right") - 1
        level = (np.log(np.maximum(p, 1e-30)) - lo) / (hi - lo) if hi > lo else np.ones_like(p)
        norm[np.ix_(iny, inx)] = np.clip(level, 0, 1)[rows][:, cols]
    seen = ~np.isnan(norm)
    norm = np.nan_to_num(norm)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    alpha = np.where(seen, 0.15 + 0.6 * norm, 0.0)[..., None]  # floor faint, targets strong, unseen clear
    out = (pic * (1 - alpha) + heat * alpha).astype(np.uint8)
    lines = out.copy()
    for g, _ in parts:
        if (g.x_edges[-1] - g.x_edges[0]) / g.cols * scale < 6 or (g.y_edges[-1] - g.y_edges[0]) / g.rows * scale < 6:
            continue
        top, bottom = round((g.y_edges[0] - y0) * scale), round((g.y_edges[-1] - y0) * scale)
        left, right = round((g.x_edges[0] - x0) * scale), round((g.x_edges[-1] - x0) * scale)
        for x in g.x_edges[1:-1]:
            u = round((x - x0) * scale)
            cv2.line(lines, (u, top), (u, bottom), (255, 255, 255), 1)
        for y in g.y_edges[1:-1]:
            v = round((y - y0) * scale)
            cv2.line(lines, (left, v), (right, v), (255, 255, 255), 1)
    out = cv2.addWeighted(out, 0.8, lines, 0.2, 0)
    return _caption(out, caption)


def _caption(pic: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((BAR_H, max(pic.shape[1], 8 * len(text) + 8), 3), 255, np.uint8)
    cv2.putText(bar, text, (4, BAR_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    body = np.full((pic.shape[0], bar.shape[1], 3), 255, np.uint8)
    body[:, : pic.shape[1]] = pic
    return np.vstack([bar, body])


def _row(panels: list[np.ndarray]) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    parts = []
    for p in panels:
        parts += [np.vstack([p, np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)]), np.full((h, GAP, 3), 255, np.uint8)]
    return np.hstack(parts[:-1])


def map_panels(image: np.ndarray, amap: AttentionMap) -> list[np.ndarray]:
    """`image` (BGR, the canvas) with `amap` over it: one captioned panel per grid in token order; a run
    of tiles shares one panel."""
    logs = np.log(np.maximum(amap.values.astype(np.float64), 1e-30))
    # the colour scale starts at the floor (the most common value), so the floor looks the same for
    # every model; a target token holding only a sliver of target (below the floor) shows as floor
    lo, hi = float(np.median(logs)), float(logs.max())
    lay = amap.layout
    groups: list[list] = []
    for g, p in zip(lay.grids, amap.grids()):
        tile = g.label.startswith("tile")
        if tile and groups and groups[-1][0][0].label.startswith("tile"):
            groups[-1].append((g, p.astype(np.float64)))
        else:
            groups.append([(g, p.astype(np.float64))])
    panels = []
    for i, parts in enumerate(groups):
        g = parts[0][0]
        if len(parts) > 1:
            what = f" [{len(parts)} tiles] {g.rows}x{g.cols} each"
        else:
            what = (f" [{g.label}]" if g.label else (f" [{i}]" if len(groups) > 1 else "")) + f" {g.rows}x{g.cols}"
        panels.append(_panel(image, parts, lo, hi, lay.profile + what))
    return panels


def sheet(panels: list[np.ndarray], text: str, per_row: int = 4) -> np.ndarray:
    """Panels in rows of `per_row` on white, under `text` (wrapped to the sheet's width)."""
    rows = [_row(panels[i : i + per_row]) for i in range(0, len(panels), per_row)]
    w = max(r.shape[1] for r in rows)
    body = []
    for r in rows:
        body += [np.hstack([r, np.full((r.shape[0], w - r.shape[1], 3), 255, np.uint8)]), np.full((GAP, w, 3), 255, np.uint8)]
    pic = np.vstack(body[:-1])
    chars = max(8, w // 8)
    text = text.encode("ascii", "replace").decode()
    for start in reversed(range(0, len(text), chars)):
        pic = _caption(pic, text[start : start + chars])
    return pic
