"""PaliGemma and Gemma 3: SigLIP at a fixed square resolution (aspect not kept), raster order.

- `paligemma-224/448/896` (google/paligemma-3b-pt-{224,448,896}, transformers `SiglipImageProcessor`:
  resize to S x S): 14 px patches -> (S / 14)^2 tokens (256 / 1024 / 4096), placed before the prompt.
- `gemma-3` (google/gemma-3-4b-it, `Gemma3ImageProcessor`: resize to 896 x 896, pan-and-scan off by
  default): 64x64 SigLIP patches average-pooled 4x4 by `Gemma3MultiModalProjector` -> 16x16 = 256
  tokens (mm_tokens_per_image), each covering 56 x 56 model px, between <start_of_image> and
  <end_of_image>. Pan-and-scan crops are not modelled.
"""

from __future__ import annotations

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
)
def gemma3(canvas):
    return [_square(canvas, 896, 56, before="<start_of_image>")], "<end_of_image>"
