"""`gemma-4` profile (and `gemma-3`'s parameters) vs the real transformers code (offline, CPU, no weights).

- Token counts: `Gemma4ImageProcessorPil` (num_soft_tokens_per_image and the patch grid in
  image_position_ids) for the support matrix's canvases, odd and extreme ones (including the
  processor's branch for a side that rounds to 0), and every max_soft_tokens it accepts.
- Prompt text: the real `Gemma4Processor` (linebench's subclass without the video processor and audio
  feature extractor, which need torchvision) puts `<|image>` + `<|image|>` * tokens + `<image|>` in
  input_ids, as many image tokens as the layout has.
- Token order inside the grid: `Gemma4VisionModel` with no encoder layers and a patch embedding set to
  "mean brightness of the 16 px patch" (zero position embeddings), so the real patchify, padding and
  `Gemma4VisionPooler` (3x3 average by patch position, padding stripped) decide which value lands at
  which position of the sequence the LLM receives; a marker must light the token the map puts the most
  mass on.
- `gemma-3` with the parameters a processor can change (`image_size`, `mm_tokens_per_image`): the real
  `Gemma3ImageProcessorPil` at 224 px and the pooled 28 px cells of the tiny model.
"""

from __future__ import annotations

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, marker_image, marker_positions, marker_radius, patch_means

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from transformers import Gemma3ImageProcessorPil, Gemma4ImageProcessorPil, Gemma4VisionConfig  # noqa: E402

MATRIX = [(448, 448), (640, 480), (480, 640)]
EXTREME = [(20, 30), (3000, 2000), (4000, 60), (60, 1500), (10000, 20), (20, 9000), (1, 1), (333, 777), (1280, 200)]
SOFT = [70, 140, 280, 560, 1120]


def processor(lay) -> Gemma4ImageProcessorPil:
    p = lay.params
    return Gemma4ImageProcessorPil(max_soft_tokens=p["max_soft_tokens"], patch_size=p["patch_size"], pooling_kernel_size=p["pooling_kernel_size"])


