"""LLaVA-NeXT (`LlavaNextForConditionalGeneration`) and LLaVA-OneVision
(`LlavaOnevisionForConditionalGeneration`): "anyres" crops plus a squashed base image, the crops'
features unpadded, a learned newline token after each row of them. The newline tokens are image tokens
in input_ids (the processor writes one `<image>` for each), so a map is expanded to them
(`Layout.expand`): P = 0 at a newline, which carries no picture."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from ..profiles.llava_next import pinpoints
from .base import PATCH, Family, register, small_text, tokenizer

NEXT_CROP = 56  # the tiny LLaVA-NeXT: CLIP on 56 px crops (4x4 patches of 14 px), crops 1x2 .. 3x1 of 56
OV_CROP = 58  # the tiny OneVision: SigLIP on 58 px crops (4x4 patches of 14 px and 2 px unseen, as 384 px leave 6)


def _side(size, *keys) -> int | None:
    size = size or {}
    for key in keys:
        if size.get(key):
            return int(size[key])
    return None


def _pinpoints(ip) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in p) for p in (getattr(ip, "image_grid_pinpoints", None) or ()))


def _check_pinpoints(processor, name: str, crop: int) -> None:
    got = _pinpoints(processor.image_processor)
    if got != pinpoints(name, crop):
        raise UsageError(
            f"{type(processor).__name__}: image_grid_pinpoints {[list(p) for p in got][:6]}{'...' if len(got) > 6 else ''} are not the "
            f"{name} grid of {crop} px crops the map profile models"
        )


def next_profile(processor) -> str:
    """`llava-next` with the crop read from the image processor and the patch from the processor."""
    ip, cls = processor.image_processor, type(processor).__name__
    crop = _side(getattr(ip, "crop_size", None), "height")
    size = _side(getattr(ip, "size", None), "shortest_edge", "height")
    patch = getattr(processor, "patch_size", None)
    extra = int(getattr(processor, "num_additional_image_tokens", 0) or 0) - (processor.vision_feature_select_strategy == "default")
    if not (crop and patch and size == crop) or extra:
        raise UsageError(f"{cls}: expected square crops the size of the resized base image, a patch size and one feature per patch (crop={crop}, size={size}, patch={patch}, extra tokens={extra})")
    _check_pinpoints(processor, "llava-next", crop)
    return layout(f"llava-next:crop={crop}:patch={int(patch)}", (448, 448)).profile


def ov_profile(processor) -> str:
    """`llava-onevision` with the crop and the pinpoints from the image processor, the features per
    crop from the processor's num_image_tokens, anyres_max from its vision_aspect_ratio."""
    ip, cls = processor.image_processor, type(processor).__name__
    size = getattr(ip, "size", None) or {}
    crop = _side(size, "height")
    tokens = int(getattr(processor, "num_image_tokens", 0) or 0)
    n = math.isqrt(tokens)
    ratio = str(getattr(processor, "vision_aspect_ratio", ""))
    if not (crop and crop == _side(size, "width") and n and n * n == tokens and ratio.startswith("anyres_max_")):
        raise UsageError(f"{cls}: cannot read the crop, the features per crop and anyres_max from the processor (size={dict(size)}, num_image_tokens={tokens}, vision_aspect_ratio={ratio!r})")
    if processor.vision_feature_select_strategy != "full":
        raise UsageError(f"{cls}: vision_feature_select_strategy {processor.vision_feature_select_strategy!r} is not modelled (OneVision uses 'full')")
    patch = crop // n  # the vision tower's patch, where the strip it leaves unseen is narrower than n px (384 // 27 = 14)
    if crop // patch != n:
        raise UsageError(f"{cls}: {tokens} features per {crop} px crop is not a whole patch size")
    _check_pinpoints(processor, "llava-onevision", crop)
    return layout(f"llava-onevision:anyres_max={int(ratio.removeprefix('anyres_max_'))}:crop={crop}:patch={patch}", (448, 448)).profile


