"""Idefics3 and SmolVLM: resize, split into square tiles (row-major), global image last, pixel shuffle.

Both follow transformers `Idefics3ImageProcessor` / `SmolVLMImageProcessor` (the same code,
models/idefics3/image_processing_*idefics3.py, models/smolvlm/image_processing_*smolvlm.py), with
do_resize, do_image_splitting and do_pad on (the checkpoints' values):

1. `resize` with size {"longest_edge": L}: `_resize_output_size_rescale_to_max_len` scales the longest
   side to L (short side `int(L / aspect)` rounded up to even, at least 1; small canvases are scaled up),
   then `_resize_output_size_scale_below_upper_bound` caps it at MAX_IMAGE_SIZE = 4096;
2. `resize_for_vision_encoder(max_image_size M)`: long side -> ceil(long / M) * M, short side ->
   ceil(int(new_long / aspect) / M) * M (aspect not exactly kept);
3. `split_images`: if the result exceeds M, cut it into (H / M) x (W / M) tiles of M x M px in
   row-major order and append the global image (the step-2 image resized to M x M); else the single
   M x M image is the only frame.

The composed resizes map the whole canvas onto the step-2 image, so a tile's token covers
canvas px through `image_grid` with resized = step-2 size. Each M x M frame goes through SigLIP
(`Conv2d(patch, stride=patch, padding="valid")`: M // patch patches per side, a remainder is never
seen) and the connector's `pixel_shuffle(scale_factor s)` (`Idefics3Connector` / `SmolVLMConnector`),
which merges each s x s block of patches into one token in raster order over the block grid:
((M // patch) // s)^2 tokens per frame, each covering (patch * s)^2 frame px. Frames reach the LLM in
the processor's order (`Idefics3Model.inputs_merger` fills the `<image>` tokens in sequence).

Text around the frames (`Idefics3Processor.replace_image_token`, smolvlm `_prompt_split_image`):
per tile `<fake_token_around_image><row_{r}_col_{c}>`, a `\\n` after each row of tiles, then
`\\n<fake_token_around_image><global-img>` before the global image and `<fake_token_around_image>`
after it; an unsplit image is `<fake_token_around_image><global-img>` ... `<fake_token_around_image>`.

Checkpoint values (preprocessor_config.json, config.json):
- `idefics3`: HuggingFaceM4/Idefics3-8B-Llama3: size {"longest_edge": 1456}, max_image_size
  {"longest_edge": 364} (also the class default), SigLIP patch_size 14, scale_factor 2 ->
  26x26 patches -> 13x13 = 169 tokens per frame (image_seq_len 169).
- `smolvlm`: HuggingFaceTB/SmolVLM2-256M-Video-Instruct (same values: SmolVLM2-500M-Video-Instruct,
  SmolVLM-256M/500M-Instruct): size {"longest_edge": 2048}, max_image_size {"longest_edge": 512},
  patch_size 16, scale_factor 4 -> 32x32 patches -> 8x8 = 64 tokens per frame (image_seq_len 64).
  HuggingFaceTB/SmolVLM-Instruct (and SmolVLM2-2.2B-Instruct) use 384 px frames, patch 14,
  scale_factor 3 -> 27x27 patches (378 px seen) -> 9x9 = 81 tokens:
  `smolvlm:longest_edge=1536:max_image_size=384:patch_size=14:scale_factor=3`.
  (The transformers class defaults, 4 * 364 / 364 and a 224 px / 32 px / scale 2 config, are no
  released checkpoint.)

The frames follow the processor's output. Its count helper `get_number_of_image_patches` takes the
short side from the step-1 size instead of `int(new_long / aspect)`; it agrees with the output for
these checkpoints (longest_edge a multiple of max_image_size) but not always for other values
(e.g. longest_edge=1000, max_image_size=384 on a 2553x1914 canvas: helper 7 frames, processor 10).
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .base import image_grid, register

MAX_IMAGE_SIZE = 4096  # transformers idefics3 / smolvlm image processors: absolute maximum side
FAKE, GLOBAL = "<fake_token_around_image>", "<global-img>"


def resize_longest_edge(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """`get_resize_output_image_size`: `_resize_output_size_rescale_to_max_len(max_len=longest_edge)` then
    `_resize_output_size_scale_below_upper_bound(max_len=MAX_IMAGE_SIZE)`, reproduced exactly."""
    aspect_ratio = width / height
    if width >= height:
        width = longest_edge
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    else:
        height = longest_edge
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    height, width = max(height, 1), max(width, 1)
    aspect_ratio = width / height
    if width >= height and width > MAX_IMAGE_SIZE:
        width = MAX_IMAGE_SIZE
        height = int(width / aspect_ratio)
    elif height > width and height > MAX_IMAGE_SIZE:
        height = MAX_IMAGE_SIZE
        width = int(height * aspect_ratio)
    return max(height, 1), max(width, 1)


def resize_for_vision_encoder(height: int, width: int, max_image_size: int) -> tuple[int, int]:
    """`Idefics3ImageProcessor.resize_for_vision_encoder`: both sides -> multiples of max_image_size."""
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / max_image_size) * max_image_size
        height = int(width / aspect_ratio)
        height = math.ceil(height / max_image_size) * max_image_size
    else:
        height = math.ceil(height / max_image_size) * max_image_size
        width = int(height * aspect_ratio)
        width = math.ceil(width / max_image_size) * max_image_size
    return height, width


def split_size(canvas: tuple[int, int], longest_edge: int, max_image_size: int) -> tuple[int, int, int, int]:
    """(rows, cols, height, width): the tile grid `split_images` cuts ((0, 0) when it does not split)
    and the size of the image it cuts it from."""
    w, h = canvas
    height, width = resize_for_vision_encoder(*resize_longest_edge(h, w, longest_edge), max_image_size)
    if height < 1 or width < 1:  # the real processor fails here too (PIL cannot resize to 0 px)
        raise UsageError(f"canvas {w}x{h} is too elongated for this processor (resized to {width}x{height})")
    if height > max_image_size or width > max_image_size:
        rows = (height - max_image_size) // max_image_size + 1
        cols = (width - max_image_size) // max_image_size + 1
        return rows, cols, height, width
    return 0, 0, height, width


def _idefics(canvas, longest_edge, max_image_size, patch_size, scale_factor):
    if min(longest_edge, max_image_size, patch_size, scale_factor) < 1:
        raise UsageError("longest_edge, max_image_size, patch_size and scale_factor must be >= 1")
    side = max_image_size // patch_size  # SigLIP patches per frame side ("valid" convolution)
    if side < scale_factor or side % scale_factor:
        raise UsageError(
            f"{side} patches per side ({max_image_size} px / {patch_size} px) do not split into {scale_factor}x{scale_factor} blocks"
        )
    n, cell = side // scale_factor, patch_size * scale_factor
    rows, cols, height, width = split_size(canvas, longest_edge, max_image_size)
    if rows == 0:
        # unsplit: the frame is the step-2 image itself (max_image_size x max_image_size)
        return [image_grid(n, n, cell, canvas=canvas, resized=(width, height), label="image", before=FAKE + GLOBAL)], FAKE
    grids = []
    for r in range(rows):
        for c in range(cols):
            before = ("\n" if r > 0 and c == 0 else "") + f"{FAKE}<row_{r + 1}_col_{c + 1}>"
            grids.append(
                image_grid(
                    n, n, cell, canvas=canvas, resized=(width, height), start=(c * max_image_size, r * max_image_size),
                    label=f"tile {r + 1},{c + 1}", before=before,
                )
            )
    glob = image_grid(n, n, cell, canvas=canvas, resized=(max_image_size, max_image_size), label="global", before="\n\n" + FAKE + GLOBAL)
    return grids + [glob], FAKE


_SRC = "transformers {proc} (resize, resize_for_vision_encoder, split_images) + {conn}.pixel_shuffle ({ckpt})"


register(
    "idefics3",
    summary="Idefics3: longest edge -> 1456, 364 px tiles (row-major) + global 364 image, 26x26 patches shuffled 2x2 -> 13x13 each",
    source=_SRC.format(proc="Idefics3ImageProcessor", conn="Idefics3Connector", ckpt="HuggingFaceM4/Idefics3-8B-Llama3"),
    longest_edge=1456,
    max_image_size=364,
    patch_size=14,
    scale_factor=2,
)(_idefics)

register(
    "smolvlm",
    summary="SmolVLM(2) 256M/500M: longest edge -> 2048, 512 px tiles (row-major) + global 512 image, "
    "32x32 patches shuffled 4x4 -> 8x8 each",
    source=_SRC.format(proc="SmolVLMImageProcessor", conn="SmolVLMConnector", ckpt="HuggingFaceTB/SmolVLM2-256M-Video-Instruct"),
    longest_edge=2048,
    max_image_size=512,
    patch_size=16,
    scale_factor=4,
)(_idefics)
