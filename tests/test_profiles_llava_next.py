"""`llava-next` and `llava-onevision` vs the real transformers processors and the real model-side packing.

Token counts come from the real processors (a tiny WordLevel tokenizer stands in for the checkpoint's).
The marker tests run the real image processor, measure the marker per 14 px patch of every crop in
`pixel_values`, and feed those per-patch values as fake features through the real
`LlavaNextModel.pack_image_features` / `LlavaOnevisionModel.pack_image_features` (called on a stand-in
that carries only the model config, so no weights are built): the token order (base first, unpadding,
OneVision's bilinear downsampling, newline positions) is the transformers code's, not a copy of it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from linebench.profiles import llava_next as prof
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image, patch_means

pytest.importorskip("transformers")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    LlavaNextConfig,
    LlavaNextImageProcessorPil,
    LlavaNextModel,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionModel,
    LlavaOnevisionProcessor,
    PreTrainedTokenizerFast,
)
from transformers.processing_utils import ProcessorMixin  # noqa: E402

RADIUS = 4.0
IMAGE_ID = 1
NAMES = ["llava-next", "llava-onevision"]
# linebench's tiny models: the same profiles on small crops (pinpoints scaled), read from their processors
TINY = {"llava-next": "llava-next:crop=56", "llava-onevision": "llava-onevision:crop=58"}
PROFILES = NAMES + list(TINY.values())
# canvases for the counts: the shared ones, tiny, huge, thin, and OneVision grids above anyres_max_9
COUNT_CANVASES = CANVASES + [(20, 30), (3000, 2000), (180, 1000), (2000, 120), (1600, 1600), (2304, 1200)]


# --------------------------------------------------------------------------- the real processors


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "<image>": IMAGE_ID, "<video>": 2, "hi": 3}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", additional_special_tokens=["<image>", "<video>"])


def next_image_processor(crop: int = 336):
    # llava-hf/llava-v1.6-mistral-7b-hf preprocessor_config.json (pinpoints are the class default); other crops: scaled pinpoints
    pins = {} if crop == 336 else {"image_grid_pinpoints": [list(p) for p in prof.pinpoints("llava-next", crop)]}
    return LlavaNextImageProcessorPil(size={"shortest_edge": crop}, crop_size={"height": crop, "width": crop}, resample=3, **pins)


def ov_image_processor(crop: int = 384):
    # llava-hf/llava-onevision-qwen2-7b-ov-hf preprocessor_config.json (pinpoints are the class default); other crops: scaled pinpoints
    pins = {} if crop == 384 else {"image_grid_pinpoints": [list(p) for p in prof.pinpoints("llava-onevision", crop)]}
    return LlavaOnevisionImageProcessorPil(size={"height": crop, "width": crop}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3, **pins)


def image_processor(profile: str):
    lay = layout(profile, (448, 448))
    return (next_image_processor if profile.startswith("llava-next") else ov_image_processor)(lay.params["crop"])


@pytest.fixture(scope="module")
def processors():
    tok = tiny_tokenizer()
    # processor_config.json of llava-hf/llava-v1.6-mistral-7b-hf
    nxt = {
        crop: LlavaNextProcessor(
            image_processor=next_image_processor(crop),
            tokenizer=tok,
            patch_size=14,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
        )
        for crop in (336, 56)
    }
    # The OneVision processor insists on a video processor, and without torchvision transformers does
    # not export BaseVideoProcessor, so its class check fails; that check alone is skipped here (the
    # video processor is never used for images). processor_config.json of llava-onevision-qwen2-7b-ov-hf.
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ProcessorMixin, "check_argument_for_proper_class", lambda self, name, arg: type(arg))
        ov = {
            crop: LlavaOnevisionProcessor(
                image_processor=ov_image_processor(crop),
                tokenizer=tok,
                video_processor=LlavaOnevisionVideoProcessor(),
                num_image_tokens=(crop // 14) ** 2,
                vision_feature_select_strategy="full",
                vision_aspect_ratio="anyres_max_9",
            )
            for crop in (384, 58)
        }
    return {"llava-next": nxt[336], "llava-onevision": ov[384], TINY["llava-next"]: nxt[56], TINY["llava-onevision"]: ov[58]}


def test_pinpoints_are_the_transformers_defaults():
    as_tuples = lambda pp: tuple(tuple(p) for p in pp)  # noqa: E731
    assert prof.NEXT_PINPOINTS == as_tuples(LlavaNextImageProcessorPil.image_grid_pinpoints)
    assert prof.NEXT_PINPOINTS == as_tuples(LlavaNextConfig().image_grid_pinpoints)
    assert prof.OV_PINPOINTS == as_tuples(LlavaOnevisionImageProcessorPil.image_grid_pinpoints)
    assert prof.OV_PINPOINTS == as_tuples(LlavaOnevisionConfig().image_grid_pinpoints)


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("canvas", COUNT_CANVASES)
def test_placeholder_count_matches_the_processor_input_ids(name, canvas, processors):
    try:
        lay = layout(name, canvas)
    except UsageError as e:  # the tiny LLaVA-NeXT on 2000x120: 1x3 crops of 56 px, 4 feature rows unpadded to none
        assert name not in NAMES and "too thin" in str(e)
        return
    out = processors[name](text="hi <image> hi", images=[Image.new("RGB", canvas)], return_tensors="np")
    assert int((out["input_ids"] == IMAGE_ID).sum()) == lay.num_placeholders
    crops_h, crops_w = (int(v) for v in lay.grids[1].label.split()[1].split("x"))  # "tiles 2x3"
    assert out["pixel_values"].shape[1] == 1 + crops_h * crops_w  # the base image + the crops


@pytest.mark.parametrize("name", PROFILES)
def test_placeholder_count_matches_the_processor_for_many_sizes(name, processors):
    rng = np.random.default_rng(5)
    sizes = []
    while len(sizes) < 400:
        h, w = (int(v) for v in np.exp(rng.uniform(np.log(8), np.log(5000), 2)))
        try:
            lay = layout(name, (w, h))
        except UsageError:  # too thin to keep any tile feature
            continue
        sizes.append(((h, w), lay.num_placeholders))
    got = processors[name]._get_num_multimodal_tokens(image_sizes=[s for s, _ in sizes])["num_image_tokens"]
    assert got == [n for _, n in sizes]


def test_known_counts():
    want = {
        "llava-next": {(448, 448): (2880, 2928), (640, 360): (1920, 1948), (1000, 180): (1440, 1452)},
        "llava-onevision": {(448, 448): (3645, 3699), (640, 360): (2025, 2052), (1000, 180): (1944, 1959), (3000, 2000): (7263, 7329)},
    }
    for name, table in want.items():
        for canvas, (tokens, placeholders) in table.items():
            lay = layout(name, canvas)
            assert (lay.num_tokens, lay.num_placeholders) == (tokens, placeholders), (name, canvas, lay.describe())
    assert layout("llava-onevision", (3000, 2000)).grids[1].shape == (66, 99)  # 108x162 resized by anyres_max_9
    assert layout("llava-onevision:anyres_max=100", (3000, 2000)).grids[1].shape == (108, 162)  # never resized
    assert layout("llava-next:crop=336:patch=14", (448, 448)).profile == "llava-next"  # the defaults
    assert layout("llava-onevision:anyres_max=9:crop=384:patch=14", (448, 448)).profile == "llava-onevision"
    assert prof.pinpoints("llava-next", 336) == prof.NEXT_PINPOINTS and prof.pinpoints("llava-onevision", 384) == prof.OV_PINPOINTS
    tiny = {n: layout(p, (224, 224)) for n, p in TINY.items()}  # the tiny models' 224 px canvas: a few dozen tokens
    assert {n: (lay.num_tokens, lay.num_placeholders) for n, lay in tiny.items()} == {"llava-next": (80, 88), "llava-onevision": (160, 172)}


# --------------------------------------------------------------------------- geometry of the layout


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("canvas", COUNT_CANVASES)
def test_token_regions_are_sensible(name, canvas):
    lay = layout(name, canvas)
    w, h = canvas
    base, tiles = lay.grids
    n = 24 if name == "llava-next" else 27
    assert (base.shape, base.label, base.newline) == ((n, n), "base", False)
    assert (base.x_edges[0], base.x_edges[-1], base.y_edges[0], base.y_edges[-1]) == (0, w, 0, h)
    assert tiles.newline and tiles.label.startswith("tiles")
    for g in lay.grids:
        assert np.all(np.diff(g.x_edges) > 0) and np.all(np.diff(g.y_edges) > 0)
    # the unpadded tile grid covers the canvas up to less than one token of padding (or cut-off image)
    dx, dy = np.diff(tiles.x_edges).max(), np.diff(tiles.y_edges).max()
    assert abs(tiles.x_edges[0]) < dx and abs(tiles.x_edges[-1] - w) < dx
    assert abs(tiles.y_edges[0]) < dy and abs(tiles.y_edges[-1] - h) < dy
    # base tokens: 14 model px each, the last one also takes the crop's unseen strip (OneVision)
    cell = np.diff(base.x_edges) * (384 if n == 27 else 336) / w
    assert np.allclose(cell[:-1], 14) and np.isclose(cell[-1], 14 + (6 if n == 27 else 0))


def test_onevision_unseen_strips_go_to_the_nearest_patch():
    e = prof.feature_edges(2, 384, 14)
    assert len(e) == 55 and e[0] == 0 and e[-1] == 768
    assert e[26] == 364 and e[27] == 384 - 3 and e[28] == 398  # the 6 px after 378 split 3 / 3
    assert np.array_equal(prof.feature_edges(3, 336, 14), 14.0 * np.arange(73))  # CLIP-336: no gap


@pytest.mark.parametrize("name", NAMES)
def test_expand_puts_fill_at_the_newline_tokens(name):
    lay = layout(name, (640, 360))
    base, tiles = lay.grids
    p = np.arange(1, lay.num_tokens + 1, dtype=np.float64)
    e = lay.expand(p, fill=-1)
    assert e.shape == (lay.num_placeholders,) and lay.num_placeholders == lay.num_tokens + tiles.rows
    assert np.array_equal(e[: base.size], p[: base.size])  # the base image has no newline
    t = e[base.size :].reshape(tiles.rows, tiles.cols + 1)
    assert np.all(t[:, -1] == -1) and np.array_equal(t[:, :-1].ravel(), p[base.size :])
    assert np.array_equal(lay.placeholder_index() == -1, e == -1)


def test_thin_canvas_and_bad_parameter_are_refused():
    with pytest.raises(UsageError, match="too thin"):
        layout("llava-next", (1, 1000))
    with pytest.raises(UsageError, match="anyres_max"):
        layout("llava-onevision:anyres_max=0", (448, 448))
    for bad in ("llava-next:patch=0", "llava-onevision:crop=10:patch=14"):
        with pytest.raises(UsageError, match="patch <= crop"):
            layout(bad, (448, 448))


# --------------------------------------------------------------------------- markers through the real code


def _model_stub(name, crop=None):
    """An object with the real model's config, enough for the real pack_image_features."""
    pins = {} if crop is None else {"image_grid_pinpoints": [list(p) for p in prof.pinpoints(name, crop)]}
    if name == "llava-next":
        cfg = LlavaNextConfig(vision_config={"model_type": "clip_vision_model", "image_size": crop or 336, "patch_size": 14}, **pins)
    else:
        cfg = LlavaOnevisionConfig(vision_config={"model_type": "siglip_vision_model", "image_size": crop or 384, "patch_size": 14}, **pins)
    return SimpleNamespace(config=cfg)


