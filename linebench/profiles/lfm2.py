"""LFM2-VL (`lfm2-vl`, `Lfm2VlForConditionalGeneration`): SigLIP2 NaFlex at (about) the image's own size,
16 px patches pixel-unshuffled 2x2; a large image is split into 512 px tiles (row-major) plus a
thumbnail.

Follows transformers `Lfm2VlImageProcessor` (models/lfm2_vl/image_processing_lfm2_vl.py: `smart_resize`,
`_is_image_too_large`, `_get_split_layout`, `_get_grid_layout`, `find_closest_aspect_ratio`,
`crop_image_to_patches`), `Lfm2VlProcessor._build_image_tokens` (processing_lfm2_vl.py) and
`Lfm2VlModel.get_image_features` + `Lfm2VlMultiModalProjector.pixel_unshuffle` (modeling_lfm2_vl.py).
With f = encoder_patch_size * downsample_factor = 32 px (one token):

1. `smart_resize`: h_bar = max(f, round(h / f) * f) (Python's round), the same for w; above
   max_image_tokens * f^2 px both are floored after scaling by beta = sqrt(h * w / max_pixels)
   (at least f), below min_image_tokens * f^2 ceiled after scaling up. The result is the size of an
   unsplit image and of the thumbnail (returned as (w_bar, h_bar)).
2. The image is "too large" when max(16, round(h / f) * f) * max(16, round(w / f) * f) exceeds
   max_image_tokens * f^2 * max_pixels_tolerance (2.0); then, with do_image_splitting, it is resized
   (stretched) to (cols * tile_size) x (rows * tile_size) and cut into rows x cols tiles of tile_size px,
   row-major (`split_to_tiles`), where (cols, rows) is the (w, h) ratio among those with min_tiles <=
   cols * rows <= max_tiles (sorted by area) whose aspect is closest to w / h (ties: the later one when
   the image's area exceeds half the candidate's tile area); the thumbnail (step 1's size) follows when
   use_thumbnail. Otherwise the image is resized to step 1's size, one frame.
3. Each frame's 16 px patches go through the tower in raster order (`spatial_shapes`), and
   `get_image_features` + `pixel_unshuffle` make one token of each 2x2 block, in raster order over the
   (H / 32) x (W / 32) grid: tile_size / 32 squared per tile (256 at 512 px).

Sequence (use_image_special_tokens, the default): `<|image_start|>`, then per tile
`<|img_row_{r}_col_{c}|>` + its `<image>` tokens, then `<|img_thumbnail|>` + the thumbnail's; an unsplit
image is `<|image_start|>` + its tokens; `<|image_end|>` closes. Every frame's tokens are `<image>`
(config image_token_id), so an image is several runs of image tokens with marker tokens between them.

Defaults: LiquidAI/LFM2-VL-1.6B's preprocessor_config.json (also the class defaults): min_image_tokens 64,
max_image_tokens 256, min_tiles 2, max_tiles 10, tile_size 512, encoder_patch_size 16,
downsample_factor 2, max_pixels_tolerance 2.0, do_image_splitting and use_thumbnail on. LFM2-VL-450M
has no thumbnail: `lfm2-vl:use_thumbnail=0`.
"""

from __future__ import annotations


from ..errors import UsageError
from .base import image_grid, register
from .qwen import fit_pixels

TOLERANCE = 2.0  # max_pixels_tolerance (a float; every checkpoint has 2.0)


def smart_resize(height: int, width: int, factor: int, min_tokens: int, max_tokens: int) -> tuple[int, int]:
    """`Lfm2VlImageProcessor.smart_resize`, reproduced exactly; -> (height, width) (it returns (w, h))."""
    h_bar = max(factor, round(height / factor) * factor)  # unlike Qwen's: never below one factor
    w_bar = max(factor, round(width / factor) * factor)
    return fit_pixels(height, width, h_bar, w_bar, factor, min_tokens * factor * factor, max_tokens * factor * factor)


