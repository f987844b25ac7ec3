"""Qwen2-VL and Qwen2.5-VL (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`):
14 px patches merged 2x2 at a size between min_pixels and max_pixels, mRoPE."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import PATCH, SIDE, Family, register, small_text, tokenizer

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def _profile(base: str):
    def profile(processor) -> str:
        ip = processor.image_processor
        size = getattr(ip, "size", None) or {}
        lo = size.get("shortest_edge", getattr(ip, "min_pixels", None))
        hi = size.get("longest_edge", getattr(ip, "max_pixels", None))
        if getattr(ip, "patch_size", 14) != 14 or getattr(ip, "merge_size", 2) != 2 or lo is None or hi is None:
            raise UsageError(f"{type(processor).__name__}: expected 14 px patches merged 2x2 with min/max pixels, got {size}")
        return layout(f"{base}:min_pixels={int(lo)}:max_pixels={int(hi)}", (448, 448)).profile

    return profile


def processor_class(base=None):
    """Qwen2(.5)-VL's processor without a video processor: transformers' needs torchvision for one,
    and images never use it (real checkpoints load with AutoProcessor where torchvision is)."""
    if base is None:
        from transformers import Qwen2_5_VLProcessor as base

    class TinyQwen2_5_VLProcessor(base):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor and the tokenizer (with the chat template): there is no video
            processor to save, and ProcessorMixin's own save would fail on it (Trainer checkpoints
            call this); `load_processor` rebuilds the processor from them."""
            self.image_processor.save_pretrained(save_directory)
            return self.tokenizer.save_pretrained(save_directory)

    TinyQwen2_5_VLProcessor.__name__ = TinyQwen2_5_VLProcessor.__qualname__ = f"Tiny{base.__name__}"
    return TinyQwen2_5_VLProcessor


def loader(base_name: str):
    def load_processor(folder: Path):
        """The processor from its image processor and tokenizer (no video processor, no torchvision)."""
        import transformers
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        tok = AutoTokenizer.from_pretrained(folder)
        cls = processor_class(getattr(transformers, base_name))
        return cls(image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder), tokenizer=tok, video_processor=None, chat_template=tok.chat_template)

    return load_processor


load_processor = loader("Qwen2_5_VLProcessor")


def _tiny_parts(processor_base):
    """What both tiny Qwen models share: the tokenizer, the decoder settings (mRoPE 8/4/4), the vision
    token ids for the config, and the processor (min = max pixels: every 224x224 canvas is 16x16
    patches, 8x8 = 64 tokens)."""
    from transformers import Qwen2VLImageProcessorPil

    tok = tokenizer(PLACEHOLDER)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = small_text(tok, max_position_embeddings=1024, rope_parameters={"rope_type": "default", "mrope_section": [8, 4, 4], "rope_theta": 10000.0})
    text.pop("head_dim")
    tokens = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    pixels = SIDE * SIDE
    image_proc = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=PATCH, merge_size=2, temporal_patch_size=2)
    proc = processor_class(processor_base)(image_processor=image_proc, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
    return text, tokens, proc


def build_tiny():
    """A small Qwen2.5-VL (14 px patches merged 2x2, mRoPE) at 224x224: 8x8 = 64 image tokens."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    text, tokens, proc = _tiny_parts(Qwen2_5_VLProcessor)
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128, patch_size=PATCH,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
        ),
        **tokens,
    )  # fmt: skip
    return Qwen2_5_VLForConditionalGeneration(cfg), proc



register(Family(
    name="qwen2.5-vl", label="Qwen2.5-VL", model_types=("qwen2_5_vl",), processors=("Qwen2_5_VLProcessor", "TinyQwen2_5_VLProcessor"),
    profile=_profile("qwen2.5-vl"), build_tiny=build_tiny, load_processor=load_processor, order=20,
    checked="maps = image tokens; KLAL = eager reference (mRoPE); train, LoRA, resume, eval --attention (tests/test_train.py, tests/test_eval.py)",
))  # fmt: skip
def build_tiny_qwen2_vl():
    """A small Qwen2-VL (14 px patches merged 2x2, mRoPE, no window attention) at 224x224: 64 image tokens."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    text, tokens, proc = _tiny_parts(Qwen2VLProcessor)
    cfg = Qwen2VLConfig(
        text_config=text, vision_config=dict(depth=2, embed_dim=64, hidden_size=128, num_heads=4, patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2),
        **tokens,
    )  # fmt: skip
    return Qwen2VLForConditionalGeneration(cfg), proc


register(Family(
    name="qwen2-vl", label="Qwen2-VL", model_types=("qwen2_vl",), processors=("Qwen2VLProcessor", "TinyQwen2VLProcessor"), profile=_profile("qwen2-vl"),
    build_tiny=build_tiny_qwen2_vl, load_processor=loader("Qwen2VLProcessor"), order=21,
    checked="maps = image tokens on 3 canvases; KLAL = eager reference; train, LoRA, resume, eval --attention (tests/test_families.py)",
))  # fmt: skip
