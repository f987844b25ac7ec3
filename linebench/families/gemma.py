"""Gemma 3 (`Gemma3ForConditionalGeneration`), Gemma 4 (`Gemma4ForConditionalGeneration`) and PaliGemma
(`PaliGemmaForConditionalGeneration`, listed: it cannot go through TRL's collator).

Gemma 3: SigLIP at a fixed square size, patches average-pooled to `mm_tokens_per_image` soft tokens
(`<start_of_image>` + `<image_soft_token>` * n + `<end_of_image>` in input_ids; the collator counts the
model's image token, `<image_soft_token>`, not the processor's `<start_of_image>` placeholder). Its decoder mixes
sliding-window and full-attention layers; image tokens attend to each other bidirectionally
(`token_type_ids`), the text causally. The answer's queries follow the image, so KLAL reads the same
rows as in a causal model; a sliding layer whose window does not reach the image from those queries is
left out for that batch (the capture).

Gemma 4: aspect-preserving resize to a variable grid of 16 px patches pooled 3x3 (`gemma-4`);
`<|image>` + `<|image|>` * n + `<image|>`. Its decoder mixes sliding and full layers (bidirectional
image attention on the sliding ones only, with `use_bidirectional_attention="vision"`), attention
scaling 1 (q/k RMS norms), full layers with their own head size, and layers that reuse an earlier
layer's keys (`num_kv_shared_layers`): the attention function still sees each layer's post-RoPE
query and the keys it attends over, so the capture needs nothing special.

PaliGemma (1 and 2): `<image>` * 256/1024/4096 + BOS + prompt + `\\n` form a bidirectional prefix and the
answer is the processor's `suffix` (token_type_ids 1, causal). TRL's `DataCollatorForVisionLanguageModeling`
tokenizes the completion with a second processor call without images, which `PaliGemmaProcessor`
refuses ("`images` are expected"); it has no way to pass the answer as the suffix either, so the answer
could not be marked causal (with token_type_ids 0 it would sit in the bidirectional prefix and see
itself). PaliGemma 2's Gemma 2 decoder also soft-caps attention logits (tanh, 50), which SDPA refuses and
the KLAL op does not model. The family is listed with that reason and refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..grids import layout
from .base import PATCH, SIDE, Family, register, small_text, tokenizer

# ----------------------------------------------------------------------------------------- Gemma 3

GEMMA3_NAMED = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
GEMMA3_TOKENS = 64  # the tiny model: 224 px, 14 px patches (16x16) pooled 2x2 -> 8x8 soft tokens
GEMMA3_WINDOW = 160  # the tiny model's sliding window: reaches the image from a grid_patch answer, not from a long prompt


def gemma3_profile(processor) -> str:
    """`gemma-3:image_size=..:mm_tokens_per_image=..` from the image processor's square size and the
    processor's image_seq_length; pan-and-scan crops (extra images of the same picture) are refused."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    h, w = size.get("height"), size.get("width")
    seq = getattr(processor, "image_seq_length", None)
    if getattr(ip, "do_pan_and_scan", None):
        raise UsageError(f"{type(processor).__name__}: pan-and-scan crops are on (do_pan_and_scan); the gemma-3 map covers the whole image only")
    if not (h and h == w and seq):
        raise UsageError(f"{type(processor).__name__}: cannot read a square image size and image_seq_length from the processor (size={h}x{w}, image_seq_length={seq})")
    return layout(f"gemma-3:image_size={int(h)}:mm_tokens_per_image={int(seq)}", (448, 448)).profile


