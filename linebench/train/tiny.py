"""The tiny VLMs: each family's transformers classes, random init, built from configs, no download, ever.

`tiny` (the default) is LLaVA-1.5's: a small CLIP vision tower (224 px, 14 px patches: 16x16 = 256
image tokens) + a small Llama decoder; `tiny-<family>` is any other family's (`tiny-qwen2.5-vl`: a
small Qwen2.5-VL, 8x8 = 64 image tokens at 224x224); `linebench.families` lists them and builds each
(`Family.build_tiny`). Each comes with a tokenizer built locally with `tokenizers` (a word-level
vocabulary of the tasks' questions and answers) and a chat template, in an ordinary checkpoint folder
that `from_pretrained` reloads (`build_tiny(name, folder)`; `linebench train` caches it under
~/.cache/linebench/tiny/<name>-v<version>).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..families import tiny_family, tiny_names
from ..families.base import SIDE

ALL = tiny_names()  # every name a tiny model answers to (`tiny` and `tiny-llava-1.5` are one model)
VERSION = 1  # bump when a tiny model's config, vocabulary or template changes
CANVAS = SIDE  # what the tiny models see well (and the canvas of the data generated for them)
MARK = "linebench_tiny.json"  # in a tiny checkpoint folder: what it is


def primary(name: str) -> str:
    """The one name a tiny model is built and cached under (`tiny` for LLaVA-1.5's)."""
    family = tiny_family(name)
    return family.aliases[0] if family.aliases else family.tiny_name


TINY = tuple(dict.fromkeys(primary(n) for n in ALL))  # one name per tiny model


def build_tiny(name: str, folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny model (random init from `seed`), its tokenizer and processor; save them to `folder`."""
    import torch

    family = tiny_family(name)  # a UsageError naming the tiny models for any other name
    name = primary(name)
    torch.manual_seed(seed)
    model, proc = family.build_tiny()
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
    name = primary(name)
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
    """A tiny model's processor from its folder (its family's own loader where it has one)."""
    from transformers import AutoProcessor

    info = is_tiny(folder)
    family = tiny_family(info["name"]) if info is not None and info["name"] in ALL else None
    if family is not None and family.load_processor is not None:
        return family.load_processor(Path(folder))
    return AutoProcessor.from_pretrained(folder)
