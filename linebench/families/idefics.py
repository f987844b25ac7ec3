"""Idefics3 (`Idefics3ForConditionalGeneration`) and SmolVLM / SmolVLM2 (`SmolVLMForConditionalGeneration`):
the image resized to a longest edge, cut into square tiles (row-major) + a global image, SigLIP patches
pixel-shuffled s x s. Each tile's image tokens follow `<fake_token_around_image><row_r_col_c>` text, so one
image is several runs of `<image>` in input_ids (the capture groups them by the map's size).

The processor knows the resize (`size`, `max_image_size`) and the tokens per frame (`image_seq_len`), not
the SigLIP patch size and the pixel-shuffle factor the model's config holds; `profile` takes the one
(patch, scale) pair among SigLIP's 14 and 16 px patches that gives `image_seq_len` tokens per frame
(Idefics3-8B: 364 px, 169 -> 14 px, 2; SmolVLM2-256M/500M: 512 px, 64 -> 16 px, 4; SmolVLM-Instruct and
SmolVLM2-2.2B: 384 px, 81 -> 14 px, 3).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import Family, register, small_text, tokenizer

FAKE, IMAGE, GLOBAL, END = "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"
ROW_COL = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))  # the processors' tile tags
SPECIAL = (FAKE, IMAGE, GLOBAL, END, *ROW_COL)
PATCHES = (14, 16)  # SigLIP patch sizes of the released checkpoints


def patch_and_scale(max_image_size: int, image_seq_len: int) -> tuple[int, int] | None:
    """The (patch, scale_factor) that gives `image_seq_len` tokens per `max_image_size` px frame, if exactly one."""
    n = math.isqrt(image_seq_len)
    if n < 1 or n * n != image_seq_len:
        return None
    found = [(p, max_image_size // p // n) for p in PATCHES if max_image_size // p >= n and (max_image_size // p) % n == 0]
    return found[0] if len(found) == 1 else None


def _profile(base: str):
    def profile(processor) -> str:
        name = type(processor).__name__
        ip = processor.image_processor
        size = getattr(ip, "size", None) or {}
        frame = getattr(ip, "max_image_size", None) or {}
        longest, m = size.get("longest_edge"), frame.get("longest_edge")
        seq = getattr(processor, "image_seq_len", None)
        if not (getattr(ip, "do_resize", True) and getattr(ip, "do_image_splitting", True)):
            raise UsageError(f"{name}: the {base} map needs do_resize and do_image_splitting on (the checkpoints' values)")
        found = patch_and_scale(int(m), int(seq)) if longest and m and seq else None
        if found is None:
            raise UsageError(
                f"{name}: cannot read the tile size and the tokens per tile (size={dict(size)}, max_image_size={dict(frame)}, "
                f"image_seq_len={seq}) as a 14 or 16 px patch grid pixel-shuffled to image_seq_len tokens"
            )
        patch, scale = found
        return layout(f"{base}:longest_edge={int(longest)}:max_image_size={int(m)}:patch_size={patch}:scale_factor={scale}", (448, 448)).profile

    return profile


def _vision(m: int, patch: int) -> dict:
    return dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=m, patch_size=patch)


def build_idefics3():
    """A small Idefics3: 112 px tiles of 14 px patches shuffled 2x2 (4x4 = 16 tokens each); a 224x224
    canvas is resized to 224 px, 2x2 tiles + the global image: 80 image tokens in 5 runs."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor

    longest, m, patch, scale = 224, 112, 14, 2
    tok = tokenizer(IMAGE, extra_special=SPECIAL)
    cfg = Idefics3Config(
        text_config=dict(model_type="llama", **small_text(tok, max_position_embeddings=1024)), vision_config=_vision(m, patch),
        scale_factor=scale, image_token_id=tok.convert_tokens_to_ids(IMAGE), pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    ip = Idefics3ImageProcessorPil(size={"longest_edge": longest}, max_image_size={"longest_edge": m})
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=(m // patch // scale) ** 2, chat_template=tok.chat_template)
    return Idefics3ForConditionalGeneration(cfg), proc


def smolvlm_processor_class():
    """SmolVLM's processor without a video processor: transformers' needs torchvision and its prompts need
    num2words (video only; images never use either). Real checkpoints load with AutoProcessor where both are."""
    from transformers import ProcessorMixin, SmolVLMProcessor

    class TinySmolVLMProcessor(SmolVLMProcessor):
        def __init__(self, image_processor, tokenizer, video_processor=None, image_seq_len: int = 169, chat_template=None, **kwargs):
            # SmolVLMProcessor.__init__ without its num2words check (num2words only writes video prompts)
            self.fake_image_token = getattr(tokenizer, "fake_image_token", FAKE)
            self.image_token = getattr(tokenizer, "image_token", IMAGE)
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", END)
            self.global_image_token = getattr(tokenizer, "global_image_token", GLOBAL)
            self.image_seq_len = image_seq_len
            self.video_token = getattr(tokenizer, "video_token", "<video>")
            ProcessorMixin.__init__(self, image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs)

        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def apply_chat_template(self, conversation, chat_template=None, **kwargs):
            # SmolVLMProcessor's own reads the video processor's frame defaults; images need none
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor, the tokenizer (with the chat template) and image_seq_len: there is no video
            processor to save; `load_smolvlm` rebuilds the processor from them."""
            import json

            self.image_processor.save_pretrained(save_directory)
            (Path(save_directory) / "processor_config.json").write_text(json.dumps({"image_seq_len": self.image_seq_len}, indent=1) + "\n")
            return self.tokenizer.save_pretrained(save_directory)

    return TinySmolVLMProcessor


def load_smolvlm(folder: Path):
    """SmolVLM's processor from its image processor, tokenizer and image_seq_len (no video processor)."""
    import json

    from transformers import AutoTokenizer, SmolVLMImageProcessorPil

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    config = folder / "processor_config.json"
    seq = json.loads(config.read_text()).get("image_seq_len", 169) if config.is_file() else 169
    ip = SmolVLMImageProcessorPil.from_pretrained(folder)
    return smolvlm_processor_class()(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=tok.chat_template)


def build_smolvlm():
    """A small SmolVLM2: 256 px tiles of 16 px patches shuffled 4x4 (4x4 = 16 tokens each, as the 256M/500M
    checkpoints shuffle 512 px tiles 4x4); a 224x224 canvas is resized to 512 px, 2x2 tiles + the global
    image: 80 image tokens in 5 runs."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

    longest, m, patch, scale = 512, 256, 16, 4
    tok = tokenizer(IMAGE, extra_special=SPECIAL)
    cfg = SmolVLMConfig(
        text_config=dict(model_type="llama", **small_text(tok, max_position_embeddings=1024)), vision_config=_vision(m, patch),
        scale_factor=scale, image_token_id=tok.convert_tokens_to_ids(IMAGE), pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    ip = SmolVLMImageProcessorPil(size={"longest_edge": longest}, max_image_size={"longest_edge": m})
    proc = smolvlm_processor_class()(image_processor=ip, tokenizer=tok, image_seq_len=(m // patch // scale) ** 2, chat_template=tok.chat_template)
    return SmolVLMForConditionalGeneration(cfg), proc


CHECKED = (
    "maps = image tokens (tiles + global: several runs per image); KLAL = eager reference over exactly the image tokens; "
    "train, LoRA, resume, eval --attention (tests/test_families.py, tests/test_family_idefics.py)"
)

register(Family(
    name="idefics3", label="Idefics3", model_types=("idefics3",), processors=("Idefics3Processor",), profile=_profile("idefics3"),
    build_tiny=build_idefics3, order=70, checked=CHECKED,
))  # fmt: skip
register(Family(
    name="smolvlm", label="SmolVLM2", model_types=("smolvlm",), processors=("SmolVLMProcessor", "TinySmolVLMProcessor"),
    profile=_profile("smolvlm"), build_tiny=build_smolvlm, load_processor=load_smolvlm, order=71, checked=CHECKED,
))  # fmt: skip
