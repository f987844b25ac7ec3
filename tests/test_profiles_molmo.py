"""Profiles `molmo2` and `molmo` vs transformers' Molmo2 image processor and processor (offline, CPU).

`Molmo2ImageProcessor` is a torchvision-backend processor and torchvision is not installed here; on its
path only two methods call torchvision: `resize` (`tvF.resize`, bilinear, antialias=False, on float
tensors: torchvision computes that with `torch.nn.functional.interpolate(..., align_corners=False)`) and
`normalize` (`tvF.normalize`: (x - mean) / std). `_Molmo2ImageProcessor` replaces just those two with the
same torch operations; the tiling, crop extraction, patch index bookkeeping and pooling indices are the
real transformers code.

The original Molmo's processor is remote code (allenai/Molmo-7B-D-0924) and is not run: `molmo` is
checked against the transformers Molmo2 helpers run with Molmo's values (crop 336, max_crops 12), and its
marker test feeds the Molmo2 crop/pooling code a canvas letterboxed the way Molmo's `resize_and_pad`
letterboxes (done here with PIL), so it checks the tiling, the stitching and the token order, not the
letterbox arithmetic independently.
"""

from __future__ import annotations

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image

pytest.importorskip("transformers")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor, compute_crop_geometry  # noqa: E402
from transformers.models.molmo2.processing_molmo2 import Molmo2Processor  # noqa: E402

RADIUS = 4.0
ODD = [(60, 90), (113, 4000), (3000, 2000)]  # tiny (select_tiling on negative sizes), extreme, large


class _Molmo2ImageProcessor(Molmo2ImageProcessor):
    """The transformers processor with its two torchvision calls done in plain torch (see module doc)."""

    def resize(self, image, size, resample=None, antialias=True, **kwargs):
        assert resample in (None, 2) and not antialias  # bilinear without antialiasing is all Molmo2 asks for
        return torch.nn.functional.interpolate(
            image, size=(size.height, size.width), mode="bilinear", align_corners=False, antialias=False
        )

    def normalize(self, image, mean, std, inplace=False, **kwargs):
        mean = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
        return (image - mean) / std


