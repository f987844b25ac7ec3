"""The tiny default VLMs: transformers classes, random init, built from configs, no download, ever.

- `tiny` (the default): the LLaVA architecture, a small CLIP vision tower (224 px, 14 px patches:
  16x16 = 256 image tokens) + a small Llama decoder;
- `tiny-qwen2.5-vl`: a small Qwen2.5-VL (14 px patches merged 2x2, mRoPE), at 224x224: 8x8 = 64.

Each comes with a tokenizer built locally with `tokenizers` (a word-level vocabulary of the tasks'
questions and answers) and a chat template, in an ordinary checkpoint folder that
`from_pretrained` reloads (`build_tiny(name, folder)`; `linebench train` caches it under
~/.cache/linebench/tiny/<name>-v<version>).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TINY = ("tiny", "tiny-qwen2.5-vl")
VERSION = 1  # bump when a tiny model's config, vocabulary or template changes
CANVAS = 224  # what the tiny models see well (and the canvas of the data generated for them)
SIDE, PATCH = 224, 14
MARK = "linebench_tiny.json"  # in a tiny checkpoint folder: what it is

SPECIAL = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_WORDS = """
user assistant system the a an of at in on to is are do does which what how many times line lines and starting
end ends number numbers only with answer picture shows grid cell cells contains counting from top left row rows
column columns intersect intersection intersections points among all there x as it by this that yes no
""".split()
_NAMES = """
red blue green orange purple brown magenta teal black circle square triangle diamond star cross heart
A B C D E F G H
""".split()
_PUNCT = list("()[],.?:;!-'\"{}")


def vocabulary() -> list[str]:
    """Tokens in id order: specials, words, names, numbers 0..64, punctuation."""
    words = _WORDS + [w.capitalize() for w in _WORDS] + _NAMES + [str(i) for i in range(65)] + _PUNCT
    seen, out = set(), []
    for t in SPECIAL + words:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


# Qwen-style turns; the image placeholder is the processor's own token.
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ IMAGE }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer(image_placeholder: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(vocabulary())}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    # words, each punctuation mark on its own ("(3," -> "(", "3", ",")
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, punctuation too
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>", bos_token=None,
        additional_special_tokens=[t for t in SPECIAL if t not in ("[PAD]", "[UNK]")],
    )  # fmt: skip
    fast.chat_template = TEMPLATE.replace("{{ IMAGE }}", image_placeholder)
    return fast


def _llava(tok):
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )  # fmt: skip
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=SIDE, patch_size=PATCH)
    image_id = tok.convert_tokens_to_ids("<image>")
    tokens = (SIDE // PATCH) ** 2
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_id, vision_feature_layer=-1,
        vision_feature_select_strategy="default", image_seq_length=tokens, projector_hidden_act="gelu",
    )  # fmt: skip
    model = LlavaForConditionalGeneration(cfg)
    image_proc = CLIPImageProcessorPil(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    proc = LlavaProcessor(
        image_processor=image_proc, tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    )  # fmt: skip
    return model, proc


def qwen_processor_class():
    """Qwen2.5-VL's processor without a video processor: transformers' needs torchvision for one,
    and images never use it (the real checkpoints load with AutoProcessor where torchvision is)."""
    from transformers import Qwen2_5_VLProcessor

    class TinyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

        def save_pretrained(self, save_directory, **kwargs):
            """The image processor and the tokenizer (with the chat template): there is no video
            processor to save, and ProcessorMixin's own save would fail on it (Trainer checkpoints
            call this); `load_processor` rebuilds the processor from them."""
            self.image_processor.save_pretrained(save_directory)
            return self.tokenizer.save_pretrained(save_directory)

    return TinyQwen2_5_VLProcessor


def _qwen(tok):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "mrope_section": [8, 4, 4], "rope_theta": 10000.0},
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        ),
        vision_config=dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128, patch_size=PATCH,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    pixels = SIDE * SIDE  # min = max: every 224x224 canvas is 16x16 patches, 8x8 tokens
    image_proc = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=PATCH, merge_size=2, temporal_patch_size=2)
    proc = qwen_processor_class()(image_processor=image_proc, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
    return model, proc


def build_tiny(name: str, folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny model (random init from `seed`), its tokenizer and processor; save them to `folder`."""
    import torch

    if name not in TINY:
        raise ValueError(f"tiny models: {', '.join(TINY)}")
    torch.manual_seed(seed)
    if name == "tiny":
        model, proc = _llava(tokenizer("<image>"))
    else:
        model, proc = _qwen(tokenizer("<|vision_start|><|image_pad|><|vision_end|>"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = proc.tokenizer.pad_token_id
    model.generation_config.eos_token_id = proc.tokenizer.eos_token_id
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    (folder / MARK).write_text(json.dumps({"name": name, "version": VERSION, "seed": seed}, indent=1) + "\n")
    return folder


def cached(name: str) -> Path:
    """The tiny model's folder in linebench's cache, built there on first use (atomically)."""
    base = Path(os.environ.get("LINEBENCH_CACHE", Path.home() / ".cache" / "linebench")) / "tiny"
    folder = base / f"{name}-v{VERSION}"
    if (folder / MARK).is_file():
        return folder
    tmp = base / f".{name}-v{VERSION}.{os.getpid()}.tmp"
    build_tiny(name, tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_tiny(folder: str | Path) -> dict | None:
    mark = Path(folder) / MARK
    try:
        info = json.loads(mark.read_text()) if mark.is_file() else None
    except (OSError, ValueError):  # a damaged mark: not a tiny model linebench can vouch for
        return None
    return info if isinstance(info, dict) and "name" in info else None


def load_processor(folder: str | Path):
    """A tiny model's processor from its folder (the Qwen one without a video processor)."""
    from transformers import AutoProcessor, AutoTokenizer, Qwen2VLImageProcessorPil

    info = is_tiny(folder)
    if info is None or info["name"] == "tiny":
        return AutoProcessor.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    return qwen_processor_class()(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder), tokenizer=tok, video_processor=None, chat_template=tok.chat_template
    )
