"""LLaVA-NeXT and LLaVA-OneVision beyond tests/test_families.py: the newline tokens the processor puts
among the image tokens carry P = 0 (the map is expanded to them, never supervised as picture content)
and sit exactly where the model's own packing puts `image_newline`; several crops plus the base image
per picture; the profile read from the real checkpoints' processor settings (and refused, in one
line, for pinpoints it does not model)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY  # noqa: E402
from linebench.families import llava_next as fam  # noqa: E402
from linebench.grids import layout  # noqa: E402
from linebench.train import tiny  # noqa: E402

from family_util import grid_patch_rows  # noqa: E402

NAMES = ("llava-next", "llava-onevision")


@pytest.fixture(scope="module")
def folders(linebench_cache):
    return {name: tiny.cached(REGISTRY[name].tiny_name) for name in NAMES}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Two grid-patch rows on a 640x480 canvas (unpadded crops: fewer rows than the crop grid has)."""
    return grid_patch_rows(tmp_path_factory.mktemp("rows") / "d", n=2, seed=11)


def _next_processor(crop=336, pinpoints=None, strategy="default", extra=1):
    """llava-hf/llava-v1.6-mistral-7b-hf's processor settings (crop 336, the class's pinpoints) on the
    tiny tokenizer."""
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    tok = fam.tokenizer("<image>")
    pins = {"image_grid_pinpoints": pinpoints} if pinpoints else {}
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": crop}, crop_size={"height": crop, "width": crop}, **pins)
    return LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy=strategy, num_additional_image_tokens=extra)


def _ov_processor(crop=384, tokens=729, ratio="anyres_max_9", strategy="full"):
    """llava-hf/llava-onevision-qwen2-*-ov-hf's processor settings (384 px, 729 tokens per crop,
    anyres_max_9, the class's pinpoints), without the video processor."""
    from transformers import LlavaOnevisionImageProcessorPil

    tok = fam.tokenizer("<image>", extra_special=("<video>",))
    ip = LlavaOnevisionImageProcessorPil(size={"height": crop, "width": crop})
    return fam.ov_processor_class()(
        image_processor=ip, tokenizer=tok, video_processor=None, num_image_tokens=tokens, vision_feature_select_strategy=strategy,
        vision_aspect_ratio=ratio,
    )  # fmt: skip


def test_profiles_are_read_from_the_processors(folders):
    nxt, ov = REGISTRY["llava-next"].profile, REGISTRY["llava-onevision"].profile
    assert nxt(_next_processor()) == "llava-next" and ov(_ov_processor()) == "llava-onevision"  # the llava-hf checkpoints
    assert ov(_ov_processor(ratio="anyres_max_4")) == "llava-onevision:anyres_max=4"
    assert nxt(tiny.load_processor(folders["llava-next"])) == "llava-next:crop=56"
    assert ov(tiny.load_processor(folders["llava-onevision"])) == "llava-onevision:crop=58"
    # llava-hf/llava-next-72b-hf's pinpoints (up to 3x3 crops) are not the v1.6 grid the profile models
    with pytest.raises(UsageError, match="image_grid_pinpoints"):
        nxt(_next_processor(pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008], [1008, 1008]]))
    with pytest.raises(UsageError, match="one feature per patch"):
        nxt(_next_processor(strategy="full"))  # the CLS token kept: one image token more than the map
    with pytest.raises(UsageError, match="vision_feature_select_strategy"):
        ov(_ov_processor(strategy="default"))


@pytest.mark.parametrize("name", NAMES)
def test_newline_tokens_carry_no_target_and_sit_where_the_model_puts_them(name, folders, rows):
    """The collator's map has one value per image token: the profile's map in token order, and 0 at
    every newline token; the model's own packed features hold `image_newline` at exactly those
    positions (so a newline is never read as picture content)."""
    from transformers import AutoModelForImageTextToText

    from linebench.maps import attention_map
    from linebench.train.data import KLALCollator, as_example

    folder = folders[name]
    proc = tiny.load_processor(folder)
    collator = KLALCollator(proc)
    batch = collator([as_example(r) for r in rows])
    lay = layout(collator.profile, (640, 480))
    newline = lay.placeholder_index() == -1
    assert newline.sum() == lay.grids[1].rows > 0 and lay.num_placeholders > lay.num_tokens
    crops = [int(v) for v in lay.grids[1].label.split()[1].split("x")]  # "tiles 5x6"
    assert batch["pixel_values"].shape[1] == 1 + crops[0] * crops[1] > 2  # the base image + several crops
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    cfg = model.config
    kw = {"vision_aspect_ratio": cfg.vision_aspect_ratio} if name == "llava-onevision" else {}
    with torch.no_grad():
        packed = model.model.get_image_features(
            pixel_values=batch["pixel_values"], image_sizes=batch["image_sizes"], vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy, **kw,
        ).pooler_output  # fmt: skip
    for b, row in enumerate(rows):
        p = batch["klal_targets"][b][0].numpy()
        assert p.shape == (lay.num_placeholders,) == (int((batch["input_ids"][b] == collator.image_token_id).sum()),)
        assert np.all(p[newline] == 0) and np.allclose(p[~newline], attention_map(row, lay).values) and abs(p.sum() - 1) < 1e-5
        feats = packed[b] if isinstance(packed, (list, tuple)) else packed[b * lay.num_placeholders : (b + 1) * lay.num_placeholders]
        assert feats.shape[0] == lay.num_placeholders
        is_newline = (feats == model.model.image_newline).all(-1).numpy()
        assert np.array_equal(is_newline, newline)


def test_onevision_processor_saves_and_loads_without_a_video_processor(folders, tmp_path):
    proc = tiny.load_processor(folders["llava-onevision"])
    assert type(proc).__name__ == "TinyLlavaOnevisionProcessor" and proc.video_processor is None
    proc.save_pretrained(tmp_path)
    again = fam.ov_load_processor(tmp_path)
    assert (again.num_image_tokens, again.vision_aspect_ratio, again.vision_feature_select_strategy) == (16, "anyres_max_9", "full")
    assert REGISTRY["llava-onevision"].profile(again) == "llava-onevision:crop=58"