def packed_brightness(name, lay, img, image_processor):
    """The marker's brightness per visual token, in the model's LLM order, via the real packing code;
    also checks that the newline tokens sit where the layout says."""
    out = image_processor(images=[img], return_tensors="np")
    pv, sizes = out["pixel_values"][0], torch.tensor(np.asarray(out["image_sizes"]))
    side, n = pv.shape[-1], pv.shape[-1] // 14
    # one feature per 14 px patch (what the vision tower sees), channel 1 flags newline tokens
    bright = np.stack([patch_means(crop, 14, n, n).ravel() for crop in pv])
    feats = torch.tensor(np.stack([bright, np.zeros_like(bright)], axis=-1), dtype=torch.float32)
    newline = torch.tensor([0.0, 1.0])
    stub = _model_stub(name.split(":")[0], side)
    assert stub.config.vision_config.image_size == side
    if name.startswith("llava-next"):
        packed, _ = LlavaNextModel.pack_image_features(stub, [feats], sizes, "default", image_newline=newline)
    else:
        packed, _ = LlavaOnevisionModel.pack_image_features(stub, [feats], sizes, image_newline=newline, vision_aspect_ratio="anyres_max_9")
    seq = packed[0].numpy()
    assert seq.shape[0] == lay.num_placeholders
    is_nl = seq[:, 1] == 1.0
    assert np.array_equal(is_nl, lay.placeholder_index() == -1)
    return lay.split(seq[~is_nl, 0])


MARKER_CASES = [(n, c) for n in NAMES for c in CANVASES + [(1200, 300)]] + [
    ("llava-onevision", (2304, 1500)),  # 6x4 crops, unpadded 108x162 -> resized by anyres_max_9
] + [(n, c) for n in TINY.values() for c in ((224, 224), (640, 480), (480, 640))]  # the tiny models' crops


@pytest.mark.parametrize("name,canvas", MARKER_CASES)
def test_marker_lands_in_mapped_token(name, canvas):
    lay = layout(name, canvas)
    proc = image_processor(name)
    big = name.startswith("llava-onevision") and lay.grids[1].shape != layout(name, canvas, anyres_max=10**6).grids[1].shape
    # bilinear resizing mixes neighbouring features, so a marker there must sit well inside one token
    r = 10.0 if big and name in NAMES else RADIUS
    for c in clear_positions(lay, 3, r, seed=sum(canvas) % 997, purity=0.99 if big else 0.9):
        assert_marker_lands(lay, packed_brightness(name, lay, marker_image(canvas, c, r), proc), c, r)
