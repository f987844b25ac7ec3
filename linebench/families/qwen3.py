"""Qwen3-VL (`Qwen3VLForConditionalGeneration`) and Qwen3.5 (`Qwen3_5ForConditionalGeneration`): 16 px
patches merged 2x2 at a size between min_pixels and max_pixels (transformers' `Qwen2VLImageProcessor`
behind `Qwen3VLProcessor`), interleaved mRoPE. Qwen3-VL adds DeepStack (features of early vision
blocks added into the first decoder layers' hidden states at the image tokens; attention untouched).
Qwen3.5 has no processor of its own: transformers maps `qwen3_5` to `Qwen3VLProcessor` with the same
image processor, so its map profile is Qwen3-VL's (`qwen3-vl`). Its decoder has Gated DeltaNet
(linear-attention) layers between its full-attention ones: those layers have `linear_attn` and no
`self_attn`, so the capture leaves them out (KLAL has no softmax over keys to supervise there)."""

from __future__ import annotations


from ..errors import UsageError
from ..grids import layout
from .base import SIDE, Family, register, small_text, tokenizer
from .qwen import loader, processor_class

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
PATCH3 = 16  # Qwen3-VL / Qwen3.5 vision patch (Qwen2.5-VL's is 14)


def profile(processor) -> str:
    """`qwen3-vl:min_pixels=..:max_pixels=..` from the image processor (16 px patches merged 2x2)."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    lo = size.get("shortest_edge", getattr(ip, "min_pixels", None))
    hi = size.get("longest_edge", getattr(ip, "max_pixels", None))
    patch, merge = getattr(ip, "patch_size", None), getattr(ip, "merge_size", None)
    if patch != PATCH3 or merge != 2 or lo is None or hi is None:
        raise UsageError(f"{type(processor).__name__}: expected 16 px patches merged 2x2 with min/max pixels, got patch {patch}, merge {merge}, size {dict(size)}")
    return layout(f"qwen3-vl:min_pixels={int(lo)}:max_pixels={int(hi)}", (448, 448)).profile


load_processor = loader("Qwen3VLProcessor")  # Qwen3VLProcessor without a video processor (no torchvision)


def _tiny_parts():
    """The tokenizer, its vision token ids and the processor shared by both tiny models: every
    224x224 canvas is 14x14 patches of 16 px, 7x7 = 49 image tokens (min = max pixels)."""
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLProcessor

    tok = tokenizer(PLACEHOLDER)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    pixels = SIDE * SIDE
    image_proc = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=PATCH3, merge_size=2, temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )  # fmt: skip
    proc = processor_class(Qwen3VLProcessor)(image_processor=image_proc, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
    tokens = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    return tok, tokens, proc


def _vision(**over):
    """A 2-block vision tower of width 64 (16 px patches, 2x2 merge; a 16x16 learned position grid)."""
    cfg = dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128, patch_size=PATCH3,
        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256,
    )  # fmt: skip
    cfg.update(over)
    return cfg


def build_tiny():
    """A small Qwen3-VL: 4 decoder layers (interleaved mRoPE, q/k norms, GQA 4:2), DeepStack from
    both vision blocks into decoder layers 0 and 1; 49 image tokens at 224x224."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok, tokens, proc = _tiny_parts()
    # head_dim 32: 16 rotary frequencies split T/H/W 6/5/5, interleaved (the checkpoints' 24/20/20 of 64)
    text = small_text(tok, max_position_embeddings=1024, rope_parameters={"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True, "rope_theta": 10000.0})
    cfg = Qwen3VLConfig(text_config=text, vision_config=_vision(deepstack_visual_indexes=[0, 1]), tie_word_embeddings=True, **tokens)
    return Qwen3VLForConditionalGeneration(cfg), proc


def build_tiny_qwen3_5():
    """A small Qwen3.5: 4 decoder layers, Gated DeltaNet (linear attention) at 0 and 2, gated full
    attention at 1 and 3 (partial interleaved mRoPE, a quarter of each head rotated, as the
    checkpoints); the same processor as Qwen3-VL's: 49 image tokens at 224x224."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    tok, tokens, proc = _tiny_parts()
    # head_dim 32 x 0.25 = 8 rotary dims: 4 frequencies split T/H/W 2/1/1 (the checkpoints' 11/11/10 of 32)
    rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True, "rope_theta": 10000.0, "partial_rotary_factor": 0.25}
    text = small_text(
        tok, max_position_embeddings=1024, rope_parameters=rope,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        linear_conv_kernel_dim=4, linear_key_head_dim=32, linear_value_head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4,
    )  # fmt: skip
    cfg = Qwen3_5Config(text_config=text, vision_config=_vision(), tie_word_embeddings=True, **tokens)
    return Qwen3_5ForConditionalGeneration(cfg), proc


PROCESSORS = ("Qwen3VLProcessor", "TinyQwen3VLProcessor")

register(Family(
    name="qwen3-vl", label="Qwen3-VL", model_types=("qwen3_vl",), processors=PROCESSORS, profile=profile,
    build_tiny=build_tiny, load_processor=load_processor, order=30,
    checked="maps = image tokens on 3 canvases (Qwen3VLProcessor); KLAL = eager reference (interleaved mRoPE, DeepStack); train, LoRA, resume, eval --attention (tests/test_families.py, tests/test_family_qwen3.py)",
))  # fmt: skip
# Qwen3.5 reads the same processor (Qwen3VLProcessor): for_processor finds Qwen3-VL's record first,
# whose profile is the same; this record is what `qwen3_5` checkpoints and `tiny-qwen3.5` resolve to.
register(Family(
    name="qwen3.5", label="Qwen3.5", model_types=("qwen3_5",), processors=PROCESSORS, profile=profile, map_profile="qwen3-vl",
    build_tiny=build_tiny_qwen3_5, load_processor=load_processor, order=31,
    checked="map profile qwen3-vl (same processor); linear-attention layers left out; KLAL over the full-attention layers = eager reference; train, LoRA, resume, eval --attention (tests/test_family_qwen3.py, tests/test_families.py)",
))  # fmt: skip
