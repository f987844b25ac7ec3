"""LLaVA-1.5 (`LlavaForConditionalGeneration`): CLIP patches, one grid, resize + centre crop."""

from __future__ import annotations

from ..errors import UsageError
from ..grids import layout
from .base import PATCH, SIDE, Family, register, small_text, tokenizer


def profile(processor) -> str:
    name = type(processor).__name__
    ip = processor.image_processor
    size = (getattr(ip, "size", None) or {}).get("shortest_edge")
    crop = getattr(ip, "crop_size", None) or {}
    patch = getattr(processor, "patch_size", None)
    if not (size and patch) or (getattr(ip, "do_center_crop", True) and crop and crop.get("height") != size):
        raise UsageError(f"{name}: cannot read the resize/crop size and patch from the processor (size={ip.size}, crop={crop})")
    return layout(f"llava-1.5:side={size}:patch={patch}", (size, size)).profile


def build_tiny():
    """A small CLIP vision tower (224 px, 14 px patches: 16x16 = 256 image tokens) + a small Llama."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = tokenizer("<image>")
    text = LlamaConfig(**small_text(tok, max_position_embeddings=1024))
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=SIDE, patch_size=PATCH)
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", image_seq_length=(SIDE // PATCH) ** 2, projector_hidden_act="gelu",
    )  # fmt: skip
    image_proc = CLIPImageProcessorPil(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    proc = LlavaProcessor(
        image_processor=image_proc, tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    )  # fmt: skip
    return LlavaForConditionalGeneration(cfg), proc


register(Family(
    name="llava-1.5", label="LLaVA-1.5", model_types=("llava",), processors=("LlavaProcessor",), profile=profile,
    build_tiny=build_tiny, aliases=("tiny",),
    order=10, checked="maps = image tokens; KLAL = eager reference; train, LoRA, resume, eval --attention (tests/test_train.py, tests/test_eval.py)",
))  # fmt: skip