def tile_grid(height: int, width: int, min_tiles: int, max_tiles: int, tile_size: int) -> tuple[int, int]:
    """(cols, rows): `_get_grid_layout` / `find_closest_aspect_ratio` over `_target_ratios`."""
    ratios = sorted(
        {(w, h) for n in range(min_tiles, max_tiles + 1) for w in range(1, n + 1) for h in range(1, n + 1) if min_tiles <= w * h <= max_tiles},
        key=lambda r: r[0] * r[1],
    )
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * r[0] * r[1]:
            best = r
    return best


def too_large(height: int, width: int, max_tokens: int, patch: int, factor: int) -> bool:
    """`_is_image_too_large`: note the lower bound is the encoder patch, not the token size."""
    f = patch * factor
    h_bar = max(patch, round(height / f) * f)
    w_bar = max(patch, round(width / f) * f)
    return h_bar * w_bar > max_tokens * patch * patch * factor * factor * TOLERANCE


@register(
    "lfm2-vl",
    summary="LFM2-VL: smart_resize to multiples of 32 (64..256 tokens); large images as 512 px tiles (2..10, row-major) "
    "+ thumbnail; 16 px patches unshuffled 2x2",
    source="transformers Lfm2VlImageProcessor (smart_resize, _get_split_layout, crop_image_to_patches) + Lfm2VlProcessor "
    "+ Lfm2VlModel.get_image_features (LiquidAI/LFM2-VL-1.6B)",
    min_image_tokens=64,
    max_image_tokens=256,
    min_tiles=2,
    max_tiles=10,
    tile_size=512,
    encoder_patch_size=16,
    downsample_factor=2,
    do_image_splitting=1,
    use_thumbnail=1,
)
def lfm2_vl(canvas, min_image_tokens, max_image_tokens, min_tiles, max_tiles, tile_size, encoder_patch_size, downsample_factor, do_image_splitting, use_thumbnail):
    if min(min_image_tokens, max_image_tokens, tile_size, encoder_patch_size, downsample_factor) < 1 or max_image_tokens < min_image_tokens:
        raise UsageError("need 1 <= min_image_tokens <= max_image_tokens and tile_size, encoder_patch_size, downsample_factor >= 1")
    cell = encoder_patch_size * downsample_factor
    if tile_size % cell:
        raise UsageError(f"tile_size {tile_size} is not a multiple of {cell} px (encoder_patch_size x downsample_factor)")
    split = bool(do_image_splitting) and not min_tiles == max_tiles == 1
    if split and not 2 <= min_tiles <= max_tiles:  # a 1x1 "split" makes the processor count the thumbnail's tokens for the tile
        raise UsageError(f"need 2 <= min_tiles <= max_tiles with do_image_splitting, got {min_tiles}, {max_tiles}")
    w, h = canvas
    hb, wb = smart_resize(h, w, cell, min_image_tokens, max_image_tokens)
    whole = dict(canvas=canvas, resized=(wb, hb))
    if not (split and too_large(h, w, max_image_tokens, encoder_patch_size, downsample_factor)):
        return [image_grid(hb // cell, wb // cell, cell, **whole, label="image", before="<|image_start|>")], "<|image_end|>"
    cols, rows = tile_grid(h, w, min_tiles, max_tiles, tile_size)
    n = tile_size // cell
    grids = []
    for r in range(rows):
        for c in range(cols):
            before = ("<|image_start|>" if r == c == 0 else "") + f"<|img_row_{r + 1}_col_{c + 1}|>"
            grids.append(image_grid(
                n, n, cell, canvas=canvas, resized=(cols * tile_size, rows * tile_size), start=(c * tile_size, r * tile_size),
                label=f"tile {r + 1},{c + 1}", before=before,
            ))  # fmt: skip
    if use_thumbnail:
        grids.append(image_grid(hb // cell, wb // cell, cell, **whole, label="thumbnail", before="<|img_thumbnail|>"))
    return grids, "<|image_end|>"