def build_gemma3():
    """A small Gemma 3: SigLIP of width 64 at 224 px (14 px patches, 16x16) pooled 2x2 -> 8x8 = 64 soft
    tokens for any canvas; a 4-layer decoder, layers 0-2 sliding (window GEMMA3_WINDOW), layer 3 full."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig

    tok = tokenizer(GEMMA3_NAMED["boi_token"], extra_special=tuple(GEMMA3_NAMED.values()))
    tok._set_model_specific_special_tokens(GEMMA3_NAMED)  # tokenizer.boi_token / image_token ..., as Gemma's tokenizer has them (saved with it)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in GEMMA3_NAMED.items()}
    text = Gemma3TextConfig(
        **small_text(tok, max_position_embeddings=1024), query_pre_attn_scalar=32, sliding_window=GEMMA3_WINDOW,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
    )  # fmt: skip
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=SIDE, patch_size=PATCH)
    cfg = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=GEMMA3_TOKENS, boi_token_index=ids["boi_token"],
        eoi_token_index=ids["eoi_token"], image_token_index=ids["image_token"],
    )  # fmt: skip
    image_proc = Gemma3ImageProcessorPil(size={"height": SIDE, "width": SIDE})
    proc = Gemma3Processor(image_processor=image_proc, tokenizer=tok, chat_template=tok.chat_template, image_seq_length=GEMMA3_TOKENS)
    return Gemma3ForConditionalGeneration(cfg), proc


# ----------------------------------------------------------------------------------------- Gemma 4

GEMMA4_NAMED = {
    "boi_token": "<|image>", "eoi_token": "<image|>", "image_token": "<|image|>",
    "boa_token": "<|audio>", "eoa_token": "<audio|>", "audio_token": "<|audio|>",
}  # fmt: skip
GEMMA4_VIDEO = "<|video|>"  # Gemma4Processor adds it to the tokenizer: in the vocabulary from the start
GEMMA4_SOFT = 70  # the tiny model: max_soft_tokens 70 (the processor's smallest): 224x224 -> 384x384 px -> 8x8 tokens
GEMMA4_WINDOW = 160


def gemma4_profile(processor) -> str:
    """`gemma-4:max_soft_tokens=..:patch_size=..:pooling_kernel_size=..` from the image processor."""
    ip = processor.image_processor
    soft, patch, k = (getattr(ip, a, None) for a in ("max_soft_tokens", "patch_size", "pooling_kernel_size"))
    if not (soft and patch and k) or not getattr(ip, "do_resize", True):
        raise UsageError(f"{type(processor).__name__}: cannot read max_soft_tokens, patch_size and pooling_kernel_size (with resizing on) from the image processor")
    return layout(f"gemma-4:max_soft_tokens={int(soft)}:patch_size={int(patch)}:pooling_kernel_size={int(k)}", (448, 448)).profile


def gemma4_processor_class():
    """Gemma4Processor without its video processor (transformers' needs torchvision) and audio feature
    extractor: images never use them (real checkpoints load with AutoProcessor where torchvision is)."""
    from transformers import Gemma4Processor

    class TinyGemma4Processor(Gemma4Processor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor, the tokenizer (with the chat template) and image_seq_length: there is
            no video processor or feature extractor to save, and ProcessorMixin's own save would fail on
            them (Trainer checkpoints call this); `gemma4_load_processor` rebuilds the processor."""
            self.image_processor.save_pretrained(save_directory)
            Path(save_directory, "processor_config.json").write_text(
                json.dumps({"image_seq_length": self.image_seq_length, "processor_class": "Gemma4Processor"}, indent=1) + "\n"
            )
            return self.tokenizer.save_pretrained(save_directory)

    return TinyGemma4Processor


def gemma4_load_processor(folder: Path):
    """The processor from its image processor and tokenizer (no video processor, no torchvision)."""
    from transformers import AutoTokenizer, Gemma4ImageProcessorPil

    tok = AutoTokenizer.from_pretrained(folder)
    ip = Gemma4ImageProcessorPil.from_pretrained(folder)
    seq = 280
    try:
        seq = int(json.loads((Path(folder) / "processor_config.json").read_text(encoding="utf-8")).get("image_seq_length") or seq)
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return gemma4_processor_class()(
        feature_extractor=None, image_processor=ip, tokenizer=tok, video_processor=None, chat_template=tok.chat_template, image_seq_length=seq
    )


def build_gemma4():
    """A small Gemma 4: a 2-layer vision tower of width 64 (16 px patches pooled 3x3, at most 70 soft
    tokens: 8x8 = 64 at 224x224, 7x9 = 63 at 640x480); a 4-layer decoder: sliding, full, sliding, full
    (window GEMMA4_WINDOW), the last two reusing the first two's keys and values, full layers with
    head size 64 (sliding 32), per-layer inputs of width 16, bidirectional attention among image tokens."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4ImageProcessorPil, Gemma4TextConfig, Gemma4VisionConfig

    tok = tokenizer(GEMMA4_NAMED["image_token"], extra_special=(*GEMMA4_NAMED.values(), GEMMA4_VIDEO))
    tok._set_model_specific_special_tokens(GEMMA4_NAMED)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in GEMMA4_NAMED.items()}
    small = small_text(tok, max_position_embeddings=1024)
    text = Gemma4TextConfig(
        **small, sliding_window=GEMMA4_WINDOW, layer_types=["sliding_attention", "full_attention"] * 2, global_head_dim=64,
        num_kv_shared_layers=2, hidden_size_per_layer_input=16, vocab_size_per_layer_input=small["vocab_size"],
        use_bidirectional_attention="vision",
    )  # fmt: skip
    vision = Gemma4VisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
        patch_size=16, pooling_kernel_size=3, position_embedding_size=256,
    )  # fmt: skip
    cfg = Gemma4Config(
        text_config=text, vision_config=vision, audio_config=None, boi_token_id=ids["boi_token"], eoi_token_id=ids["eoi_token"],
        image_token_id=ids["image_token"], video_token_id=tok.convert_tokens_to_ids(GEMMA4_VIDEO), boa_token_id=ids["boa_token"],
        eoa_token_index=ids["eoa_token"], audio_token_id=ids["audio_token"],
    )  # fmt: skip
    image_proc = Gemma4ImageProcessorPil(max_soft_tokens=GEMMA4_SOFT, patch_size=16, pooling_kernel_size=3)
    proc = gemma4_processor_class()(
        feature_extractor=None, image_processor=image_proc, tokenizer=tok, video_processor=None, chat_template=tok.chat_template,
        image_seq_length=GEMMA4_SOFT,
    )  # fmt: skip
    return Gemma4ForConditionalGeneration(cfg), proc


# ----------------------------------------------------------------------------------------- PaliGemma


def paligemma_profile(processor) -> str:
    """`paligemma-224/448/896` from the image processor's square size and the processor's image_seq_length."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    h, w = size.get("height"), size.get("width")
    seq = getattr(processor, "image_seq_length", None)
    if not (h and h == w and h in (224, 448, 896) and seq == (h // 14) ** 2):
        raise UsageError(f"{type(processor).__name__}: expected a 224, 448 or 896 px square with 14 px patches, got size={h}x{w}, image_seq_length={seq}")
    return f"paligemma-{h}"


PALIGEMMA_WHY = (
    "TRL's vision-language collator cannot build its prefix-LM batches: it tokenizes the answer in a second processor call "
    "without images, which PaliGemmaProcessor refuses, and cannot mark the answer as the causal suffix (token_type_ids 1); "
    "PaliGemma 2's attention logit soft-capping is not in the KLAL op either"
)


CHECKED = "maps = image tokens on 3 canvases; KLAL = eager reference; train, LoRA, resume, eval --attention (tests/test_families.py, tests/test_family_gemma.py)"

register(Family(
    name="gemma-3", label="Gemma 3", model_types=("gemma3",), processors=("Gemma3Processor",), profile=gemma3_profile,
    build_tiny=build_gemma3, order=50, image_token="<image_soft_token>",
    checked=CHECKED.replace("tests/test_family_gemma.py", "tests/test_family_gemma.py: bidirectional image attention, a sliding layer left out only when its window misses the image"),
))  # fmt: skip
register(Family(
    name="gemma-4", label="Gemma 4", model_types=("gemma4",), processors=("Gemma4Processor", "TinyGemma4Processor"), profile=gemma4_profile,
    build_tiny=build_gemma4, load_processor=gemma4_load_processor, order=51,
    checked=CHECKED.replace(
        "tests/test_family_gemma.py", "tests/test_family_gemma.py: bidirectional image attention on sliding layers, a sliding layer left out "
        "only when its window misses the image, layers reusing earlier keys; profile vs the real processor: tests/test_profiles_gemma4.py",
    ),
))  # fmt: skip
register(Family(
    name="paligemma", label="PaliGemma / PaliGemma 2", model_types=("paligemma",), processors=("PaliGemmaProcessor",),
    profile=paligemma_profile, map_profile="paligemma-224/448/896", order=52, unsupported=PALIGEMMA_WHY,
))  # fmt: skip
