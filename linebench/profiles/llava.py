"""LLaVA-1.5 (CLIP ViT-L/14-336): 24x24 = 576 tokens, one per 14 px patch (the CLS token is dropped).

`llava-1.5` follows the transformers processor of llava-hf/llava-1.5-7b-hf (`CLIPImageProcessor`,
preprocessor_config.json: size {"shortest_edge": 336}, crop_size 336x336): resize so the short side is
336 px (long side `int(336 * long / short)`, transformers.image_transforms.get_resize_output_image_size),
then centre-crop 336x336 (top = (H - 336) // 2, left = (W - 336) // 2; image_transforms.center_crop).
On a non-square canvas the cropped-away sides are seen by no token.

`llava-1.5-pad` follows the original LLaVA code (llava/mm_utils.py `expand2square`, image_aspect_ratio
"pad"): pad to a square of side max(w, h) with the image at ((S - w) // 2, (S - h) // 2), then the same
processor (resize to 336, crop is then a no-op). Every canvas pixel is seen; padding tokens see nothing.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import image_grid, register

SIDE, PATCH = 336, 14


def _check(side: int, patch: int) -> None:
    if not (1 <= patch <= side <= 4096) or side % patch:
        raise UsageError(f"side must be a multiple of patch within 1..4096, got side={side} patch={patch}")


@register(
    "llava-1.5",
    summary="LLaVA-1.5 (HF processor): short side -> 336, centre crop 336, CLIP 14 px -> 24x24",
    source="transformers CLIPImageProcessor (llava-hf/llava-1.5-7b-hf), LlavaModel.get_image_features",
    side=SIDE,
    patch=PATCH,
)
def llava_15(canvas, side=SIDE, patch=PATCH):
    """`side`/`patch`: the processor's shortest_edge (= crop size) and the vision tower's patch, for
    LLaVA-architecture models other than the 336 px checkpoints (e.g. linebench's tiny default)."""
    _check(side, patch)
    w, h = canvas
    short, long = min(w, h), max(w, h)
    new_long = int(side * long / short)
    rw, rh = (side, new_long) if w <= h else (new_long, side)
    left, top = (rw - side) // 2, (rh - side) // 2
    n = side // patch
    return [image_grid(n, n, patch, canvas=canvas, resized=(rw, rh), start=(left, top))]


@register(
    "llava-1.5-pad",
    summary="LLaVA-1.5 (original repo, image_aspect_ratio=pad): pad to square, resize 336, 24x24",
    source="LLaVA llava/mm_utils.py expand2square + CLIPImageProcessor",
    side=SIDE,
    patch=PATCH,
)
def llava_15_pad(canvas, side=SIDE, patch=PATCH):
    _check(side, patch)
    w, h = canvas
    s = max(w, h)
    k = side / s  # model px per canvas px
    n = side // patch
    return [image_grid(n, n, patch, canvas=canvas, resized=(w * k, h * k), offset=((s - w) // 2 * k, (s - h) // 2 * k))]
