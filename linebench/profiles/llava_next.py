"""LLaVA-NeXT (LLaVA-1.6) and LLaVA-OneVision: "anyres" tiles plus a squashed base image, tile features
unpadded in feature space, one learned newline token after each row of the tile grid.

Both follow the transformers image processors (`LlavaNextImageProcessor`, `LlavaOnevisionImageProcessor`,
`get_image_patches`) and the model's `pack_image_features` (models/llava_next/modeling_llava_next.py,
models/llava_onevision/modeling_llava_onevision.py). For a canvas of w x h px:

1. `select_best_resolution` (transformers.image_processing_utils) picks the pinpoint (H, W) that keeps
   the most of the image (effective pixels `int(w * s) * int(h * s)` capped at w * h, s = min(W / w,
   H / h)); ties go to the least wasted area, then to the first in the list.
2. `_resize_for_patching` resizes to `get_patch_output_size`: the side that limits the scale becomes W (or
   H), the other `min(ceil(side * s), H or W)`; `_pad_for_patching` pads with zeros to H x W, the image at
   ((W - new_w) // 2, (H - new_h) // 2) (`_get_padding_size`); `divide_to_patches` cuts crops of the
   vision tower's input size, row-major.
3. The base image is the whole canvas resized (aspect not kept) to one crop, and comes first in
   `pixel_values` and in the LLM sequence: `pack_image_features` puts `base_image_feature` before the
   tile features, with no newline token for the base image.
4. The tile features are arranged as one (H / crop * n) x (W / crop * n) grid (n features per crop side),
   cut by `unpad_image` (padding = (rows - int(round(h * cols / w, 7))) // 2 rows off the top and the
   bottom when the canvas is wider than the grid, else the same for columns), and each remaining row is
   followed by `image_newline`. The token count equals the processors' `_get_number_of_features`.

`llava-next`: llava-hf/llava-v1.6-mistral-7b-hf (also -vicuna-7b/13b and -34b), CLIP ViT-L/14 at 336 px:
24 x 24 = 576 features per crop (vision_feature_select_strategy "default" drops the CLS token),
image_grid_pinpoints `NEXT_PINPOINTS`, size {"shortest_edge": 336} and crop 336 (the base image is
resized to 336 x 336). 336 = 24 * 14, so the tile features tile the padded image exactly. (The larger
llava-hf/llava-next-72b-hf / -110b-hf checkpoints use other pinpoints and are not modelled.)

`llava-onevision`: llava-hf/llava-onevision-qwen2-7b-ov-hf (same preprocessing in -0.5b-ov, -72b-ov and the
-si checkpoints), SigLIP at 384 px with 14 px patches: 27 x 27 = 729 features per crop
(vision_feature_select_strategy "full"); image_grid_pinpoints `OV_PINPOINTS` (1..6 x 1..6 crops of 384,
the "anyres_max_9" grid); size 384 x 384. 27 * 14 = 378, so the last 6 px of every crop (right and
bottom) are seen by no patch: here each such strip goes to the nearest patch (half to the last patch of
a crop, half to the first patch of the next crop; all of it at the outer edge and in the base image).
After unpadding, with vision_aspect_ratio "anyres_max_9" (`anyres_max` = 9): when
ratio = sqrt(rows * cols / (9 * 27 * 27)) > 1.1 the feature grid is bilinearly resized
(`nn.functional.interpolate`) to int(rows // ratio) x int(cols // ratio); each such token is taken to
cover its proportional share of the unpadded region (bilinear sampling with align_corners=False reads
the features around the centre of that share). Newlines follow the rows of the resized grid.
This is the single-image path (`batch_num_images` 1); several images in one prompt are not tiled.

Neither prompt wraps the image tokens in start/end tokens (they replace one `<image>`).

Parameters: `crop` (the vision tower's input side: the processor's crop / size, 336 or 384) and
`patch` (its patch, 14); the pinpoints are each checkpoint's grid of crops scaled to `crop`
(`pinpoints(name, crop)`: LLaVA-NeXT's 1x2, 2x1, 2x2, 3x1, 1x3 crops, OneVision's 1..6 x 1..6).
linebench's tiny models use small crops (`llava-next:crop=56`, `llava-onevision:crop=58`) through
the same code.
"""

from __future__ import annotations

import math

import numpy as np

from .. import detmath as dm
from ..errors import UsageError
from .base import TokenGrid, register

# (height, width) pinpoints, from each checkpoint's config.json / preprocessor_config.json
NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))  # llava-hf/llava-v1.6-*-hf
NEXT_CROP, NEXT_PATCH = 336, 14  # CLIP ViT-L/14-336: vision_config.image_size, patch_size
OV_PINPOINTS = tuple((384 * i, 384 * j) for i in range(1, 7) for j in range(1, 7))  # llava-onevision-qwen2-*-hf
OV_CROP, OV_PATCH = 384, 14  # SigLIP so400m-patch14-384


def select_best_resolution(height: int, width: int, pinpoints) -> tuple[int, int]:
    """transformers.image_processing_utils.select_best_resolution, reproduced exactly -> (H, W)."""
    best, best_eff, best_waste = None, 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / width, ph / height)
        eff = min(int(width * scale) * int(height * scale), width * height)
        waste = pw * ph - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (ph, pw), eff, waste
    return best


