"""Mistral 3 (`Mistral3ForConditionalGeneration`, model_type `mistral3`: Mistral Small 3.1 / 3.2): the
Pixtral vision tower at the image's own resolution, 14 px patches merged 2x2 (the `mistral-3` map
profile), a Mistral decoder. The image's `[IMG]` tokens come one run per row, `[IMG_BREAK]` between the
rows and `[IMG_END]` last: the capture joins the runs of an image (as it does for Idefics3's tiles)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import PATCH, SIDE, Family, register, small_text, tokenizer

SPECIAL = ("[IMG]", "[IMG_BREAK]", "[IMG_END]")
_PROCESSING = "transformers.models.pixtral.processing_pixtral"
_TORCHVISION_IP = "transformers.models.pixtral.image_processing_pixtral"


def processor_class():
    """transformers' `PixtralProcessor` (what AutoProcessor gives Mistral 3), itself.

    Its module imports the torchvision image processor's module for one function,
    `get_resize_output_image_size` (used only to count tokens without images), so without torchvision
    the import fails although the processor runs with `PixtralImageProcessorPil` (AutoImageProcessor's
    PIL choice for mistral3). Then the module is imported with that name resolving to the PIL image
    processor's module, which defines the same function ("Adapted from" it); the alias is removed
    right after. With torchvision installed this is the ordinary import."""
    import importlib
    import sys

    try:
        return importlib.import_module(_PROCESSING).PixtralProcessor
    except ImportError:
        pass
    from transformers.models.pixtral import image_processing_pil_pixtral as pil

    saved = sys.modules.get(_TORCHVISION_IP)
    sys.modules[_TORCHVISION_IP] = pil
    try:
        return importlib.import_module(_PROCESSING).PixtralProcessor
    finally:
        if saved is None:
            del sys.modules[_TORCHVISION_IP]
        else:
            sys.modules[_TORCHVISION_IP] = saved


def profile(processor) -> str:
    """`mistral-3` with the processor's longest edge, patch size and spatial merge."""
    size = getattr(processor.image_processor, "size", None) or {}
    longest, patch, merge = size.get("longest_edge"), getattr(processor, "patch_size", None), getattr(processor, "spatial_merge_size", None)
    if not (longest and patch and merge):
        raise UsageError(f"{type(processor).__name__}: cannot read size longest_edge, patch_size and spatial_merge_size (size {dict(size)}, patch {patch}, merge {merge})")
    return layout(f"mistral-3:longest_edge={int(longest)}:patch_size={int(patch)}:spatial_merge_size={int(merge)}", (448, 448)).profile


def load_processor(folder: Path):
    """PixtralProcessor from the folder's image processor (the PIL one), tokenizer and processor_config.json
    (AutoProcessor cannot build it without torchvision; see `processor_class`)."""
    from transformers import AutoTokenizer, PixtralImageProcessorPil

    folder = Path(folder)
    cfg_path = folder / "processor_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    keep = ("patch_size", "spatial_merge_size", "image_token", "image_break_token", "image_end_token")
    tok = AutoTokenizer.from_pretrained(folder)
    image_proc = PixtralImageProcessorPil.from_pretrained(folder)
    return processor_class()(image_processor=image_proc, tokenizer=tok, chat_template=tok.chat_template, **{k: cfg[k] for k in keep if k in cfg})


def build_tiny():
    """A small Mistral 3 (Pixtral tower, 14 px patches merged 2x2, Mistral decoder) at 224x224: 8x8 = 64 image tokens."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessorPil

    tok = tokenizer("[IMG]", extra_special=SPECIAL)
    text = small_text(tok, max_position_embeddings=1024, sliding_window=None, model_type="mistral")
    tie = text.pop("tie_word_embeddings")
    cfg = Mistral3Config(
        text_config=text,
        vision_config=dict(
            model_type="pixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, head_dim=16,
            image_size=SIDE, patch_size=PATCH,
        ),
        image_token_index=tok.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=tie,
    )  # fmt: skip
    # longest edge 224: a 224x224 canvas keeps its size, 8x8 tokens of 28 px
    image_proc = PixtralImageProcessorPil(size={"longest_edge": SIDE}, patch_size={"height": PATCH, "width": PATCH})
    proc = processor_class()(image_processor=image_proc, tokenizer=tok, patch_size=PATCH, spatial_merge_size=2, chat_template=tok.chat_template)
    return Mistral3ForConditionalGeneration(cfg), proc


register(Family(
    name="mistral-3", label="Mistral 3", model_types=("mistral3",), processors=("PixtralProcessor",), profile=profile,
    build_tiny=build_tiny, load_processor=load_processor, order=70,
    checked="maps = [IMG] tokens on 3 canvases, one run per row ([IMG_BREAK] between, tests/test_profiles_mistral.py); "
    "KLAL = eager reference over exactly the [IMG] tokens, 2 images per sample (tests/test_family_mistral.py); "
    "train, LoRA, resume, eval --attention (tests/test_families.py)",
))  # fmt: skip