@pytest.mark.parametrize("soft", SOFT)
@pytest.mark.parametrize("canvas", MATRIX + CANVASES + EXTREME)
def test_gemma4_token_count_and_grid_match_the_image_processor(canvas, soft):
    lay = layout("gemma-4", canvas, max_soft_tokens=soft)
    out = processor(lay)(images=[Image.new("RGB", canvas)], return_tensors="np")
    n = int(out["num_soft_tokens_per_image"][0])
    assert lay.num_tokens == lay.num_placeholders == n <= soft
    pos = out["image_position_ids"][0]
    real = pos[(pos >= 0).all(-1)]
    cols, rows = (int(v) + 1 for v in real.max(0))  # (x, y) patch positions
    assert len(lay.grids) == 1 and lay.grids[0].shape == (rows // 3, cols // 3)
    assert rows % 3 == 0 and cols % 3 == 0


def test_gemma4_defaults_and_parameters():
    assert layout("gemma-4", (448, 448)).num_tokens == 256  # 768x768 px: 48x48 patches, 16x16 tokens
    assert layout("gemma-4", (640, 480)).grids[0].shape == (14, 19)
    assert layout("gemma-4:max_soft_tokens=280:patch_size=16:pooling_kernel_size=3", (640, 480)).profile == "gemma-4"
    assert layout("gemma-4:max_soft_tokens=70", (224, 224)).num_tokens == 64  # the tiny model's
    with pytest.raises(UsageError, match="max_soft_tokens must be one of"):
        layout("gemma-4:max_soft_tokens=100", (448, 448))


@pytest.mark.parametrize("canvas", MATRIX + [(1000, 180), (60, 1500)])
def test_gemma4_processor_puts_the_layout_in_input_ids(canvas):
    from linebench.families.base import tokenizer
    from linebench.families.gemma import GEMMA4_NAMED, GEMMA4_VIDEO, gemma4_processor_class

    tok = tokenizer(GEMMA4_NAMED["image_token"], extra_special=(*GEMMA4_NAMED.values(), GEMMA4_VIDEO))
    tok._set_model_specific_special_tokens(GEMMA4_NAMED)
    proc = gemma4_processor_class()(feature_extractor=None, image_processor=Gemma4ImageProcessorPil(), tokenizer=tok, video_processor=None)
    lay = layout("gemma-4", canvas)
    out = proc(images=[Image.new("RGB", canvas)], text=["the <|image|> picture"], return_tensors="np")
    text = tok.convert_ids_to_tokens(out["input_ids"][0].tolist())
    image = GEMMA4_NAMED["image_token"]
    want = ["the", lay.grids[0].before, *[image] * lay.num_tokens, lay.after, "picture"]
    assert text == want
    assert int((out["input_ids"][0] == proc.image_token_id).sum()) == lay.num_placeholders
    assert int(out["mm_token_type_ids"][0].sum()) == lay.num_placeholders  # the tokens the model makes bidirectional


@pytest.fixture(scope="module")
def vision():
    """Gemma4VisionModel whose output per soft token is the mean brightness of its 3x3 patches."""
    from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel

    cfg = Gemma4VisionConfig(
        hidden_size=4, intermediate_size=8, num_hidden_layers=0, num_attention_heads=1, num_key_value_heads=1, head_dim=4,
        patch_size=16, pooling_kernel_size=3, position_embedding_size=1024,
    )  # fmt: skip
    model = Gemma4VisionModel(cfg).eval()
    with torch.no_grad():
        model.patch_embedder.input_proj.weight.fill_(1.0 / (3 * 16 * 16))
        model.patch_embedder.position_embedding_table.zero_()
    assert not cfg.standardize

    def features(out) -> np.ndarray:
        with torch.no_grad():
            h = model(pixel_values=torch.as_tensor(out["pixel_values"]), pixel_position_ids=torch.as_tensor(out["image_position_ids"])).last_hidden_state
        return h.mean(-1).numpy()  # [tokens of every image, in order]

    return features


@pytest.mark.parametrize("canvas", MATRIX + CANVASES + [(1000, 180), (60, 1500), (3000, 2000)])
def test_gemma4_marker_lands_in_mapped_pooled_token(canvas, vision):
    lay = layout("gemma-4", canvas)
    proc = processor(lay)
    radius = marker_radius(lay)
    centers = marker_positions(lay, 3, radius, seed=sum(canvas))
    out = proc(images=[marker_image(canvas, c, radius) for c in centers], return_tensors="np")
    assert list(out["num_soft_tokens_per_image"]) == [lay.num_tokens] * len(centers)
    flat = vision(out).reshape(len(centers), -1)  # images one after the other, padding stripped
    for c, f in zip(centers, flat):
        assert_marker_lands(lay, lay.split(f), c, radius)


def test_gemma4_pooled_tokens_follow_raster_order(vision):
    """Patch (y, x) carries the value y * 100 + x: soft token k must be the mean of the 3x3 block at
    (3r.., 3c..), (r, c) = divmod(k, cols), for a 5x7-token image (15x21 patches)."""
    rows, cols = 5, 7
    yy, xx = np.meshgrid(np.arange(3 * rows), np.arange(3 * cols), indexing="ij")
    value = (yy * 100 + xx).reshape(-1).astype(np.float32)
    patches = np.repeat(value[:, None], 3 * 16 * 16, axis=1)[None]  # [1, patches, 768], brightness = value
    pos = np.stack([xx.reshape(-1), yy.reshape(-1)], -1)[None]
    pad = 70 * 9 - patches.shape[1]
    patches = np.concatenate([patches, np.zeros((1, pad, 768), np.float32)], 1)
    pos = np.concatenate([pos, -np.ones((1, pad, 2), np.int64)], 1)
    got = vision({"pixel_values": patches, "image_position_ids": pos})
    assert got.shape == (rows * cols,)
    # per patch the embedding is 2 * (value - 0.5) in every channel; the pooler averages 3x3 and scales by sqrt(4)
    wants = np.array([np.mean([(3 * r + a) * 100 + 3 * c + b for a in range(3) for b in range(3)]) for r, c in (divmod(k, cols) for k in range(rows * cols))])
    assert np.allclose(got / 4 + 0.5, wants, rtol=1e-5)


# ------------------------------------------------------------------- gemma-3 with parameters


@pytest.mark.parametrize("canvas", MATRIX + [(1000, 180)])
def test_gemma3_parameters_match_a_224px_processor_pooled_2x2(canvas):
    lay = layout("gemma-3:image_size=224:mm_tokens_per_image=64", canvas)
    assert lay.grids[0].shape == (8, 8) and lay.grids[0].before == "<start_of_image>" and lay.after == "<end_of_image>"
    proc = Gemma3ImageProcessorPil(size={"height": 224, "width": 224})
    radius = marker_radius(lay)
    for c in marker_positions(lay, 3, radius, seed=3):
        pv = proc(images=[marker_image(canvas, c, radius)], return_tensors="np")["pixel_values"][0]
        assert pv.shape == (3, 224, 224)
        # 16x16 patches of 14 px, average-pooled 2x2 by the projector = means over 28 px cells
        assert_marker_lands(lay, [patch_means(pv, 28, 8, 8)], c, radius)


def test_gemma3_defaults_unchanged_and_parameters_checked():
    assert layout("gemma-3:image_size=896:mm_tokens_per_image=256", (640, 480)).profile == "gemma-3"
    g = layout("gemma-3", (896, 896)).grids[0]
    assert g.shape == (16, 16) and np.allclose(np.diff(g.x_edges), 56)
    for bad in ("gemma-3:mm_tokens_per_image=200", "gemma-3:image_size=900"):
        with pytest.raises(UsageError, match="mm_tokens_per_image"):
            layout(bad, (448, 448))
