"""Profile `glm-4.1v` vs transformers' `Glm4vImageProcessorPil` and `Glm4vProcessor` (offline, CPU, no weights).

The processor runs with the image processor only (its video processor needs torchvision; images never use
it): `linebench.families.qwen.processor_class` drops it, nothing else. The tokenizer is the tiny models'
word-level one with GLM's image tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image

pytest.importorskip("transformers")
from PIL import Image  # noqa: E402
from transformers import Glm4vImageProcessorPil  # noqa: E402
from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize as hf_smart_resize  # noqa: E402

from linebench.profiles.glm import smart_resize  # noqa: E402

RADIUS = 4.0
ODD = [(20, 30), (13, 500), (27, 27), (3000, 2000), (4000, 60), (100, 20000)]
SPECIAL = ("<|image|>", "<|video|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>")


def image_processor(lay) -> Glm4vImageProcessorPil:
    p = lay.params
    return Glm4vImageProcessorPil(size={"shortest_edge": p["min_pixels"], "longest_edge": p["max_pixels"]}, patch_size=14, merge_size=2, temporal_patch_size=2)


@pytest.fixture(scope="module")
def make_processor():
    from transformers.models.glm4v.processing_glm4v import Glm4vProcessor

    from linebench.families.base import tokenizer
    from linebench.families.qwen import processor_class

    tok = tokenizer("<|begin_of_image|><|image|><|end_of_image|>", extra_special=SPECIAL)
    cls = processor_class(Glm4vProcessor)
    return lambda lay: cls(image_processor=image_processor(lay), tokenizer=tok, video_processor=None, chat_template=tok.chat_template)


@pytest.mark.parametrize("canvas", CANVASES + ODD + [(640, 480), (480, 640)])
def test_glm_token_count_matches_image_grid_thw(canvas):
    lay = layout("glm-4.1v", canvas)
    out = image_processor(lay)(images=[Image.new("RGB", canvas)], return_tensors="np")
    t, gh, gw = out["image_grid_thw"][0]
    assert (t, gh // 2, gw // 2) == (1, *lay.grids[0].shape)
    assert lay.num_tokens == lay.num_placeholders == t * gh * gw // 4
    assert image_processor(lay).get_number_of_image_patches(canvas[1], canvas[0]) == gh * gw


def test_glm_smart_resize_is_transformers_own():
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 6000, size=(400, 2))] + [(1, 1), (27, 28), (28, 27), (5, 900)]
    for h, w in sizes:
        for lo, hi in [(12544, 9633792), (3136, 200704), (50000, 60000)]:
            try:
                want = hf_smart_resize(2, h, w, temporal_factor=2, factor=28, min_pixels=lo, max_pixels=hi)
            except ValueError:
                with pytest.raises(UsageError, match="aspect"):
                    smart_resize(h, w, 28, lo, hi)
                continue
            assert smart_resize(h, w, 28, lo, hi) == want, (h, w, lo, hi)


@pytest.mark.parametrize("canvas", [(448, 448), (640, 480), (480, 640), (333, 777), (20, 30)])
def test_glm_processor_input_ids_are_the_layout(canvas, make_processor):
    """The full Glm4vProcessor: <|image|> count and the exact tokens around them (the chat template's
    <|begin_of_image|> ... <|end_of_image|>)."""
    lay = layout("glm-4.1v", canvas)
    proc = make_processor(lay)
    out = proc(images=[Image.new("RGB", canvas)], text=["what <|begin_of_image|><|image|><|end_of_image|> the"], return_tensors="np")
    ids = out["input_ids"][0].tolist()
    assert ids.count(proc.image_token_id) == lay.num_placeholders
    g = lay.grids[0]
    want = proc.tokenizer("what " + g.before + "<|image|>" * g.size + lay.after + " the", add_special_tokens=False)["input_ids"]
    assert ids == want
    assert (np.asarray(out["mm_token_type_ids"][0]) == 1).sum() == lay.num_tokens


def test_glm_pixel_budget_is_a_parameter():
    canvas = (1920, 1080)
    small = layout("glm-4.1v:max_pixels=401408", canvas)
    assert 2 * small.num_tokens * 28 * 28 <= 401408 and small.num_tokens < layout("glm-4.1v", canvas).num_tokens
    out = image_processor(small)(images=[Image.new("RGB", canvas)], return_tensors="np")
    assert int(np.prod(out["image_grid_thw"][0])) // 4 == small.num_tokens
    big = layout("glm-4.1v:min_pixels=1003520", (100, 80))  # upscaled until 2 * h * w >= min_pixels
    out = image_processor(big)(images=[Image.new("RGB", (100, 80))], return_tensors="np")
    assert int(np.prod(out["image_grid_thw"][0])) // 4 == big.num_tokens and 2 * big.num_tokens * 784 >= 1003520
    with pytest.raises(UsageError, match="min_pixels"):
        layout("glm-4.1v:min_pixels=10:max_pixels=5", canvas)


@pytest.mark.parametrize("canvas", CANVASES + [(640, 480), (480, 640)])
def test_glm_marker_lands_in_mapped_token(canvas):
    lay = layout("glm-4.1v", canvas)
    proc = image_processor(lay)
    rows, cols = lay.grids[0].shape
    for c in clear_positions(lay, 3, RADIUS, seed=sum(canvas) % 1000):
        pv = proc(images=[marker_image(canvas, c, RADIUS)], return_tensors="np")["pixel_values"]
        # rows of pixel_values: patches grouped by merged token (2x2 consecutive), tokens in raster order
        bright = pv.reshape(rows * cols, 4, -1).mean(axis=(1, 2)).reshape(rows, cols)
        assert_marker_lands(lay, [bright], c, RADIUS)


def test_glm_vision_tower_merges_each_run_of_four_patches_into_one_token():
    """Glm4vVisionModel's downsample reads the patches 4 at a time in the processor's order: a tower with
    no blocks, a patch embedding that keeps the patch's mean and a downsample that keeps the first of its 4
    patches gives token j the mean of pixel_values rows 4j (the processor's token order, above)."""
    import torch
    from transformers import Glm4vVisionConfig
    from transformers.models.glm4v.modeling_glm4v import Glm4vVisionModel

    canvas = (300, 200)
    lay = layout("glm-4.1v", canvas)
    out = image_processor(lay)(images=[marker_image(canvas, (100, 70), 20)], return_tensors="pt")
    cfg = Glm4vVisionConfig(depth=0, hidden_size=8, num_heads=1, intermediate_size=8, out_hidden_size=8, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    tower = Glm4vVisionModel(cfg).eval()
    with torch.no_grad():
        pe = tower.patch_embed.proj
        pe.weight.zero_()
        pe.weight[0] = 1.0 / pe.weight[0].numel()  # channel 0: the patch's mean
        pe.bias.zero_() if pe.bias is not None else None
        tower.embeddings.position_embedding.weight.zero_()
        for norm in (tower.post_conv_layernorm, tower.post_layernorm):
            norm.forward = lambda x: x  # the RMS norms would rescale the mean
        tower.downsample.weight.zero_()
        tower.downsample.weight[0, 0, 0, 0] = 1.0  # token channel 0 = the block's first patch
        tower.downsample.bias.zero_()
        feats = tower(out["pixel_values"], grid_thw=out["image_grid_thw"]).last_hidden_state[:, 0]
    first = out["pixel_values"].reshape(lay.num_tokens, 4, -1)[:, 0].mean(-1)
    assert feats.shape == (lay.num_tokens,) and torch.allclose(feats, first, atol=1e-5)
