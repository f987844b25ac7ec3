"""PaliGemma and Gemma 3: SigLIP at a fixed square resolution (aspect not kept), raster order; Gemma 4:
aspect kept, a variable grid of pooled patches, raster order.

- `paligemma-224/448/896` (google/paligemma-3b-pt-{224,448,896}, transformers `SiglipImageProcessor`:
  resize to S x S): 14 px patches -> (S / 14)^2 tokens (256 / 1024 / 4096), placed before the prompt.
- `gemma-3` (google/gemma-3-4b-it, `Gemma3ImageProcessor`: resize to 896 x 896, pan-and-scan off by
  default): 64x64 SigLIP patches average-pooled 4x4 by `Gemma3MultiModalProjector` -> 16x16 = 256
  tokens (mm_tokens_per_image), each covering 56 x 56 model px, between <start_of_image> and
  <end_of_image>. Pan-and-scan crops are not modelled. Parameters (what a checkpoint's processor can
  change): `image_size` (the image processor's square size, = the SigLIP config's image_size) and
  `mm_tokens_per_image` (the processor's image_seq_length, = Gemma3Config.mm_tokens_per_image, a square
  n x n); token (r, c) covers image_size / n model px, which assumes the SigLIP patch grid
  (image_size / patch_size) divides into n x n pooling blocks, as in every released checkpoint
  (896 / 14 = 64 = 4 x 16).
- `gemma-4` (google/gemma-4-*, transformers `Gemma4ImageProcessor` + `Gemma4VisionModel`): the image
  is resized keeping its aspect (`get_aspect_ratio_preserving_size`) to the largest H x W, both
  multiples of pooling_kernel_size * patch_size, with at most max_soft_tokens * pooling_kernel_size^2
  patches of patch_size px (no crop, no pad); `Gemma4VisionPooler` averages each k x k block of patches
  (k = pooling_kernel_size) into one soft token, in raster order over the (H / (k p)) x (W / (k p))
  pooled grid (`kernel_idxs = x // k + (W / (k p)) * (y // k)`), so each token covers k p model px.
  The prompt is `<|image>` + `<|image|>` * tokens + `<image|>` (`Gemma4Processor.replace_image_token`).
  Defaults: patch_size 16, pooling_kernel_size 3, max_soft_tokens 280 (transformers' Gemma4ImageProcessor
  class defaults and Gemma4Processor's image_seq_length; no checkpoint's preprocessor_config.json was
  read here); the processor accepts max_soft_tokens in 70, 140, 280, 560, 1120.
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register


def _square(canvas, side, cell, **kw):
    n = side // cell
    return image_grid(n, n, cell, canvas=canvas, resized=(side, side), **kw)


for _side in (224, 448, 896):

    def _paligemma(canvas, side=_side):
        return [_square(canvas, side, 14)]

    register(
        f"paligemma-{_side}",
        summary=f"PaliGemma {_side}: resize to {_side}x{_side}, SigLIP 14 px -> {_side // 14}x{_side // 14}",
        source="transformers SiglipImageProcessor (google/paligemma-3b-pt-%d)" % _side,
    )(_paligemma)


@register(
    "gemma-3",
    summary="Gemma 3: resize to 896x896, SigLIP 64x64 patches pooled 4x4 -> 16x16",
    source="transformers Gemma3ImageProcessor + Gemma3MultiModalProjector (google/gemma-3-4b-it)",
    image_size=896,
    mm_tokens_per_image=256,
)
def gemma3(canvas, image_size, mm_tokens_per_image):
    n = math.isqrt(max(mm_tokens_per_image, 0))
    if n < 1 or n * n != mm_tokens_per_image or image_size < n or image_size % n:
        raise UsageError(
            f"gemma-3 needs mm_tokens_per_image = n x n with image_size a multiple of n, got image_size={image_size}, "
            f"mm_tokens_per_image={mm_tokens_per_image}"
        )
    return [_square(canvas, image_size, image_size // n, before="<start_of_image>")], "<end_of_image>"


GEMMA4_SOFT_TOKENS = (70, 140, 280, 560, 1120)  # transformers' _SUPPORTED_SOFT_TOKENS


def gemma4_size(height: int, width: int, patch_size: int, max_patches: int, pooling_kernel_size: int) -> tuple[int, int]:
    """transformers.models.gemma4.image_processing_pil_gemma4.get_aspect_ratio_preserving_size,
    reproduced exactly: (target height, target width)."""
    total_px = height * width
    target_px = max_patches * (patch_size * patch_size)
    factor = math.sqrt(target_px / total_px)
    ideal_height = factor * height
    ideal_width = factor * width
    side_mult = pooling_kernel_size * patch_size
    target_height = int(math.floor(ideal_height / side_mult)) * side_mult
    target_width = int(math.floor(ideal_width / side_mult)) * side_mult
    if target_height == 0 and target_width == 0:
        raise UsageError(f"Gemma 4's processor cannot resize a {width}x{height} canvas (it would be 0 x 0 px)")
    max_side_length = (max_patches // (pooling_kernel_size * pooling_kernel_size)) * side_mult
    if target_height == 0:
        target_height = side_mult
        target_width = min(int(math.floor(width / height)) * side_mult, max_side_length)
    elif target_width == 0:
        target_width = side_mult
        target_height = min(int(math.floor(height / width)) * side_mult, max_side_length)
    if target_height * target_width > target_px:
        raise UsageError(f"Gemma 4's processor refuses a {width}x{height} canvas: {target_width}x{target_height} px exceeds {max_patches} patches")
    return target_height, target_width


@register(
    "gemma-4",
    summary="Gemma 4: aspect kept, resized to multiples of 48 px within max_soft_tokens x 9 patches, 16 px patches pooled 3x3",
    source="transformers Gemma4ImageProcessor (get_aspect_ratio_preserving_size) + Gemma4VisionPooler (google/gemma-4-*)",
    max_soft_tokens=280,
    patch_size=16,
    pooling_kernel_size=3,
)
def gemma4(canvas, max_soft_tokens, patch_size, pooling_kernel_size):
    if max_soft_tokens not in GEMMA4_SOFT_TOKENS:
        raise UsageError(f"gemma-4: max_soft_tokens must be one of {', '.join(map(str, GEMMA4_SOFT_TOKENS))} (as the processor), got {max_soft_tokens}")
    if patch_size < 1 or pooling_kernel_size < 1:
        raise UsageError(f"gemma-4: patch_size and pooling_kernel_size must be >= 1, got {patch_size}, {pooling_kernel_size}")
    w, h = canvas
    k = pooling_kernel_size
    height, width = gemma4_size(h, w, patch_size, max_soft_tokens * k * k, k)
    cell = k * patch_size
    grid = image_grid(height // cell, width // cell, cell, canvas=canvas, resized=(width, height), before="<|image>")
    return [grid], "<image|>"
