"""InternVL 2.5 / 3 (transformers `-hf` checkpoints): 448 px tiles of 16x16 tokens, thumbnail last.

`internvl` follows the transformers processor of OpenGVLab/InternVL3-{1B,2B,8B,...}-hf:
`InternVLProcessor` calls `GotOcr2ImageProcessor` with `crop_to_patches=True` (the processor's
images_kwargs default), preprocessor_config.json: size {"height": 448, "width": 448}, min_patches 1,
max_patches 12 (the class defaults too; the original InternVL code calls the same numbers
`min_dynamic_patch` / `max_dynamic_patch`). Reproduced from models/got_ocr2/image_processing_*got_ocr2.py:

- `get_all_supported_aspect_ratios(min_tiles, max_tiles)`: every (cols, rows) with
  min_tiles <= cols * rows <= max_tiles, stably sorted by cols * rows;
- `get_optimal_tiled_canvas`: the arrangement whose cols / rows is closest to the canvas aspect ratio
  w / h; on a tie the later (larger) arrangement wins while w * h > 0.5 * 448^2 * cols * rows;
- `crop_image_to_patches`: resize the canvas to (448 * cols) x (448 * rows) (aspect not kept), cut it into
  448 x 448 tiles in row-major order, then append a thumbnail (the whole canvas resized to 448 x 448)
  when there is more than one tile. With max_tiles <= 1 the processor skips tiling and only resizes
  to 448 x 448 (one grid, no thumbnail).

Each 448 px tile goes through InternViT (14 px patches -> 32x32, CLS dropped by the "default" feature
select strategy); `InternVLModel.get_image_features` applies `pixel_shuffle` with downsample_ratio 0.5,
which turns each 2x2 block of patches into one token, in raster order over the 16x16 block grid
(256 tokens = image_seq_length, each covering 28 x 28 tile px). `InternVLProcessor.replace_image_token`
writes `<img>` + `<IMG_CONTEXT>` * 256 * num_tiles + `</img>`: no text between tiles.

Parameters: `min_tiles` / `max_tiles` (the image processor's min_patches / max_patches), `tile` (its
size, 448) and `tile_tokens` (the processor's image_seq_length, 256 = (448 / 14 * 0.5)^2: a square
grid of `sqrt(tile_tokens)` tokens per tile side, each covering tile / sqrt(tile_tokens) px). A
checkpoint (or linebench's tiny InternVL, `internvl:max_tiles=6:tile=112:tile_tokens=16`) that
changes them has its layout from the same code.
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register

TILE, PATCH, DOWNSAMPLE = 448, 14, 2  # tile px, InternViT patch px, 1 / downsample_ratio
START, END = "<img>", "</img>"


MAX_TILES = 256  # InternVL checkpoints use 12; the aspect-ratio search is quadratic in it


def supported_aspect_ratios(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """transformers got_ocr2 `get_all_supported_aspect_ratios`: (cols, rows) sorted by tile count."""
    out = [(w, h) for w in range(1, max_tiles + 1) for h in range(1, max_tiles + 1) if min_tiles <= w * h <= max_tiles]
    return sorted(out, key=lambda x: x[0] * x[1])


def optimal_tiled_canvas(width: int, height: int, min_tiles: int, max_tiles: int, tile: int = TILE) -> tuple[int, int]:
    """transformers got_ocr2 `get_optimal_tiled_canvas`, reproduced exactly: -> (cols, rows)."""
    aspect_ratio = width / height
    area = width * height
    best_diff, best = float("inf"), (1, 1)
    for grid in supported_aspect_ratios(min_tiles, max_tiles):
        diff = abs(aspect_ratio - grid[0] / grid[1])
        if diff < best_diff:
            best_diff, best = diff, grid
        elif diff == best_diff and area > 0.5 * tile * tile * grid[0] * grid[1]:
            best = grid
    return best


def tile_arrangement(canvas: tuple[int, int], min_tiles: int, max_tiles: int, tile: int = TILE) -> tuple[int, int]:
    """(cols, rows) of the tiles the processor cuts; (1, 1) when it does not tile."""
    if max_tiles <= 1:  # GotOcr2ImageProcessor: `crop_to_patches and max_patches > 1`
        return (1, 1)
    return optimal_tiled_canvas(canvas[0], canvas[1], min_tiles, max_tiles, tile)


@register(
    "internvl",
    summary="InternVL3 (-hf): dynamic 448 px tiles (1..12) + thumbnail, 32x32 patches pixel-shuffled to 16x16 per tile",
    source="transformers InternVLProcessor + GotOcr2ImageProcessor (crop_to_patches) + InternVLModel.pixel_shuffle "
    "(OpenGVLab/InternVL3-*-hf)",
    min_tiles=1,
    max_tiles=12,
    tile=TILE,
    tile_tokens=(TILE // PATCH // DOWNSAMPLE) * (TILE // PATCH // DOWNSAMPLE),
)
def internvl(canvas, min_tiles, max_tiles, tile, tile_tokens):
    if not (1 <= min_tiles <= MAX_TILES and 1 <= max_tiles <= MAX_TILES):
        raise UsageError(f"internvl: min_tiles and max_tiles must be within 1..{MAX_TILES}, got {min_tiles}, {max_tiles}")
    n = math.isqrt(max(tile_tokens, 0))  # 16 tokens per side
    if tile < 1 or n < 1 or n * n != tile_tokens or n > tile:
        raise UsageError(f"internvl: tile_tokens must be a square number of at most tile^2 tokens (256 for 448 px tiles), got tile={tile}, tile_tokens={tile_tokens}")
    cell = tile / n  # 28 tile px per token
    cols, rows = tile_arrangement(canvas, min_tiles, max_tiles, tile)
    if cols * rows == 1:
        return [image_grid(n, n, cell, canvas=canvas, resized=(tile, tile), label="image", before=START)], END
    resized = (tile * cols, tile * rows)
    grids = [
        image_grid(
            n, n, cell, canvas=canvas, resized=resized, start=(c * tile, r * tile),
            label=f"tile {r + 1},{c + 1}", before=START if (r, c) == (0, 0) else "",
        )
        for r in range(rows)
        for c in range(cols)
    ]
    grids.append(image_grid(n, n, cell, canvas=canvas, resized=(tile, tile), label="thumbnail"))
    return grids, END