def ov_processor_class():
    """LLaVA-OneVision's processor without a video processor (transformers' needs torchvision; images
    never use it; real checkpoints load with AutoProcessor where torchvision is)."""
    from transformers import LlavaOnevisionProcessor

    class TinyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor, the tokenizer (with the chat template) and the processor's own
            settings (ProcessorMixin's save would fail on the missing video processor; Trainer
            checkpoints call this); `ov_load_processor` rebuilds the processor from them."""
            self.image_processor.save_pretrained(save_directory)
            own = {k: getattr(self, k) for k in ("num_image_tokens", "vision_feature_select_strategy", "vision_aspect_ratio")}
            Path(save_directory, "processor_config.json").write_text(json.dumps({**own, "processor_class": "LlavaOnevisionProcessor"}, indent=1) + "\n")
            return self.tokenizer.save_pretrained(save_directory)

    return TinyLlavaOnevisionProcessor


def ov_load_processor(folder: Path):
    """The processor from its image processor, tokenizer and processor_config.json (no video processor)."""
    from transformers import AutoTokenizer, LlavaOnevisionImageProcessorPil

    try:
        own = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        own = {}
    keys = ("num_image_tokens", "vision_feature_select_strategy", "vision_aspect_ratio")
    tok = AutoTokenizer.from_pretrained(folder)
    return ov_processor_class()(
        image_processor=LlavaOnevisionImageProcessorPil.from_pretrained(folder), tokenizer=tok, video_processor=None,
        chat_template=tok.chat_template, **{k: own[k] for k in keys if k in own},
    )  # fmt: skip


def _vision(model_type: str, crop: int) -> dict:
    return dict(model_type=model_type, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=crop, patch_size=PATCH)


def build_tiny_next():
    """A small LLaVA-NeXT: CLIP of width 64 on 56 px crops (4x4 features), the LLaVA-NeXT pinpoints
    scaled to 56 px crops, a small Llama. A 224x224 canvas: base 4x4 + 2x2 crops (8x8 features + 8
    newlines) = 88 image tokens; 640x480: 16 + 6x8 + 6 = 70."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    tok = tokenizer("<image>")
    grid = [list(p) for p in pinpoints("llava-next", NEXT_CROP)]
    cfg = LlavaNextConfig(
        vision_config=_vision("clip_vision_model", NEXT_CROP), text_config=dict(model_type="llama", **small_text(tok, max_position_embeddings=1024)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid, vision_feature_select_strategy="default",
        vision_feature_layer=-1, image_seq_length=(NEXT_CROP // PATCH) ** 2, tie_word_embeddings=True,
    )  # fmt: skip
    image_proc = LlavaNextImageProcessorPil(size={"shortest_edge": NEXT_CROP}, crop_size={"height": NEXT_CROP, "width": NEXT_CROP}, image_grid_pinpoints=grid)
    proc = LlavaNextProcessor(
        image_processor=image_proc, tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    )  # fmt: skip
    return LlavaNextForConditionalGeneration(cfg), proc


def build_tiny_ov():
    """A small LLaVA-OneVision: SigLIP of width 64 on 58 px crops (4x4 features), the OneVision
    pinpoints (1..6 x 1..6 crops) scaled to 58 px, anyres_max_9, a small Qwen2. A 224x224 canvas: base
    4x4 + 4x4 crops (16x16 features resized to 12x12 by anyres_max_9, + 12 newlines) = 172 image tokens."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessorPil

    tok = tokenizer("<image>", extra_special=("<video>",))
    grid = [list(p) for p in pinpoints("llava-onevision", OV_CROP)]
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    cfg = LlavaOnevisionConfig(
        vision_config=_vision("siglip_vision_model", OV_CROP), text_config=dict(model_type="qwen2", **small_text(tok, max_position_embeddings=1024)),
        image_token_index=ids["<image>"], video_token_index=ids["<video>"], image_grid_pinpoints=grid, vision_feature_select_strategy="full",
        vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9", tie_word_embeddings=True,
    )  # fmt: skip
    image_proc = LlavaOnevisionImageProcessorPil(size={"height": OV_CROP, "width": OV_CROP}, image_grid_pinpoints=grid, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = ov_processor_class()(
        image_processor=image_proc, tokenizer=tok, video_processor=None, num_image_tokens=(OV_CROP // PATCH) ** 2,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", chat_template=tok.chat_template,
    )  # fmt: skip
    return LlavaOnevisionForConditionalGeneration(cfg), proc


CHECKED = (
    "maps = image tokens on 3 canvases (base + unpadded crops{}, newline tokens with P = 0); KLAL = eager reference; train, LoRA, "
    "resume, eval --attention (tests/test_families.py, tests/test_family_llava_next.py)"
)
register(Family(
    name="llava-next", label="LLaVA-NeXT", model_types=("llava_next",), processors=("LlavaNextProcessor",), profile=next_profile,
    build_tiny=build_tiny_next, order=50, checked=CHECKED.format(""),
))  # fmt: skip
register(Family(
    name="llava-onevision", label="LLaVA-OneVision", model_types=("llava_onevision",),
    processors=("LlavaOnevisionProcessor", "TinyLlavaOnevisionProcessor"), profile=ov_profile, build_tiny=build_tiny_ov,
    load_processor=ov_load_processor, order=51, checked=CHECKED.format(" resized by anyres_max"),
))  # fmt: skip
