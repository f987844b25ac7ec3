"""Training with KLAL: the capture inside HF models, TRL's SFTTrainer with the loss added, the
collator that adds each sample's map, the tiny default VLMs, and `linebench train`."""

from .capture import CaptureError, KLALCapture, format_token_ids, parse_layers, register

__all__ = ["CaptureError", "KLALCapture", "format_token_ids", "parse_layers", "register", "KLALTrainer", "KLALCollator", "map_profile", "examples_transform"]


def __getattr__(name: str):
    # TRL is imported only by what needs it
    if name == "KLALTrainer":
        from .trainer import KLALTrainer

        return KLALTrainer
    if name in ("KLALCollator", "map_profile", "examples_transform", "as_example"):
        from . import data

        return getattr(data, name)
    raise AttributeError(name)
