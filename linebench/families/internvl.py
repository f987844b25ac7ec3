"""InternVL 2.5 / 3, transformers' `-hf` checkpoints (`InternVLForConditionalGeneration`): dynamic tiles
of `tile` px (1..max_tiles, plus a thumbnail when there are several), each pixel-shuffled 2x2 into
`image_seq_length` tokens; `<img>` + `<IMG_CONTEXT>` * (tokens per tile * tiles) + `</img>` in
input_ids (one run per image, tiles in row-major order, thumbnail last: the `internvl` profile)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import Family, register, small_text, tokenizer

IMAGE = "<IMG_CONTEXT>"
NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": IMAGE, "video_token": "<video>"}
TILE, TILE_TOKENS, MAX_TILES = 112, 16, 6  # the tiny model: 112 px tiles, 8x8 patches of 14 px -> 4x4 tokens


def _size(ip) -> tuple[int | None, int | None]:
    size = getattr(ip, "size", None) or {}
    return size.get("height"), size.get("width")


def profile(processor) -> str:
    """`internvl` with the tiles read from the processor: min/max patches and tile size from the image
    processor, tokens per tile from the processor's image_seq_length."""
    ip = processor.image_processor
    h, w = _size(ip)
    seq = getattr(processor, "image_seq_length", None)
    lo, hi = getattr(ip, "min_patches", None), getattr(ip, "max_patches", None)
    if not (h and h == w and seq and lo and hi):
        raise UsageError(f"{type(processor).__name__}: cannot read square tiles, min/max patches and image_seq_length from the processor (size={h}x{w}, patches {lo}..{hi}, image_seq_length={seq})")
    return layout(f"internvl:min_tiles={int(lo)}:max_tiles={int(hi)}:tile={int(h)}:tile_tokens={int(seq)}", (448, 448)).profile


def processor_class():
    """InternVL's processor without a video processor: transformers' InternVLVideoProcessor needs
    torchvision, and images never use it (real checkpoints load with AutoProcessor where torchvision is)."""
    from transformers import InternVLProcessor

    class TinyInternVLProcessor(InternVLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor, the tokenizer (with the chat template) and the processor's own
            image_seq_length: there is no video processor to save, and ProcessorMixin's own save would
            fail on it (Trainer checkpoints call this); `load_processor` rebuilds the processor."""
            self.image_processor.save_pretrained(save_directory)
            Path(save_directory, "processor_config.json").write_text(
                json.dumps({"image_seq_length": self.image_seq_length, "processor_class": "InternVLProcessor"}, indent=1) + "\n"
            )
            return self.tokenizer.save_pretrained(save_directory)

    return TinyInternVLProcessor


def _image_seq_length(folder: Path) -> int:
    for name in ("processor_config.json", "config.json"):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get("image_seq_length")
        except (OSError, ValueError):
            continue
        if value:
            return int(value)
    return 256  # InternVLProcessor's default (InternVL3-*-hf)


def load_processor(folder: Path):
    """The processor from its image processor, tokenizer and image_seq_length (no video processor)."""
    from transformers import AutoTokenizer, GotOcr2ImageProcessorPil

    tok = AutoTokenizer.from_pretrained(folder)
    ip = GotOcr2ImageProcessorPil.from_pretrained(folder)
    return processor_class()(image_processor=ip, tokenizer=tok, video_processor=None, image_seq_length=_image_seq_length(folder), chat_template=tok.chat_template)


def build_tiny():
    """A small InternVL3: an InternViT of width 64 on 112 px tiles (14 px patches, pixel shuffle 0.5:
    4x4 = 16 tokens per tile), up to 6 tiles + thumbnail, a small Qwen2 decoder. A 224x224 canvas is
    2x2 tiles + thumbnail = 80 image tokens; 640x480 is 3x2 + thumbnail = 112."""
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

    tok = tokenizer(IMAGE, extra_special=tuple(NAMED.values()))
    tok._set_model_specific_special_tokens(NAMED)  # tokenizer.start_image_token etc., as InternVL's tokenizer has them (saved with it)
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=TILE, patch_size=14),
        text_config=dict(model_type="qwen2", **small_text(tok, max_position_embeddings=1024)),
        image_token_id=tok.convert_tokens_to_ids(IMAGE), image_seq_length=TILE_TOKENS, downsample_ratio=0.5,
        vision_feature_layer=-1, vision_feature_select_strategy="default",
    )  # fmt: skip
    image_proc = GotOcr2ImageProcessorPil(
        size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )  # fmt: skip
    proc = processor_class()(image_processor=image_proc, tokenizer=tok, video_processor=None, image_seq_length=TILE_TOKENS, chat_template=tok.chat_template)
    return InternVLForConditionalGeneration(cfg), proc



register(Family(
    name="internvl", label="InternVL3 (HF)", model_types=("internvl",), processors=("InternVLProcessor", "TinyInternVLProcessor"),
    profile=profile, build_tiny=build_tiny, load_processor=load_processor, order=40,
    checked="maps = image tokens on 3 canvases (tiles + thumbnail); KLAL = eager reference; train, LoRA, resume, eval --attention "
    "(tests/test_families.py, tests/test_family_internvl.py)",
))  # fmt: skip
