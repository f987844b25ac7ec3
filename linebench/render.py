"""Deterministic rasterisation (OpenCV, anti-aliased) and PNG encoding.

Tasks describe a picture as a list of primitives; this module is the only place that turns
them into pixels. OpenCV's drawing is integer arithmetic on a 1/16 px lattice (`shift=4`; text
strokes on 1/65536 px), so the same primitives give the same pixels on every machine. Text is
drawn as polylines of linebench's own font (`font`), never with OpenCV's text functions, whose
metrics and glyphs change between OpenCV versions; the pixels of every primitive here were
measured identical with OpenCV 4.12, 4.14, 5.0 and 5.1 (docs/releases.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence, Union

import cv2
import numpy as np

from . import font
from .font import text_size
from .geometry import SUBPIXEL

# Parallelism is ours (one process per core); OpenCV worker threads only contend, and a
# forked child inheriting its thread pool aborts at exit ("terminate called ...").
cv2.setNumThreads(0)

SHIFT = 4  # log2(SUBPIXEL)
assert 1 << SHIFT == SUBPIXEL

# No PNG row filter + zlib level 3: for flat synthetic drawings this is both the smallest and the
# fastest setting we measured (see docs/benchmarks.md); changing it changes every image's bytes.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]

RGB = tuple[int, int, int]

# Named colours, far apart in hue and all dark enough on white; questions refer to them by name.
PALETTE: dict[str, RGB] = {
    "red": (220, 30, 30),
    "blue": (30, 80, 220),
    "green": (20, 140, 40),
    "orange": (240, 130, 0),
    "purple": (140, 50, 190),
    "brown": (130, 80, 30),
    "magenta": (220, 40, 180),
    "teal": (0, 150, 150),
}


@dataclass(frozen=True)
class Polyline:
    points: np.ndarray  # [M, 2] canvas px, on the 1/16 px lattice
    colour: RGB
    thickness_px: int


@dataclass(frozen=True)
class Disc:
    center: tuple[float, float]
    radius_px: float
    colour: RGB


@dataclass(frozen=True)
class Text:
    text: str
    origin: tuple[int, int]  # bottom-left of the text baseline, integer px (OpenCV convention)
    scale: float
    colour: RGB
    thickness_px: int


@dataclass(frozen=True)
class Polygon:
    """A filled simple polygon (may be concave), e.g. a marker shape."""

    points: np.ndarray  # [M, 2] canvas px, on the 1/16 px lattice; closed implicitly
    colour: RGB


Primitive = Union[Polyline, Disc, Text, Polygon]


@functools.lru_cache(maxsize=4096)
def _ink_extent(text: str, scale: float) -> tuple[float, float, float, float] | None:
    """The box of the stroke centre lines of `text` drawn at origin (0, 0), in px; None for no ink."""
    strokes = font.text_strokes(text, (0, 0), scale)
    if not strokes:
        return None
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    unit = float(1 << font.FIXED_SHIFT)  # exact: the division only moves the binary point
    return (int(lo[0]) / unit, int(lo[1]) / unit, int(hi[0]) / unit, int(hi[1]) / unit)


def text_pad(thickness_px: int) -> float:
    """How far beyond its strokes' centre lines text inks any pixel, counting each inked pixel's
    whole square: half the stroke, OpenCV's anti-aliasing ring and pixel rounding. Measured at most
    thickness/2 + 2.6 px on every glyph at scales 0.3-1.3 and thicknesses 1-4 (tests/test_render.py)."""
    return thickness_px / 2.0 + 3.0


def text_box(text: str, origin: tuple[int, int], scale: float, thickness_px: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) that `Text(text, origin, scale, _, thickness_px)` draws into: the
    strokes' centre lines plus `text_pad` on every side, so it holds every inked pixel. Text
    without ink (spaces) gets its metric box."""
    pad = text_pad(thickness_px)
    x, y = origin[0] + 0.5, origin[1] + 0.5  # OpenCV pixel centres are integers, ours half-integers
    ink = _ink_extent(text, scale)
    if ink is None:
        w, h, depth = text_size(text, scale, thickness_px)
        return (x - pad, y - h - pad, x + w + pad, y + depth + pad)
    return (x + ink[0] - pad, y + ink[1] - pad, x + ink[2] + pad, y + ink[3] + pad)


def _bgr(c: RGB) -> tuple[int, int, int]:
    return (int(c[2]), int(c[1]), int(c[0]))


def rasterise(
    canvas: tuple[int, int], primitives: Sequence[Primitive], background: RGB = (255, 255, 255)
) -> np.ndarray:
    """Draw `primitives` in order on a `canvas` = (width, height) -> uint8 [H, W, 3] in BGR order
    (OpenCV's own; `encode_png` expects it, `decode_png` gives RGB back)."""
    w, h = canvas
    if len(set(background)) == 1:
        img = np.full((h, w, 3), background[0], dtype=np.uint8)
    else:
        img = np.empty((h, w, 3), dtype=np.uint8)
        for ch, v in enumerate(_bgr(background)):  # per channel: assigning a tuple is ~100x slower
            img[..., ch] = v
    for p in primitives:
        if isinstance(p, Polyline):
            # +0.5: geometry puts pixel centres at half-integers, OpenCV at integers.
            pts = np.round((np.asarray(p.points) - 0.5) * SUBPIXEL).astype(np.int32)
            cv2.polylines(img, [pts], False, _bgr(p.colour), int(p.thickness_px), cv2.LINE_AA, SHIFT)
        elif isinstance(p, Disc):
            c = (int(round((p.center[0] - 0.5) * SUBPIXEL)), int(round((p.center[1] - 0.5) * SUBPIXEL)))
            r = int(round(p.radius_px * SUBPIXEL))
            cv2.circle(img, c, r, _bgr(p.colour), -1, cv2.LINE_AA, SHIFT)
        elif isinstance(p, Polygon):
            # Same +0.5 pixel-centre convention as Polyline. OpenCV's anti-aliased fill inks visibly
            # up to ~2 px beyond the bounding box (pixel rounding included; faint traces of a few
            # /255 up to ~3 px near sharp vertices): tasks keep clearance around filled shapes.
            pts = np.round((np.asarray(p.points) - 0.5) * SUBPIXEL).astype(np.int32)
            cv2.fillPoly(img, [pts], _bgr(p.colour), cv2.LINE_AA, SHIFT)
        elif isinstance(p, Text):
            strokes = font.text_strokes(p.text, p.origin, p.scale)
            if strokes:
                cv2.polylines(img, strokes, False, _bgr(p.colour), int(p.thickness_px), cv2.LINE_AA, font.FIXED_SHIFT)
        else:  # pragma: no cover - programming error in a task
            raise TypeError(f"unknown primitive {type(p).__name__}")
    return img


def renderer() -> str:
    """What draws the pixels (recorded in manifests: `verify` tells a renderer's difference from damage)."""
    return f"OpenCV {cv2.__version__}"


def pixel_difference(png_a: bytes, png_b: bytes) -> tuple[int, int] | None:
    """(pixels that differ, largest difference in any channel, 0-255) between two PNGs of the same
    size; None if either is not a decodable picture or the sizes differ."""
    try:
        a, b = decode_png(png_a), decode_png(png_b)
    except (cv2.error, TypeError, ValueError):
        return None
    if a.shape != b.shape:
        return None
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    return int((diff > 0).sum()), int(diff.max())


def encode_png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [H, W, 3] RGB."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable picture")
    return img[..., ::-1].copy()