def molmo2_processor(max_crops=8, crop=378, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """allenai/Molmo2-8B preprocessor_config.json (crop 336 / CLIP mean+std are the Molmo values)."""
    return _Molmo2ImageProcessor(
        size={"height": crop, "width": crop},
        max_crops=max_crops,
        overlap_margins=[4, 4],
        patch_size=14,
        pooling_size=[2, 2],
        resample=2,
        image_mean=list(mean),
        image_std=list(std),
    )


def token_brightness(out) -> np.ndarray:
    """Per image token (in the order the model emits them): the mean over the patches its pooling row
    lists (`image_token_pooling`, -1 = empty slot) of each patch's mean pixel value."""
    pv = np.asarray(out["pixel_values"], dtype=np.float64)  # [crops, patches, 14 * 14 * 3]
    per_patch = pv.reshape(-1, pv.shape[-1]).mean(axis=-1)
    idx = np.asarray(out["image_token_pooling"])
    valid = idx >= 0
    return (per_patch[np.where(valid, idx, 0)] * valid).sum(axis=1) / valid.sum(axis=1)


def split_grids(lay, values) -> list[np.ndarray]:
    assert values.size == lay.num_tokens
    return lay.split(values)


# --------------------------------------------------------------------------- Molmo2


@pytest.mark.parametrize("canvas", CANVASES + ODD)
def test_molmo2_token_count_matches_processor(canvas):
    lay = layout("molmo2", canvas)
    proc = molmo2_processor()
    out = proc(images=[Image.new("RGB", canvas)], return_tensors="np")
    low, high = lay.grids
    assert out["image_grids"][0].tolist() == [*low.shape, *high.shape]
    assert lay.num_tokens == lay.num_placeholders == out["image_token_pooling"].shape[0]
    assert lay.num_tokens == proc.get_number_of_image_patches(canvas[1], canvas[0])
    th, tw, _, _ = compute_crop_geometry(canvas[1], canvas[0], 8, [4, 4], 378, 14)
    assert out["pixel_values"].shape[0] == out["image_num_crops"][0] == 1 + th * tw
    assert low.shape == (14, 14) and high.label == f"high-res {th}x{tw} crops"


@pytest.mark.parametrize("max_crops", [1, 3, 12])
def test_molmo2_max_crops_is_a_parameter(max_crops):
    canvas = (1280, 720)
    lay = layout(f"molmo2:max_crops={max_crops}", canvas)
    out = molmo2_processor(max_crops=max_crops)(images=[Image.new("RGB", canvas)], return_tensors="np")
    assert out["image_grids"][0].tolist() == [*lay.grids[0].shape, *lay.grids[1].shape]
    assert out["image_num_crops"][0] - 1 <= max_crops
    with pytest.raises(UsageError, match="max_crops"):
        layout("molmo2:max_crops=0", canvas)


@pytest.mark.parametrize("canvas", [(224, 224), (640, 480), (480, 640), (1000, 300), (60, 90)])
def test_molmo2_crop_is_a_parameter(canvas):
    """Another crop size (the tiny Molmo2's 182 px: 13 patches, odd as 378's 27): counts, grids and the
    markers' tokens still follow the processor."""
    lay = layout("molmo2:crop=182:max_crops=6", canvas)
    proc = molmo2_processor(max_crops=6, crop=182)
    out = proc(images=[Image.new("RGB", canvas)], return_tensors="np")
    low, high = lay.grids
    assert out["image_grids"][0].tolist() == [*low.shape, *high.shape] and low.shape == (7, 7)
    assert lay.num_tokens == out["image_token_pooling"].shape[0] == proc.get_number_of_image_patches(canvas[1], canvas[0])
    for c in clear_positions(lay, 2, RADIUS, seed=sum(canvas) % 1000 + 2):
        out = proc(images=[marker_image(canvas, c, RADIUS)], return_tensors="np")
        assert_marker_lands(lay, split_grids(lay, token_brightness(out)), c, RADIUS)
    with pytest.raises(UsageError, match="crop"):
        layout("molmo2:crop=100", canvas)  # not whole patches
    with pytest.raises(UsageError, match="crop"):
        layout("molmo2:crop=112", canvas)  # 8 patches: all margin


SPECIAL = ["<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>", "<frame_start>", "<im_end>", "<frame_end>", "<im_low>", "<|image|>", "<|video|>", "<|endoftext|>"]


class _Processor(Molmo2Processor):
    # ProcessorMixin looks the video processor's base class up among torchvision-backed classes; skip it
    def check_argument_for_proper_class(self, argument_name, argument):
        return type(argument)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["[UNK]", "describe"] + SPECIAL)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>", additional_special_tokens=SPECIAL)
    fast.image_token = "<|image|>"
    return fast


@pytest.mark.parametrize("canvas", CANVASES)
def test_molmo2_prompt_tokens_match_layout(canvas):
    """The full processor (Molmo2-8B processor_config.json flags): the <im_patch> tokens of input_ids are
    the layout's placeholders, and the text around the grids is `before` / `after` plus one <im_col> after
    each high-res row."""
    lay = layout("molmo2", canvas)
    tok = tiny_tokenizer()
    proc = _Processor(
        image_processor=molmo2_processor(),
        video_processor=None,
        tokenizer=tok,
        image_use_col_tokens=True,
        use_single_crop_col_tokens=False,
        use_single_crop_start_token=True,
    )
    ids = proc(images=[Image.new("RGB", canvas)], text="<|image|> describe", return_tensors="np")["input_ids"][0].tolist()
    patch, col = tok.convert_tokens_to_ids(["<im_patch>", "<im_col>"])
    assert ids.count(patch) == lay.num_placeholders
    want = tok.convert_tokens_to_ids(["<|endoftext|>"])  # the processor prepends bos (= eos here)
    for g, row_end in zip(lay.grids, ([], [col])):
        want += tok.convert_tokens_to_ids(tok.tokenize(g.before))
        want += ([patch] * g.cols + row_end) * g.rows
    want += tok.convert_tokens_to_ids(tok.tokenize(lay.after) + ["describe"])
    assert ids == want


@pytest.mark.parametrize("canvas", CANVASES)
def test_molmo2_marker_lands_in_mapped_token(canvas):
    lay = layout("molmo2", canvas)
    proc = molmo2_processor()
    for c in clear_positions(lay, 3, RADIUS, seed=sum(canvas) % 1000):
        out = proc(images=[marker_image(canvas, c, RADIUS)], return_tensors="np")
        assert_marker_lands(lay, split_grids(lay, token_brightness(out)), c, RADIUS)


