"""The model a run trains: which families can train, whether a checkpoint folder is whole (without
loading it), and loading the model with its processor."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..families import for_model_type
from ..models import load_processor

LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def weights_problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder's weights (None: every weights file is there and its
    header and length are whole), without loading them: safetensors files are opened (a truncated
    file fails), torch files must be whole zip archives."""
    folder = Path(folder)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                files = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                return f"{index} is damaged ({type(e).__name__})"
            break
    else:
        files = [n for n in ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin") if (folder / n).is_file()][:1]
    if not files:
        return "it has no weights (model.safetensors or pytorch_model.bin)"
    for name in files:
        problem = file_problem(folder / name)
        if problem:
            return problem
    return None


def file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "np"):
                pass
        except Exception as e:  # SafetensorError: a truncated or overwritten file
            return f"{path.name} is damaged ({str(e).splitlines()[0][:120]})"
        return None
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: a cut one has no directory at its end
        return f"{path.name} is damaged (not a whole torch file)"
    return None


def check_model(name: str, folder: Path, layers: str) -> None:
    """Before any work: the model folder's config is JSON of a supported model, its weights are
    whole, and --klal-layers fits its layer count."""
    from .capture import CaptureError, parse_layers

    cfg_file = Path(folder) / "config.json"
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--model {name}: {cfg_file} is not valid JSON ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    for_model_type(model_type, f"{folder}: ")
    problem = weights_problem(folder)
    if problem:
        raise UsageError(f"--model {name}: {problem}")
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(folder)
        count = cfg.get_text_config().num_hidden_layers
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"--model {name}: cannot read its config ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    try:
        parse_layers(layers, count)
    except CaptureError as e:
        raise UsageError(f"--klal-layers: {e}") from None


def load_model(folder: Path, *, bf16: bool, device: str | None = None):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(folder)
    for_model_type(cfg.model_type, f"{folder}: ")  # one line for a family linebench cannot train
    # a model loaded from a string is float32 unless dtype is given: say it
    dtype = torch.bfloat16 if bf16 else torch.float32
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    except (OSError, ValueError) as e:  # weights that do not fit the config, a file that changed since it was checked
        raise UsageError(f"{folder}: cannot load the model ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    return model, load_processor(folder)


def lora_targets(model) -> list[str]:
    """The language model's linear projections (`LORA_PROJECTIONS`), by full module name: LoRA goes on
    the text decoder only, never the vision tower (whose blocks share those names in Qwen2.5-VL),
    whatever the family calls its decoder (`language_model`, Idefics3's `text_model`, ...)."""
    inside = {id(m) for m in model.get_decoder().modules()}
    names = [name for name, module in model.named_modules() if id(module) in inside and name.rsplit(".", 1)[-1] in LORA_PROJECTIONS]
    if not names:
        raise UsageError(f"{type(model).__name__}: no {'/'.join(LORA_PROJECTIONS)} layers in its language model for --lora")
    return names
