"""Which folder a `--model` names: a tiny default (built in linebench's cache), a local checkpoint
folder, or a Hub id already in the user's Hugging Face cache; never a download.

`linebench train` and `linebench eval` both resolve their model with `resolve_model` and load its
processor with `load_processor`;
`cached_snapshot` is the cache lookup underneath it, which eval's `--data` (a dataset Hub id) shares.
Nothing heavy is imported until a name is resolved (huggingface_hub, and torch with the tiny models).
"""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError


def cached_snapshot(repo_id: str, repo_type: str = "model") -> Path | None:
    """The folder of `repo_id`'s snapshot in the user's Hugging Face cache, or None when it is not
    there (or `repo_id` is not a valid id). Never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def resolve_model(name: str) -> Path:
    """A folder holding the checkpoint: a tiny default (built in linebench's cache), a local folder,
    or a Hub id already in the user's cache. Never downloads; anything else is one UsageError line."""
    from .families import supported
    from .train import tiny

    if name in tiny.ALL:
        return tiny.cached(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {name}: the folder has no config.json (not a transformers checkpoint)")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UsageError(
            f"--model {name}: no such folder, and not a Hub id (ORG/NAME); the tiny models are {', '.join(tiny.ALL)} "
            f"(families: {supported()})"
        )
    folder = cached_snapshot(name)
    if folder is None:
        raise UsageError(f"--model {name}: not in your Hugging Face cache (linebench never downloads weights; run `hf download {name}` first)")
    return folder


def load_processor(folder: Path):
    """The processor of a checkpoint folder: a tiny model's own, else AutoProcessor's, else (when
    AutoProcessor needs optional packages, e.g. Qwen's video processor wants torchvision) the
    family's loader; a pad token set (EOS) where the tokenizer has none. One line for a damaged one."""
    import json

    from transformers import AutoProcessor

    from .families import for_model_type
    from .train import tiny

    try:
        if tiny.is_tiny(folder):
            processor = tiny.load_processor(folder)
        else:
            try:
                processor = AutoProcessor.from_pretrained(folder)
            except (ImportError, ValueError) as e:  # transformers 5.2x: "requires `torchvision`" is a ValueError (InternVL's video processor)
                if isinstance(e, ValueError) and "torchvision" not in str(e):
                    raise
                model_type = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
                family = for_model_type(model_type, f"{folder}: ")
                if family.load_processor is None:
                    raise UsageError(f"{folder}: cannot load its processor ({e})") from None
                processor = family.load_processor(Path(folder))
    except (OSError, ValueError, TypeError) as e:  # no tokenizer, a damaged tokenizer or processor file
        raise UsageError(f"{folder}: cannot load its processor ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor
