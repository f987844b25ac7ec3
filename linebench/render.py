"""Deterministic rasterisation (OpenCV, anti-aliased) and PNG encoding.

Tasks describe a picture as a list of primitives; this module is the only place that turns
them into pixels. OpenCV's drawing is integer arithmetic on a 1/16 px lattice (`shift=4`), so the
same primitives give the same bytes on every machine with the same OpenCV build.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence, Union

import cv2
import numpy as np

from .geometry import SUBPIXEL

# Parallelism is ours (one process per core); OpenCV worker threads only contend, and a
# forked child inheriting its thread pool aborts at exit ("terminate called ...").
cv2.setNumThreads(0)

SHIFT = 4  # log2(SUBPIXEL)
assert 1 << SHIFT == SUBPIXEL

FONT = cv2.FONT_HERSHEY_SIMPLEX
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


def text_box(text: str, origin: tuple[int, int], scale: float, thickness_px: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) that `Text(text, origin, scale, _, thickness_px)` draws into.

    OpenCV's metrics cover the glyphs' stroke centres; half the stroke (plus the anti-aliasing
    pixel) is added on every side so the box contains every inked pixel.
    """
    w, h, baseline = text_size(text, scale, thickness_px)
    pad = thickness_px / 2.0 + 1.0
    x, y = origin[0] + 0.5, origin[1] + 0.5  # OpenCV pixel centres are integers, ours half-integers
    return (x - pad, y - h - pad, x + w + pad, y + baseline + pad)


@functools.lru_cache(maxsize=4096)
def text_size(text: str, scale: float, thickness_px: int) -> tuple[int, int, int]:
    """(width, height above baseline, depth below baseline) in px."""
    (w, h), baseline = cv2.getTextSize(text, FONT, scale, thickness_px)
    return w, h, baseline


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
            cv2.putText(img, p.text, p.origin, FONT, p.scale, _bgr(p.colour), int(p.thickness_px), cv2.LINE_AA)
        else:  # pragma: no cover - programming error in a task
            raise TypeError(f"unknown primitive {type(p).__name__}")
    return img


def encode_png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [H, W, 3] RGB."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return img[..., ::-1].copy()
