"""`internvl` profile vs the real transformers code (offline, CPU, no weights).

- Token counts and tile order: `GotOcr2ImageProcessorPil` with crop_to_patches=True (what
  `InternVLProcessor` passes), 448 px tiles, min/max patches from the profile parameters.
- Prompt text: `InternVLProcessor.replace_image_token`. The processor itself cannot be built here
  (its `InternVLVideoProcessor` requires torchvision), so its method is called on a stand-in that
  carries the tokenizer's `<img>` / `</img>` / `<IMG_CONTEXT>` tokens.
- Token order inside a tile: `InternVLModel.get_image_features` of a tiny random-config model whose
  patch embedding is set to "mean brightness of the 14 px patch" (zero CLS and position embeddings, no
  encoder layers, identity projector), so the real CLS drop, reshape and `pixel_shuffle` decide which
  feature lands at which position of the sequence the LLM receives.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, marker_image, marker_positions, marker_radius

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLModel, InternVLProcessor  # noqa: E402

TILE, TOKENS = 448, 256
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # InternVL3-*-hf preprocessor_config
EXTREME = [(20, 30), (3000, 2000), (448, 896), (4000, 60), (60, 1500), (700, 700), (1800, 900)]  # last two: ties won by more tiles
# the last: linebench's tiny InternVL (112 px tiles of 4x4 tokens), through the same code
PARAMS = [{}, {"max_tiles": 6}, {"min_tiles": 3, "max_tiles": 9}, {"max_tiles": 1}, {"max_tiles": 6, "tile": 112, "tile_tokens": 16}]


def processor(lay):
    p = lay.params
    return GotOcr2ImageProcessorPil(
        size={"height": p["tile"], "width": p["tile"]}, crop_to_patches=True, min_patches=p["min_tiles"], max_patches=p["max_tiles"],
        resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )


def prompt_text(num_patches: int, tokens: int = TOKENS) -> str:
    stand_in = SimpleNamespace(start_image_token="<img>", end_image_token="</img>", image_token="<IMG_CONTEXT>", image_seq_length=tokens)
    return InternVLProcessor.replace_image_token(stand_in, {"num_patches": [num_patches]}, 0)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("canvas", CANVASES + EXTREME)
def test_internvl_token_count_and_text_match_processor(canvas, params):
    lay = layout("internvl", canvas, **params)
    proc = processor(lay)
    out = proc(images=[Image.new("RGB", canvas)], return_tensors="np")
    n = int(out["num_patches"][0])
    tile, tokens = lay.params["tile"], lay.params["tile_tokens"]
    side = int(round(tokens**0.5))
    assert out["pixel_values"].shape == (n, 3, tile, tile)
    assert proc.get_number_of_image_patches(canvas[1], canvas[0], {"crop_to_patches": True}) == n
    assert len(lay.grids) == n and all(g.shape == (side, side) and not g.newline for g in lay.grids)
    assert lay.num_tokens == lay.num_placeholders == n * tokens
    assert "".join(g.before + "<IMG_CONTEXT>" * g.size for g in lay.grids) + lay.after == prompt_text(n, tokens)
    if n > 1:
        assert lay.grids[-1].label == "thumbnail"


def test_internvl_tiling_matches_got_ocr2_on_random_canvases():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    rng = np.random.default_rng(5)
    sizes = [tuple(int(v) for v in rng.integers(1, 5000, size=2)) for _ in range(300)]
    sizes += [tuple(int(v) for v in np.exp(rng.uniform(0, np.log(6000), size=2))) for _ in range(300)]
    sizes += [(k * 448, j * 448) for k in range(1, 7) for j in range(1, 7)] + [(k * 300, j * 300) for k in range(1, 7) for j in range(1, 7)]
    for params in [{}, {"max_tiles": 6}, {"min_tiles": 4, "max_tiles": 12}, {"max_tiles": 24}, {"max_tiles": 1}, {"max_tiles": 6, "tile": 112, "tile_tokens": 16}]:
        p = layout("internvl", (448, 448), **params).params
        proc = processor(layout("internvl", (448, 448), **params))
        for w, h in sizes:
            lay = layout("internvl", (w, h), **params)
            assert len(lay.grids) == proc.get_number_of_image_patches(h, w, {}), (params, (w, h))
            if len(lay.grids) > 1:
                cols, rows = get_optimal_tiled_canvas((h, w), (p["tile"], p["tile"]), p["min_tiles"], p["max_tiles"])
                assert lay.grids[-2].label == f"tile {rows},{cols}"


def test_internvl_documented_counts_and_parameters():
    assert layout("internvl", (448, 448)).num_tokens == 256  # 1x1: no thumbnail
    assert [g.label for g in layout("internvl", (640, 360)).grids] == ["tile 1,1", "tile 1,2", "thumbnail"]
    assert layout("internvl", (1000, 180)).num_tokens == 7 * 256  # 6x1 tiles + thumbnail
    assert layout("internvl:max_tiles=6", (1000, 180)).profile == "internvl:max_tiles=6"
    assert layout("internvl:max_tiles=12:min_tiles=1", (1000, 180)).profile == "internvl"
    with pytest.raises(UsageError):
        layout("internvl:max_tiles=0", (448, 448))
    assert layout("internvl:tile=448:tile_tokens=256", (640, 360)).profile == "internvl"  # the defaults
    tiny = layout("internvl:max_tiles=6:tile=112:tile_tokens=16", (640, 480))
    assert [g.label for g in tiny.grids][-2:] == ["tile 2,3", "thumbnail"] and tiny.num_tokens == 7 * 16
    assert np.allclose(np.diff(tiny.grids[-1].x_edges), 28 * 640 / 112)  # each thumbnail token covers 28 of its 112 px
    for bad in ("tile_tokens=15", "tile_tokens=0", "tile=0", "tile=4:tile_tokens=25"):
        with pytest.raises(UsageError, match="tile_tokens"):
            layout(f"internvl:{bad}", (448, 448))


def _vision(tile: int = TILE):
    """Tiny InternVLModel on `tile` px tiles whose get_image_features returns, per token, the brightness
    of its patches."""
    cfg = InternVLConfig(
        vision_config=dict(
            hidden_size=4, num_hidden_layers=0, num_attention_heads=1, intermediate_size=8, image_size=tile, patch_size=14
        ),
        text_config=dict(
            model_type="qwen2", hidden_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1, intermediate_size=8, vocab_size=16
        ),
    )
    assert cfg.downsample_ratio == 0.5 and cfg.vision_feature_select_strategy == "default" and cfg.vision_feature_layer == -1
    model = InternVLModel(cfg).eval()
    emb = model.vision_tower.embeddings
    with torch.no_grad():
        emb.patch_embeddings.projection.weight.fill_(1.0 / (3 * 14 * 14))
        emb.patch_embeddings.projection.bias.zero_()
        emb.cls_token.zero_()
        emb.position_embeddings.zero_()
    model.multi_modal_projector = torch.nn.Identity()

    def features(pixel_values: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model.get_image_features(
                pixel_values=torch.as_tensor(pixel_values), vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            )
        feats = out.pooler_output  # [tiles, 256, 4 * hidden], in the order the LLM receives them
        assert feats.shape[1] == (tile // 28) ** 2
        return feats.mean(-1).reshape(-1).numpy()

    return SimpleNamespace(model=model, features=features)


@pytest.fixture(scope="module")
def vision():
    return _vision()


def test_internvl_pixel_shuffle_merges_2x2_blocks_in_raster_order(vision):
    """Patch (i, j) of a tile carries the value i * 32 + j: token k must hold patches (2r..2r+1, 2c..2c+1)
    with (r, c) = divmod(k, 16)."""
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 32, 32, 1).repeat(1, 1, 1, 2)
    y = vision.model.pixel_shuffle(x, scale_factor=vision.model.config.downsample_ratio).reshape(1, -1, 8)[0]
    for k in range(TOKENS):
        r, c = divmod(k, 16)
        want = {(2 * r + a) * 32 + 2 * c + b for a in (0, 1) for b in (0, 1)}
        assert set(y[k].int().tolist()) == want


TINY = {"max_tiles": 6, "tile": 112, "tile_tokens": 16}  # linebench's tiny InternVL


@pytest.fixture(scope="module")
def vision_112():
    return _vision(112)


@pytest.mark.parametrize("params", [{}, {"max_tiles": 6}, TINY], ids=["default", "max_tiles=6", "tiny"])
@pytest.mark.parametrize("canvas", CANVASES + [(448, 896), (3000, 2000), (60, 1500)])
def test_internvl_marker_lands_in_mapped_token(canvas, params, request):
    vision = request.getfixturevalue("vision_112" if params.get("tile") == 112 else "vision")
    lay = layout("internvl", canvas, **params)
    proc = processor(lay)
    radius = marker_radius(lay)
    centers = marker_positions(lay, 3, radius, seed=sum(canvas))
    out = proc(images=[marker_image(canvas, c, radius) for c in centers], return_tensors="np")
    assert out["num_patches"].tolist() == [len(lay.grids)] * len(centers)
    flat = vision.features(out["pixel_values"]).reshape(len(centers), -1)  # images one after the other
    for c, f in zip(centers, flat):
        brightness = lay.split(f)
        assert_marker_lands(lay, brightness, c, radius)
