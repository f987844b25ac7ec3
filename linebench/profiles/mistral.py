"""Mistral 3 (`mistral-3`: Mistral Small 3.1 / 3.2, `Mistral3ForConditionalGeneration`): the Pixtral
vision tower at the image's own resolution, 14 px patches merged 2x2, one grid in raster order with a
row-break text token after each row.

Follows transformers `PixtralImageProcessorPil` / `PixtralImageProcessor` (models/pixtral/
image_processing_pil_pixtral.py, `get_resize_output_image_size`), `PixtralProcessor` (processing_pixtral.py:
`_process_images` passes patch_size * spatial_merge_size to the image processor, `replace_image_token`) and
`Mistral3PatchMerger` (models/mistral3/modeling_mistral3.py):

1. with P = patch_size * spatial_merge_size (the processor's; 28 px), an image larger than
   longest_edge x longest_edge is scaled down by ratio = max(h / L, w / L), each side floored
   (int(floor(side / ratio))); a smaller one keeps its size (never upscaled);
2. each side is then rounded UP to a multiple of P (`_num_image_tokens`: (side - 1) // P + 1 tokens)
   and the image resized (stretched) to that size; `do_pad` only pads a batch to its largest image,
   and the vision tower drops the padding (`image_sizes`);
3. the Pixtral tower embeds 14 px patches in raster order per image; `Mistral3PatchMerger` unfolds each
   2x2 block of patches (`unfold(kernel_size=2, stride=2)`) into one token, in raster order over the
   (h / 28) x (w / 28) grid.

Sequence (`replace_image_token`): per token row, `cols` x `[IMG]` then `[IMG_BREAK]`, the last row's
`[IMG_BREAK]` replaced by `[IMG_END]`. Only `[IMG]` (config image_token_id) receives image features
(`Mistral3Model.get_placeholder_mask`); `[IMG_BREAK]` and `[IMG_END]` are ordinary tokens of the text, so
they are not placeholders here (newline=False): the i-th map value belongs to the i-th `[IMG]` of
input_ids, and an image's tokens lie in one run per row (`before` / `after` do not list the breaks).

Defaults: mistralai/Mistral-Small-3.1-24B-Instruct-2503 (also 3.2-24B-Instruct-2506):
preprocessor_config.json size {longest_edge: 1540}, processor_config.json patch_size 14,
spatial_merge_size 2 (vision_config image_size 1540, patch_size 14; config spatial_merge_size 2). The
original Pixtral-12B (mistral-community/pixtral-12b, a `llava` model with the same processor) is
`mistral-3:longest_edge=1024:patch_size=16:spatial_merge_size=1`.
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register


def resize_output_size(height: int, width: int, longest_edge: int, patch: int) -> tuple[int, int]:
    """pixtral `get_resize_output_image_size(size=(L, L), patch_size=(P, P))`, reproduced exactly:
    -> (height, width), multiples of P."""
    ratio = max(height / longest_edge, width / longest_edge)
    if ratio > 1:
        height = int(math.floor(height / ratio))
        width = int(math.floor(width / ratio))
    return ((height - 1) // patch + 1) * patch, ((width - 1) // patch + 1) * patch


@register(
    "mistral-3",
    summary="Mistral 3 (Pixtral): longest edge scaled down to <= 1540, sides rounded up to multiples of 28, 14 px patches merged 2x2",
    source="transformers PixtralImageProcessorPil (get_resize_output_image_size) + PixtralProcessor + Mistral3PatchMerger "
    "(mistralai/Mistral-Small-3.1-24B-Instruct-2503)",
    longest_edge=1540,
    patch_size=14,
    spatial_merge_size=2,
)
def mistral3(canvas, longest_edge, patch_size, spatial_merge_size):
    if min(longest_edge, patch_size, spatial_merge_size) < 1:
        raise UsageError("longest_edge, patch_size and spatial_merge_size must be >= 1")
    w, h = canvas
    cell = patch_size * spatial_merge_size
    hr, wr = resize_output_size(h, w, longest_edge, cell)
    if hr < cell or wr < cell:  # a side floored to 0 px: PIL cannot resize to it, the real processor fails too
        raise UsageError(f"canvas {w}x{h} is too elongated for this processor (a side scales to 0 px)")
    return [image_grid(hr // cell, wr // cell, cell, canvas=canvas, resized=(wr, hr))]