def patch_output_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """transformers.image_processing_utils.get_patch_output_size -> (new_h, new_w)."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def unpad_bounds(height: int, width: int, rows: int, cols: int) -> tuple[int, int, int, int]:
    """The rows [r0, r1) and columns [c0, c1) of a rows x cols feature grid that
    `modeling_llava_next.unpad_image` keeps for an original image of height x width."""
    if width / height > cols / rows:
        new_h = int(round(height * (cols / width), 7))
        pad = (rows - new_h) // 2
        return pad, rows - pad, 0, cols
    new_w = int(round(width * (rows / height), 7))
    pad = (cols - new_w) // 2
    return 0, rows, pad, cols - pad


def feature_edges(n_crops: int, crop: int, patch: int) -> np.ndarray:
    """Model-px edges of the n_crops * (crop // patch) features along one side of the tiled image. A
    feature sees `patch` px; the unseen strip at the end of a crop (crop - n * patch px) is split between
    the patches on either side of it (all of it to the last patch at the outer edge)."""
    n = crop // patch
    gap = crop - n * patch
    e = np.concatenate([crop * t + patch * np.arange(n, dtype=np.float64) for t in range(n_crops)] + [[crop * n_crops]])
    e[n : n * n_crops : n] -= gap / 2  # the boundaries between crops
    return e


NEXT_GRID = tuple((h // NEXT_CROP, w // NEXT_CROP) for h, w in NEXT_PINPOINTS)  # (rows, cols) of crops
OV_GRID = tuple((h // OV_CROP, w // OV_CROP) for h, w in OV_PINPOINTS)


def pinpoints(name: str, crop: int) -> tuple[tuple[int, int], ...]:
    """The (height, width) pinpoints of profile `name` ("llava-next" / "llava-onevision") for crops of
    `crop` px: the checkpoint's grid of crops, scaled."""
    grid = NEXT_GRID if name == "llava-next" else OV_GRID
    return tuple((crop * r, crop * c) for r, c in grid)


def _check(name, crop, patch):
    if not (1 <= patch <= crop):
        raise UsageError(f"{name}: needs 1 <= patch <= crop, got crop={crop}, patch={patch}")


def _anyres(canvas, pinpoints, crop, patch, anyres_max=None):
    w, h = canvas
    n = crop // patch
    base_e = feature_edges(1, crop, patch)
    base = TokenGrid(n, n, base_e * (w / crop), base_e * (h / crop), label="base")

    bh, bw = select_best_resolution(h, w, pinpoints)
    rh, rw = patch_output_size(h, w, bh, bw)
    top, left = (bh - rh) // 2, (bw - rw) // 2
    rows, cols = n * (bh // crop), n * (bw // crop)
    r0, r1, c0, c1 = unpad_bounds(h, w, rows, cols)
    if r1 <= r0 or c1 <= c0:
        raise UsageError(f"canvas {w}x{h} is too thin: the model keeps no tile features after unpadding")
    fy = np.arange(r0, r1 + 1, dtype=np.float64)  # token edges in feature units
    fx = np.arange(c0, c1 + 1, dtype=np.float64)
    if anyres_max is not None:
        uh, uw = r1 - r0, c1 - c0
        ratio = math.sqrt(uh * uw / (anyres_max * n * n))
        if ratio > 1.1:
            fy = np.linspace(r0, r1, int(uh // ratio) + 1)
            fx = np.linspace(c0, c1, int(uw // ratio) + 1)
    ys = (dm.interp(fy, np.arange(rows + 1), feature_edges(bh // crop, crop, patch)) - top) * (h / rh)
    xs = (dm.interp(fx, np.arange(cols + 1), feature_edges(bw // crop, crop, patch)) - left) * (w / rw)
    tiles = TokenGrid(len(ys) - 1, len(xs) - 1, xs, ys, label=f"tiles {bh // crop}x{bw // crop}", newline=True)
    return [base, tiles]


@register(
    "llava-next",
    summary="LLaVA-NeXT (v1.6): base 336 (24x24) + anyres 336 crops unpadded, newline per row",
    source="transformers LlavaNextImageProcessor (get_image_patches) + LlavaNextModel.pack_image_features "
    "(unpad_image, image_newline); llava-hf/llava-v1.6-mistral-7b-hf",
    crop=NEXT_CROP,
    patch=NEXT_PATCH,
)
def llava_next(canvas, crop, patch):
    _check("llava-next", crop, patch)
    return _anyres(canvas, pinpoints("llava-next", crop), crop, patch)


@register(
    "llava-onevision",
    summary="LLaVA-OneVision: base 384 (27x27) + anyres 384 crops unpadded, anyres_max_9 downsampling, newline per row",
    source="transformers LlavaOnevisionImageProcessor (get_image_patches) + LlavaOnevisionModel.pack_image_features "
    "(unpad_image, vision_aspect_ratio, image_newline); llava-hf/llava-onevision-qwen2-7b-ov-hf",
    anyres_max=9,
    crop=OV_CROP,
    patch=OV_PATCH,
)
def llava_onevision(canvas, anyres_max, crop, patch):
    if anyres_max < 1:
        raise UsageError(f"anyres_max must be >= 1, got {anyres_max}")
    _check("llava-onevision", crop, patch)
    return _anyres(canvas, pinpoints("llava-onevision", crop), crop, patch, anyres_max)
