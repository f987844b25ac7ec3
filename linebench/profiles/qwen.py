"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL: dynamic resolution, 2x2 patch merging, one grid in raster order.

Follows transformers `Qwen2VLImageProcessor` (`smart_resize`, models/qwen2_vl/image_processing_*qwen2_vl.py):
the image is resized (aspect not exactly kept) to h_bar x w_bar, both multiples of
factor = patch_size * merge_size: round(side / factor) * factor, scaled down when h_bar * w_bar >
max_pixels (floor) and up when < min_pixels (ceil). The vision tower's merger turns each 2x2 block of
patches into one token; tokens follow raster order over the merged grid (h_bar / factor rows,
w_bar / factor columns) between <|vision_start|> and <|vision_end|>. The number of tokens is
prod(image_grid_thw) / merge_size**2.

Defaults are the checkpoints' preprocessor_config.json values:
- Qwen/Qwen2-VL-7B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct: patch 14, merge 2, min_pixels 3136,
  max_pixels 12845056 (the transformers class default max is 1003520 = 28*28*1280; pass
  max_pixels=1003520 to match code that builds the processor without the checkpoint config);
- Qwen/Qwen3-VL-8B-Instruct: patch 16, merge 2, size {shortest_edge: 65536, longest_edge: 16777216}.
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize, reproduced exactly."""
    if max(height, width) / min(height, width) > 200:
        raise UsageError(f"Qwen processors refuse aspect ratios over 200, got {width}x{height}")
    return fit_pixels(height, width, round(height / factor) * factor, round(width / factor) * factor, factor, min_pixels, max_pixels)


def fit_pixels(height: int, width: int, h_bar: int, w_bar: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """smart_resize's last step (Qwen's and LFM2-VL's): a rounded size (h_bar, w_bar) over max_pixels or
    under min_pixels is rescaled from the original (height, width), keeping the aspect ratio, to
    multiples of `factor` within the limits."""
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _qwen(canvas, patch, merge, min_pixels, max_pixels):
    w, h = canvas
    factor = patch * merge
    if min_pixels < 1 or max_pixels < min_pixels:
        raise UsageError(f"need 1 <= min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    hb, wb = smart_resize(h, w, factor, min_pixels, max_pixels)
    grid = image_grid(hb // factor, wb // factor, factor, canvas=canvas, resized=(wb, hb), before="<|vision_start|>")
    return [grid], "<|vision_end|>"


# name -> (model, checkpoint, patch px, merge, min_pixels, max_pixels), from preprocessor_config.json
CHECKPOINTS = {
    "qwen2-vl": ("Qwen2-VL", "Qwen/Qwen2-VL-7B-Instruct", 14, 2, 3136, 12845056),
    "qwen2.5-vl": ("Qwen2.5-VL", "Qwen/Qwen2.5-VL-7B-Instruct", 14, 2, 3136, 12845056),
    "qwen3-vl": ("Qwen3-VL", "Qwen/Qwen3-VL-8B-Instruct", 16, 2, 65536, 16777216),
}

for _name, (_label, _ckpt, _patch, _merge, _min, _max) in CHECKPOINTS.items():

    def _build(canvas, min_pixels, max_pixels, patch=_patch, merge=_merge):
        return _qwen(canvas, patch, merge, min_pixels, max_pixels)

    register(
        _name,
        summary=f"{_label}: smart_resize to multiples of {_patch * _merge}, {_patch} px patches merged {_merge}x{_merge}",
        source=f"transformers Qwen2VLImageProcessor (smart_resize) + the vision tower's 2x2 PatchMerger ({_ckpt})",
        min_pixels=_min,
        max_pixels=_max,
    )(_build)
