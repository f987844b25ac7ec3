"""What linebench knows about a VLM family it can train and evaluate, in one record per family.

A `Family` says which checkpoints it covers (`model_types`, from config.json), which processors it
reads (`processors`: class names), the map profile of a loaded processor (`profile`: the profile
string with the parameters read from the processor's own config, so the map lines up with the image
tokens that processor puts in input_ids), how to build its tiny random-init model offline
(`build_tiny`: the family's own config, model and processor classes, with the tokenizer built
locally by `tokenizer()`), and, where `AutoProcessor` cannot load it without optional packages,
how to load its processor (`load_processor`).

One module per family under linebench/families/ registers its record; `linebench.families` lists
them (the support matrix in docs/training.md is this registry). Nothing here imports torch or
transformers at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SIDE, PATCH = 224, 14  # the tiny models' canvas (what they see well) and their vision patch


@dataclass(frozen=True)
class Family:
    name: str  # the map profile's base name: "qwen2.5-vl"; the tiny model is `tiny-<name>`
    label: str  # for people: "Qwen2.5-VL"
    model_types: tuple[str, ...]  # config.json `model_type` values it covers
    processors: tuple[str, ...]  # processor class names (prefixes) it reads
    profile: Callable[[Any], str]  # a loaded processor -> its map profile string
    build_tiny: Callable[[], tuple[Any, Any]] | None = None  # -> (random-init model, processor), offline
    load_processor: Callable[[Path], Any] | None = None  # when AutoProcessor needs optional packages
    canvas: int = SIDE  # the tiny model's canvas
    checked: str = ""  # what the tests check for it (the support matrix's last column)
    aliases: tuple[str, ...] = ()  # other tiny names (`tiny` is LLaVA-1.5's)
    order: int = 100  # place in the support matrix (lower first)
    unsupported: str = ""  # why linebench cannot train it (then it is listed, and refused in one line)
    map_profile: str = ""  # the map profile's base name when it is not `name` (Qwen3.5 uses Qwen3-VL's)
    image_token: str = ""  # the token the model fills with image features, when the processor's image_token_id names a placeholder

    @property
    def profile_base(self) -> str:
        return self.map_profile or self.name

    @property
    def tiny_name(self) -> str:
        return f"tiny-{self.name}"

    def reads(self, processor) -> bool:
        name = type(processor).__name__
        return any(name.startswith(p) for p in self.processors)


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    REGISTRY[family.name] = family
    return family


# --------------------------------------------------------------------------- tiny tokenizers

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


def vocabulary(extra_special: tuple[str, ...] = ()) -> list[str]:
    """Tokens in id order: specials (+ a family's own), words, names, numbers 0..64, punctuation."""
    words = _WORDS + [w.capitalize() for w in _WORDS] + _NAMES + [str(i) for i in range(65)] + _PUNCT
    seen, out = set(), []
    for t in SPECIAL + list(extra_special) + words:
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


def tokenizer(image_placeholder: str, extra_special: tuple[str, ...] = ()):
    """A word-level tokenizer of the tasks' questions and answers (built locally with `tokenizers`)
    whose chat template puts `image_placeholder` where an image goes; `extra_special`: a family's
    own special tokens (its image token, tile markers, ...), each one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(vocabulary(extra_special))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    # words, each punctuation mark on its own ("(3," -> "(", "3", ",")
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, punctuation too
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>", bos_token=None,
        additional_special_tokens=[t for t in SPECIAL + list(extra_special) if t not in ("[PAD]", "[UNK]")],
    )  # fmt: skip
    fast.chat_template = TEMPLATE.replace("{{ IMAGE }}", image_placeholder)
    return fast


def small_text(tok, **over) -> dict[str, Any]:
    """A small decoder's settings (4 layers, width 128, GQA 4:2) for a tiny model's text config."""
    cfg = dict(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )  # fmt: skip
    cfg.update(over)
    return cfg
