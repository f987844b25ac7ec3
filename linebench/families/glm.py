"""GLM-4.1V (`Glm4vForConditionalGeneration`, model_type `glm4v`): Qwen2-VL-style dynamic resolution
with GLM's own smart_resize (the `glm-4.1v` map profile), 14 px patches merged 2x2 by a Conv2d, mRoPE
over half of each head's dimensions (partial rotary 0.5, GLM's interleaved rotation)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import PATCH, SIDE, Family, register, small_text, tokenizer

PLACEHOLDER = "<|begin_of_image|><|image|><|end_of_image|>"  # GLM-4.1V's chat template puts this where an image goes
SPECIAL = ("<|image|>", "<|video|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>")


def profile(processor) -> str:
    """`glm-4.1v` with the processor's min/max pixels (size shortest_edge / longest_edge)."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    shape = (getattr(ip, "patch_size", None), getattr(ip, "merge_size", None), getattr(ip, "temporal_patch_size", None))
    if shape != (14, 2, 2) or lo is None or hi is None:
        raise UsageError(
            f"{type(processor).__name__}: expected 14 px patches merged 2x2 (temporal patch 2) with size shortest_edge/longest_edge, "
            f"got patch/merge/temporal {shape}, size {dict(size)}"
        )
    return layout(f"glm-4.1v:min_pixels={int(lo)}:max_pixels={int(hi)}", (448, 448)).profile


def processor_class():
    """Glm4vProcessor without its video processor (transformers' needs torchvision; images never use it)."""
    from transformers.models.glm4v.processing_glm4v import Glm4vProcessor

    from .qwen import processor_class as without_video

    return without_video(Glm4vProcessor)


def load_processor(folder: Path):
    """The processor from its image processor and tokenizer (no video processor, no torchvision)."""
    from transformers import AutoTokenizer, Glm4vImageProcessorPil

    tok = AutoTokenizer.from_pretrained(folder)
    return processor_class()(image_processor=Glm4vImageProcessorPil.from_pretrained(folder), tokenizer=tok, video_processor=None, chat_template=tok.chat_template)


def build_tiny():
    """A small GLM-4.1V (14 px patches merged 2x2, mRoPE) at 224x224: 8x8 = 64 image tokens."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessorPil

    tok = tokenizer(PLACEHOLDER, extra_special=SPECIAL)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    text = small_text(tok, max_position_embeddings=1024, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "mrope_section": [2, 3, 3],
    })  # fmt: skip
    text.pop("head_dim")  # GLM's head_dim is hidden_size / heads (32): rotary on 16 dims, 8 frequencies split 2/3/3
    tie = text.pop("tie_word_embeddings")
    cfg = Glm4vConfig(
        text_config=text,
        vision_config=dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128, patch_size=PATCH,
            spatial_merge_size=2, temporal_patch_size=2, image_size=SIDE,
        ),
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"], tie_word_embeddings=tie,
    )  # fmt: skip
    # GLM's smart_resize counts the temporal patch: 2 x h x w within [min, max]; min = max makes every
    # 224x224 canvas 16x16 patches, 8x8 tokens
    pixels = 2 * SIDE * SIDE
    image_proc = Glm4vImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=PATCH, merge_size=2, temporal_patch_size=2)
    proc = processor_class()(image_processor=image_proc, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
    return Glm4vForConditionalGeneration(cfg), proc


register(Family(
    name="glm-4.1v", label="GLM-4.1V", model_types=("glm4v",), processors=("Glm4vProcessor", "TinyGlm4vProcessor"), profile=profile,
    build_tiny=build_tiny, load_processor=load_processor, order=60,
    checked="maps = image tokens on 3 canvases (GLM smart_resize, tests/test_profiles_glm.py); KLAL = eager reference (mRoPE, partial rotary); "
    "train, LoRA, resume, eval --attention (tests/test_families.py); 2-D mRoPE positions of the image tokens in training batches (tests/test_family_glm.py)",
))  # fmt: skip
