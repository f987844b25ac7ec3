"""Profile `mistral-3` vs transformers' Pixtral image processor, `PixtralProcessor` and the Mistral 3 model's
token order (offline, CPU, no weights).

`PixtralImageProcessorPil` is AutoImageProcessor's PIL choice for mistral3; `PixtralProcessor` is
transformers' own class (`linebench.families.mistral.processor_class` imports it without torchvision:
see there). Token order: a Pixtral tower with no layers whose patch embedding keeps each patch's mean,
then `Mistral3PatchMerger` with a merging layer that keeps each 2x2 block's top-left patch.
"""

from __future__ import annotations

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image, patch_means

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from transformers import PixtralImageProcessorPil  # noqa: E402
from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size  # noqa: E402

RADIUS = 4.0
ODD = [(20, 30), (13, 500), (29, 29), (3000, 2000), (4000, 60), (1541, 1540), (27, 3081)]
PIXTRAL_12B = {"longest_edge": 1024, "patch_size": 16, "spatial_merge_size": 1}


def image_processor(lay) -> PixtralImageProcessorPil:
    p = lay.params
    return PixtralImageProcessorPil(size={"longest_edge": p["longest_edge"]}, patch_size=p["patch_size"])


@pytest.fixture(scope="module")
def make_processor():
    from linebench.families.base import tokenizer
    from linebench.families.mistral import SPECIAL, processor_class

    tok = tokenizer("[IMG]", extra_special=SPECIAL)
    cls = processor_class()

    def make(lay):
        p = lay.params
        return cls(image_processor=image_processor(lay), tokenizer=tok, patch_size=p["patch_size"], spatial_merge_size=p["spatial_merge_size"])

    return make


CASES = [(c, {}) for c in CANVASES + ODD + [(640, 480), (480, 640)]] + [(c, PIXTRAL_12B) for c in [(448, 448), (640, 480), (1500, 300)]]
IDS = [f"{w}x{h}{'-pixtral12b' if p else ''}" for (w, h), p in CASES]


@pytest.mark.parametrize("canvas,params", CASES, ids=IDS)
def test_mistral3_processor_input_ids_are_the_layout(canvas, params, make_processor):
    """The full PixtralProcessor: the [IMG] count is the map's length, and input_ids are the layout's
    rows of [IMG] with [IMG_BREAK] after each row and [IMG_END] after the last."""
    lay = layout("mistral-3", canvas, **params)
    proc = make_processor(lay)
    out = proc(images=[Image.new("RGB", canvas)], text=["what [IMG] the"], return_tensors="np")
    ids = out["input_ids"][0].tolist()
    assert ids.count(proc.image_token_id) == lay.num_placeholders == lay.num_tokens
    g = lay.grids[0]
    rows = ["[IMG]" * g.cols + "[IMG_BREAK]"] * g.rows
    rows[-1] = "[IMG]" * g.cols + "[IMG_END]"
    assert ids == proc.tokenizer("what " + "".join(rows) + " the", add_special_tokens=False)["input_ids"]
    # the image processor's own size and the processor's token count agree with the layout
    cell = lay.params["patch_size"] * lay.params["spatial_merge_size"]
    h, w = (int(v) for v in out["image_sizes"][0])
    assert (h // cell, w // cell) == g.shape and out["pixel_values"].shape[-2:] == (h, w)
    assert proc._get_num_multimodal_tokens(image_sizes=[(canvas[1], canvas[0])])["num_image_tokens"] == [lay.num_tokens]


def test_resize_arithmetic_is_transformers_own():
    from linebench.profiles.mistral import resize_output_size

    rng = np.random.default_rng(0)
    for h, w in [(int(a), int(b)) for a, b in rng.integers(1, 5000, size=(500, 2))]:
        for longest, cell in [(1540, 28), (1024, 16), (224, 28)]:
            want = get_resize_output_image_size(np.zeros((h, w, 3)), size=(longest, longest), patch_size=(cell, cell))
            assert resize_output_size(h, w, longest, cell) == want


@pytest.mark.parametrize("canvas", CANVASES + [(640, 480), (480, 640)])
def test_mistral3_marker_lands_in_mapped_token(canvas):
    lay = layout("mistral-3", canvas)
    proc = image_processor(lay)
    rows, cols = lay.grids[0].shape
    for c in clear_positions(lay, 3, RADIUS, seed=sum(canvas) % 1000):
        # the processor passes patch_size * spatial_merge_size to the image processor (PixtralProcessor._process_images)
        pv = proc(images=[marker_image(canvas, c, RADIUS)], patch_size=28, return_tensors="np")["pixel_values"][0]
        assert_marker_lands(lay, [patch_means(pv, 28, rows, cols)], c, RADIUS)


@pytest.mark.parametrize("canvas", [(300, 200), (200, 330)])
def test_mistral3_model_orders_tokens_in_raster_order(canvas, make_processor):
    """PixtralVisionModel (patches of each image row-major) + Mistral3PatchMerger (2x2 unfold): token j of
    the image is the layout's token j (its top-left patch's mean lands in token j)."""
    from transformers import Mistral3Config
    from transformers.models.mistral3.modeling_mistral3 import Mistral3PatchMerger
    from transformers.models.pixtral.modeling_pixtral import PixtralVisionModel

    lay = layout("mistral-3", canvas)
    out = make_processor(lay)(images=[marker_image(canvas, (90, 70), 30)], text=["[IMG]"], return_tensors="pt")
    cfg = Mistral3Config(
        vision_config=dict(model_type="pixtral", hidden_size=8, intermediate_size=8, num_hidden_layers=0, num_attention_heads=1, head_dim=8, image_size=448, patch_size=14),
        text_config=dict(model_type="mistral", hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1, vocab_size=32),
        spatial_merge_size=2,
    )  # fmt: skip
    tower, merger = PixtralVisionModel(cfg.vision_config).eval(), Mistral3PatchMerger(cfg).eval()
    with torch.no_grad():
        tower.patch_conv.weight.zero_()
        tower.patch_conv.weight[0] = 1.0 / tower.patch_conv.weight[0].numel()  # channel 0: the patch's mean
        tower.ln_pre.forward = lambda x: x  # the RMS norm would rescale it
        merger.merging_layer.weight.zero_()
        merger.merging_layer.weight[0, 0] = 1.0  # unfold's feature 0: channel 0 of the block's top-left patch
        feats = tower(out["pixel_values"], image_sizes=out["image_sizes"]).last_hidden_state[0]
        tokens = merger(feats, out["image_sizes"])[:, 0].numpy()
    rows, cols = lay.grids[0].shape
    top_left = patch_means(out["pixel_values"][0].numpy(), 14, 2 * rows, 2 * cols)[::2, ::2]
    assert tokens.shape == (lay.num_tokens,) and np.allclose(tokens, top_left.ravel(), atol=1e-5)


def test_mistral3_parameters():
    assert layout("mistral-3", (448, 448)).grids[0].shape == (16, 16)  # never upscaled
    assert layout("mistral-3", (3080, 1540)).grids[0].shape == (28, 55)  # 1540 x 770 px
    assert layout("mistral-3:longest_edge=1024:patch_size=16:spatial_merge_size=1", (2048, 1024)).grids[0].shape == (32, 64)
    with pytest.raises(UsageError, match="elongated"):
        layout("mistral-3", (20000, 5))
    with pytest.raises(UsageError, match=">= 1"):
        layout("mistral-3:spatial_merge_size=0", (448, 448))
