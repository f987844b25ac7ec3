"""Molmo and Molmo2: a low-res view of the whole image, then overlapping high-res crops stitched into one
grid; ViT patches of 14 px pooled 2x2, one token per pooled cell, each view in raster order.

Both views are tokenised the same way. The image is tiled into crops of S px (S / 14 patches per side)
that overlap by `overlap_margins` = (4, 4) patches: the tiling (th, tw) = `select_tiling(h - 8 * 14,
w - 8 * 14, window, max_crops)` with window = (S / 14 - 8) * 14 px, the tiling that fits the image with the
least upscaling (or, when every tiling downscales, the least downscaling), ties to fewer crops and then
fewer rows. The image is resized to the stitched canvas of (th * window + 112) x (tw * window + 112) px;
each crop drops its 4-patch margins on the sides it shares with a neighbour, so the kept patches are
exactly the canvas's patch grid, and the tokens are that grid pooled 2x2, in raster order over the whole
canvas (not crop by crop). The low-res view is the image resized to S x S, pooled the same way; it comes
first.

`molmo2` follows transformers `Molmo2ImageProcessor` (models/molmo2/image_processing_molmo2.py:
`select_tiling`, `compute_crop_geometry`, `_build_overlapping_crops`, `arange_for_pooling`) and
`Molmo2Processor.replace_image_token` (processing_molmo2.py), with the values in the preprocessor_config.json
of allenai/Molmo2-8B and allenai/Molmo2-4B: size 378x378, patch 14, pooling [2, 2], overlap_margins [4, 4],
max_crops 8 (the profile's `crop` and `max_crops`: the image processor's `size` and `max_crops`). Both
resizes stretch (the aspect ratio is not kept). 378 px is 27 patches, an odd number, so
`arange_for_pooling` pads the last pooled row and column with an empty slot (padding goes after: pad // 2
before): the last token of each row/column sees one 14 px patch; the edges here stop at the image.
Low-res: 14 x 14 = 196 tokens. High-res: ceil((19 th + 8) / 2) x ceil((19 tw + 8) / 2) tokens.
Sequence (processor_config.json of those checkpoints: image_use_col_tokens true,
use_single_crop_col_tokens false, use_single_crop_start_token true):
`<low_res_im_start>` + 196 x `<im_patch>` + `<im_end>` + `<im_start>` + per high-res row (cols x
`<im_patch>` + `<im_col>`) + `<im_end>`. Only `<im_patch>` (config image_patch_id) receives image features
(`Molmo2Model.get_placeholder_mask`); `<im_col>` is an ordinary text token, so it is not a placeholder here
(newline=False) and the i-th map value belongs to the i-th `<im_patch>` of input_ids. The `before` texts
and `after` give the tokens around each grid; the `<im_col>` after each high-res row is not in them.

`molmo` follows the original Molmo remote code of allenai/Molmo-7B-D-0924 (image_preprocessing_molmo.py:
`select_tiling`, `resize_and_pad`, `MolmoImageProcessor.image_to_patches_and_tokens` and
`build_image_input_idx`), preprocessor_config.json: base_image_input_size 336x336, image_patch_size 14,
image_token_length 12x12, overlap_margins [4, 4], max_crops 12. Same tiling with a 224 px window, but
`resize_and_pad` keeps the aspect ratio: scale = min(H / h, W / w) (float32), new size int(h * scale) x
int(w * scale), centred in the target with black padding (top = (H - new_h) // 2), for both the stitched
canvas and the 336 x 336 low-res view. 24 patches per crop pool into 12 x 12 per crop with nothing
padded; the kept pooled cells of all crops (crop margins of 2 pooled cells dropped) are reordered to
raster order over the canvas (`patch_ordering` transpose, `build_image_input_idx`). Low-res 12 x 12 =
144 tokens; high-res (8 th + 4) x (8 tw + 4). Sequence: `<im_start>` + per low-res row (12 x
`<im_patch>` + `<im_col>`) + `<im_end>` + `<im_start>` + per high-res row (cols x `<im_patch>` +
`<im_col>`) + `<im_end>`; image features are added at the `<im_patch>` positions only.
`molmo` is NOT checked against the real MolmoImageProcessor (remote code that needs tensorflow or
torchvision): its tests check its counts against transformers' Molmo2 tiling/grid helpers run with
Molmo's values and its token positions by feeding a letterboxed canvas to the Molmo2 crop/pooling code,
which keeps and orders the patches the same way when the margins and the crop's patch count are even.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .base import TokenGrid, register

PATCH = 14
MARGINS = (4, 4)  # overlap_margins (left/top, right/bottom), in patches
POOL = 2  # pooling_size [2, 2] / image_token_length = crop_patches / 2


def select_tiling(height: int, width: int, window: int, max_crops: int) -> tuple[int, int]:
    """(rows, cols) of crops: transformers molmo2 `select_tiling` (= the original Molmo's), float32."""
    tilings = [(i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops]
    tilings.sort(key=lambda t: (t[0] * t[1], t[0]))
    res = np.array(tilings, dtype=np.int32) * window
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (res.astype(np.float32) / np.array([height, width], dtype=np.float32)).min(axis=-1)
    if np.all(scale < 1):
        return tilings[int(np.argmax(scale))]  # forced to downscale: downscale the least
    return tilings[int(np.argmin(np.where(scale < 1.0, np.float32(10e9), scale)))]  # least upscaling


def crop_canvas(canvas: tuple[int, int], crop: int, max_crops: int) -> tuple[int, int, int, int]:
    """(tiling_h, tiling_w, canvas_h, canvas_w): molmo2 `compute_crop_geometry` (same in Molmo)."""
    w, h = canvas
    margin = sum(MARGINS) * PATCH
    window = (crop // PATCH - sum(MARGINS)) * PATCH
    th, tw = select_tiling(h - margin, w - margin, window, max_crops)
    return th, tw, th * window + margin, tw * window + margin


def _pooled_edges(n_patches: int) -> np.ndarray:
    """Model-px edges of the pooled cells over `n_patches` patches, padded as `arange_for_pooling` pads
    (pad // 2 empty slots before, the rest after; an empty slot adds nothing to its token)."""
    pad = -n_patches % POOL
    k = np.arange(0, n_patches + pad + 1, POOL) - pad // 2
    return np.clip(k, 0, n_patches).astype(np.float64) * PATCH


def _pooled_grid(canvas, size, resized, offset=(0.0, 0.0), **kw) -> TokenGrid:
    """Tokens of a model image of `size` = (W, H) px (multiples of 14) pooled 2x2; the canvas was resized
    to `resized` and pasted at `offset` in it."""
    w, h = canvas
    xs = (_pooled_edges(size[0] // PATCH) - offset[0]) * (w / resized[0])
    ys = (_pooled_edges(size[1] // PATCH) - offset[1]) * (h / resized[1])
    return TokenGrid(len(ys) - 1, len(xs) - 1, xs, ys, **kw)


MAX_CROPS = 256  # Molmo checkpoints use 8 or 12; the tiling search is quadratic in it


def _max_crops(max_crops: int) -> int:
    if not 1 <= max_crops <= MAX_CROPS:
        raise UsageError(f"max_crops must be within 1..{MAX_CROPS}, got {max_crops}")
    return max_crops


def _crop(crop: int) -> int:
    """A crop of S px: whole 14 px patches, more of them than the two overlap margins take."""
    if crop % PATCH or crop // PATCH <= sum(MARGINS):
        raise UsageError(f"crop must be a multiple of {PATCH} px above {sum(MARGINS) * PATCH} (the overlap margins), got {crop}")
    return crop


@register(
    "molmo2",
    summary="Molmo2: low-res crop x crop + overlapping crop px crops (up to max_crops) stitched, 14 px patches pooled 2x2",
    source="transformers Molmo2ImageProcessor + Molmo2Processor.replace_image_token (allenai/Molmo2-8B)",
    crop=378,
    max_crops=8,
)
def molmo2(canvas, crop, max_crops):
    crop = _crop(crop)  # the image processor's size (square); the checkpoints' 378
    th, tw, ch, cw = crop_canvas(canvas, crop, _max_crops(max_crops))
    low = _pooled_grid(canvas, (crop, crop), (crop, crop), label="low-res", before="<low_res_im_start>")
    # the high-res tokens follow the low-res view's <im_end>; each high-res row ends with <im_col> (text)
    high = _pooled_grid(canvas, (cw, ch), (cw, ch), label=f"high-res {th}x{tw} crops", before="<im_end><im_start>")
    return [low, high], "<im_end>"


def _letterbox(canvas: tuple[int, int], target: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Original Molmo `resize_and_pad`: ((new_w, new_h), (left, top)) of the canvas inside `target` = (W, H)."""
    w, h = canvas
    f32 = np.float32
    scale = min(f32(target[1]) / f32(h), f32(target[0]) / f32(w))
    nh, nw = int(f32(h) * scale), int(f32(w) * scale)
    return (nw, nh), ((target[0] - nw) // 2, (target[1] - nh) // 2)


@register(
    "molmo",
    summary="Molmo (original): low-res 336x336 + overlapping 336 px crops (up to max_crops), aspect kept (padded), 2x2 pooled",
    source="allenai/Molmo-7B-D-0924 image_preprocessing_molmo.py (MolmoImageProcessor, remote code; not run here)",
    max_crops=12,
)
def molmo(canvas, max_crops):
    crop = 336
    th, tw, ch, cw = crop_canvas(canvas, crop, _max_crops(max_crops))
    size, off = _letterbox(canvas, (crop, crop))
    low = _pooled_grid(canvas, (crop, crop), size, off, label="low-res", before="<im_start>")
    size, off = _letterbox(canvas, (cw, ch))
    # every row of both views ends with <im_col> (text); the high-res view follows the low-res <im_end>
    high = _pooled_grid(canvas, (cw, ch), size, off, label=f"high-res {th}x{tw} crops", before="<im_end><im_start>")
    return [low, high], "<im_end>"
