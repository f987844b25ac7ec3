"""Molmo2 (`Molmo2ForConditionalGeneration`, transformers' own: no remote code): a low-res view of the image
and overlapping high-res crops stitched into one grid, 14 px patches pooled 2x2. Only `<im_patch>` tokens
carry image features (config `image_patch_id`); the low-res view, `<im_end><im_start>` and an `<im_col>`
after every high-res row lie between them, so one image is several runs of `<im_patch>` (the capture
groups them by the map's size). The decoder's image tokens attend to each other both ways
(`mm_token_type_ids`); the answer's queries, which KLAL reads, stay causal.

`Molmo2ImageProcessor` is a torchvision-backend processor, and only its `resize` and `normalize` call
torchvision (bilinear without antialiasing on float tensors, and (x - mean) / std). Where torchvision is
not installed, `Molmo2ImageProcessorTorch` does those two with the same torch operations
(`interpolate(mode="bilinear", align_corners=False, antialias=False)`, which is what torchvision runs for
them); the tiling, the crops, the patch order and the pooling indices stay transformers' code. The tiny
model and `load_processor` use it; a real checkpoint loads with AutoProcessor where torchvision is.

The collator counts the token the model fills with image features (`<im_patch>`, the config's
image_token_id), not the processor's `<|image|>` placeholder.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import Family, register, small_text, tokenizer

IMAGE = "<|image|>"  # the placeholder in the text; the processor expands it to <im_patch> tokens and the rest
SPECIAL = ("<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>", "<frame_start>", "<im_end>", "<frame_end>", "<im_low>", IMAGE, "<|video|>")
FLAGS = ("image_use_col_tokens", "use_single_crop_col_tokens", "use_single_crop_start_token")  # processor_config.json
PATCH, MARGINS, POOL = 14, [4, 4], [2, 2]  # what the molmo2 profile models (the checkpoints' values)


def profile(processor) -> str:
    name = type(processor).__name__
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    h, w = size.get("height"), size.get("width")
    got = dict(size=dict(size), patch_size=getattr(ip, "patch_size", None), overlap_margins=list(getattr(ip, "overlap_margins", []) or []),
               pooling_size=list(getattr(ip, "pooling_size", []) or []), max_crops=getattr(ip, "max_crops", None))  # fmt: skip
    if not h or h != w or got["patch_size"] != PATCH or got["overlap_margins"] != MARGINS or got["pooling_size"] != POOL or not got["max_crops"]:
        raise UsageError(f"{name}: the molmo2 map needs square crops of 14 px patches, overlap margins [4, 4] and 2x2 pooling; the processor has {got}")
    return layout(f"molmo2:crop={int(h)}:max_crops={int(got['max_crops'])}", (448, 448)).profile


def image_processor_class():
    """Molmo2ImageProcessor with its two torchvision calls done in torch (see the module docstring)."""
    import torch
    from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor  # the top-level name is a placeholder without torchvision

    class Molmo2ImageProcessorTorch(Molmo2ImageProcessor):
        def resize(self, image, size, resample=None, antialias=True, **kwargs):
            if resample not in (None, 2) or antialias:  # PILImageResampling.BILINEAR, as Molmo2 asks
                raise UsageError(f"Molmo2ImageProcessorTorch resizes bilinear without antialiasing only (resample={resample}, antialias={antialias})")
            return torch.nn.functional.interpolate(image, size=(size.height, size.width), mode="bilinear", align_corners=False, antialias=False)

        def normalize(self, image, mean, std, inplace=False, **kwargs):
            mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            return (image - mean) / std

    return Molmo2ImageProcessorTorch


def processor_class():
    """Molmo2's processor without a video processor (transformers' needs torchvision; images never use it)."""
    from transformers import Molmo2Processor

    class TinyMolmo2Processor(Molmo2Processor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor, the tokenizer (with the chat template) and the processor's token flags:
            there is no video processor to save; `load_processor` rebuilds the processor from them."""
            self.image_processor.save_pretrained(save_directory)
            flags = {k: getattr(self, k) for k in FLAGS}
            (Path(save_directory) / "processor_config.json").write_text(json.dumps(flags, indent=1) + "\n")
            return self.tokenizer.save_pretrained(save_directory)

    return TinyMolmo2Processor


def load_processor(folder: Path):
    """The processor from its image processor settings, tokenizer and token flags (no video processor, no torchvision)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    config = folder / "processor_config.json"
    saved = json.loads(config.read_text()) if config.is_file() else {}
    flags = {k: saved[k] for k in FLAGS if k in saved}
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    keys = ("size", "max_crops", "overlap_margins", "patch_size", "pooling_size", "resample", "image_mean", "image_std", "do_convert_rgb")
    ip = image_processor_class()(**{k: settings[k] for k in keys if k in settings})
    return processor_class()(image_processor=ip, video_processor=None, tokenizer=tok, chat_template=tok.chat_template, **flags)


def build_tiny():
    """A small Molmo2: 182 px crops (13 patches of 14 px, odd as the checkpoints' 27), up to 6 crops, pooled
    2x2; a 224x224 canvas is 2x2 crops: 7x7 low-res + 9x9 high-res = 130 image tokens in 1 + 9 runs."""
    from transformers import Molmo2Config, Molmo2ForConditionalGeneration

    crop, max_crops = 182, 6
    tok = tokenizer(IMAGE, extra_special=SPECIAL)
    tok.bos_token = "<|endoftext|>"  # Molmo2Processor puts bos (else eos) before every text it tokenizes: not the end of turn
    ids = dict(zip(SPECIAL, tok.convert_tokens_to_ids(list(SPECIAL))))
    text = small_text(tok, max_position_embeddings=1024, additional_vocab_size=0, tie_word_embeddings=False, bos_token_id=tok.bos_token_id)
    cfg = Molmo2Config(
        text_config=text,
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                           head_dim=16, image_size=[crop, crop], patch_size=PATCH),
        adapter_config=dict(vision_feature_layer=[-1, 0], hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                            intermediate_size=128, text_hidden_size=text["hidden_size"]),
        image_start_token_id=ids["<im_start>"], low_res_image_start_token_id=ids["<low_res_im_start>"], image_end_token_id=ids["<im_end>"],
        image_patch_id=ids["<im_patch>"], frame_start_token_id=ids["<frame_start>"], frame_end_token_id=ids["<frame_end>"],
    )  # fmt: skip
    ip = image_processor_class()(size={"height": crop, "width": crop}, max_crops=max_crops, overlap_margins=MARGINS, patch_size=PATCH, pooling_size=POOL)
    proc = processor_class()(
        image_processor=ip, video_processor=None, tokenizer=tok, chat_template=tok.chat_template,
        image_use_col_tokens=True, use_single_crop_col_tokens=False, use_single_crop_start_token=True,  # allenai/Molmo2-8B's
    )  # fmt: skip
    return Molmo2ForConditionalGeneration(cfg), proc


register(Family(
    name="molmo2", label="Molmo2", model_types=("molmo2",), processors=("Molmo2Processor", "TinyMolmo2Processor"), profile=profile,
    build_tiny=build_tiny, load_processor=load_processor, order=80, image_token="<im_patch>",
    checked="maps = image tokens (low-res + stitched crops: <im_patch> runs split by <im_col>); KLAL = eager reference over exactly "
            "the <im_patch> tokens; train, LoRA, resume, eval --attention (tests/test_families.py, tests/test_family_molmo.py)",
))  # fmt: skip