def test_molmo2_stretches_and_last_pooled_token_stops_at_the_image():
    lay = layout("molmo2", (640, 360))
    low, high = lay.grids
    for g in lay.grids:
        assert (g.x_edges[0], g.x_edges[-1], g.y_edges[0], g.y_edges[-1]) == (0, 640, 0, 360)
    # 27 patches pool into 14 cells: the last one is a single 14 px patch of 378
    assert np.isclose(low.x_edges[-1] - low.x_edges[-2], 640 * 14 / 378)
    assert np.isclose(low.x_edges[1] - low.x_edges[0], 640 * 28 / 378)
    assert high.shape == (14, 23)  # 1x2 crops: 27 x 46 patches


# --------------------------------------------------------------------------- Molmo (original)


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def letterbox(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Molmo's resize_and_pad: keep the aspect ratio (float32 scale, int() sizes), centre, pad black."""
    w, h = img.size
    f32 = np.float32
    scale = min(f32(target[1]) / f32(h), f32(target[0]) / f32(w))
    nw, nh = int(f32(w) * scale), int(f32(h) * scale)
    out = Image.new("RGB", target, (0, 0, 0))
    out.paste(img.resize((nw, nh), Image.BILINEAR), ((target[0] - nw) // 2, (target[1] - nh) // 2))
    return out


@pytest.mark.parametrize("canvas", CANVASES + ODD)
def test_molmo_token_count_matches_tiling_helpers(canvas):
    lay = layout("molmo", canvas)
    low, high = lay.grids
    th, tw, ch, cw = compute_crop_geometry(canvas[1], canvas[0], 12, [4, 4], 336, 14)
    # Molmo's image_to_patches_and_tokens: (h + 1) // 2 rows of (w + 1) // 2 patches, h = th * 16 + 8
    assert high.shape == ((th * 16 + 8 + 1) // 2, (tw * 16 + 8 + 1) // 2) == (ch // 28, cw // 28)
    grid, crops = molmo2_processor(12, 336).get_image_grid_and_crops(canvas[1], canvas[0])
    assert grid == [12, 12, *high.shape] and crops == 1 + th * tw
    assert lay.num_tokens == lay.num_placeholders == 144 + high.size


@pytest.mark.parametrize("canvas", CANVASES)
def test_molmo_marker_lands_in_mapped_token(canvas):
    lay = layout("molmo", canvas)
    proc = molmo2_processor(12, 336, CLIP_MEAN, CLIP_STD)
    _, _, ch, cw = compute_crop_geometry(canvas[1], canvas[0], 12, [4, 4], 336, 14)
    for c in clear_positions(lay, 2, RADIUS, seed=sum(canvas) % 1000 + 1):
        img = marker_image(canvas, c, RADIUS)
        # low-res view: the 336 x 336 letterbox (the processor's own resize is then the identity)
        low = token_brightness(proc(images=[letterbox(img, (336, 336))], return_tensors="np"))[:144]
        # high-res view: the letterboxed stitched canvas; on it the processor picks the same tiling
        high_out = proc(images=[letterbox(img, (cw, ch))], return_tensors="np")
        assert high_out["image_grids"][0].tolist() == [12, 12, *lay.grids[1].shape]
        high = token_brightness(high_out)[144:]
        assert_marker_lands(lay, [low.reshape(12, 12), high.reshape(lay.grids[1].shape)], c, RADIUS)


def test_molmo_keeps_the_aspect_ratio():
    low, high = layout("molmo", (640, 360)).grids
    assert (low.x_edges[0], low.x_edges[-1]) == (0, 640) and low.y_edges[0] < 0 and low.y_edges[-1] > 360
    # square tokens up to int() of a float32 product: Molmo scales 360 px to int(360 * f32(0.525)) = 188 rows
    assert np.allclose(np.diff(low.x_edges), np.diff(low.y_edges)[0], rtol=0.01)
    assert high.shape == (20, 28) and high.y_edges[0] < 0 < 360 < high.y_edges[-1]
    assert np.isclose(high.x_edges[-1] - high.x_edges[0], 640)  # 784 px wide: no horizontal padding
