"""GLM-4.1V (`glm-4.1v`): Qwen2-VL-style dynamic resolution, 14 px patches merged 2x2, one grid in raster
order, with GLM's own smart_resize.

Follows transformers `Glm4vImageProcessorPil` / `Glm4vImageProcessor` (models/glm4v/
image_processing_pil_glm4v.py, `smart_resize`, called with num_frames = temporal_factor =
temporal_patch_size = 2 for an image) and `Glm4vProcessor.replace_image_token` (processing_glm4v.py).
It differs from Qwen's smart_resize in two ways:

1. a side shorter than factor = patch_size * merge_size = 28 px first scales both sides by
   max(28 / h, 28 / w) (int() of each product) before the rounding below;
2. the pixel budget counts the temporal patch: the bounds compare t_bar * h_bar * w_bar (t_bar = 2 for
   an image) with min_pixels / max_pixels, and beta = sqrt(2 * h * w / max_pixels) (or
   sqrt(min_pixels / (2 * h * w))), so an image gets at most max_pixels / 2 px.

h_bar, w_bar are round(side / 28) * 28, floored to multiples of 28 when over the budget (at least 28)
and ceiled when under. The image is resized (stretched) to w_bar x h_bar. `patchify` orders the
14 px patches as (h_bar / 28, w_bar / 28, 2, 2): every 2x2 block of patches is consecutive, and
`Glm4vVisionModel` merges each block into one token with its `downsample` Conv2d (kernel = stride = 2),
so the tokens follow raster order over the merged grid (h_bar / 28 rows, w_bar / 28 columns), one
`<|image|>` each (prod(image_grid_thw) / merge_size**2 of them) between `<|begin_of_image|>` and
`<|end_of_image|>` (GLM-4.1V's chat template).

Defaults: zai-org/GLM-4.1V-9B-Thinking's preprocessor_config.json, size {shortest_edge: 12544,
longest_edge: 9633792} (= 112 * 112 and 14 * 14 * 2 * 2 * 2 * 6144, smart_resize's own defaults),
patch_size 14, merge_size 2, temporal_patch_size 2. (The image processor class's defaults are
{112 * 112, 28 * 28 * 15000}: pass max_pixels=11760000 for code that builds it without the checkpoint
config.)
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register

PATCH, MERGE, TEMPORAL = 14, 2, 2


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int, temporal: int = TEMPORAL) -> tuple[int, int]:
    """transformers.models.glm4v.image_processing_pil_glm4v.smart_resize for an image (num_frames =
    temporal_factor = `temporal`), reproduced exactly; -> (h_bar, w_bar)."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise UsageError(f"GLM-4.1V's processor refuses aspect ratios over 200, got {width}x{height} (after its upscaling)")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(temporal / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((temporal * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (temporal * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@register(
    "glm-4.1v",
    summary="GLM-4.1V: GLM smart_resize (2 x h x w within min/max pixels) to multiples of 28, 14 px patches merged 2x2",
    source="transformers Glm4vImageProcessorPil (smart_resize, patchify) + Glm4vVisionModel.downsample + Glm4vProcessor (zai-org/GLM-4.1V-9B-Thinking)",
    min_pixels=12544,
    max_pixels=9633792,
)
def glm41v(canvas, min_pixels, max_pixels):
    w, h = canvas
    if min_pixels < 1 or max_pixels < min_pixels:
        raise UsageError(f"need 1 <= min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    factor = PATCH * MERGE
    hb, wb = smart_resize(h, w, factor, min_pixels, max_pixels)
    grid = image_grid(hb // factor, wb // factor, factor, canvas=canvas, resized=(wb, hb), before="<|begin_of_image|>")
    return [grid], "<|end_of_image|>"
