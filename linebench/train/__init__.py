"""The reference trainer: KLAL capture inside HF models (needs the `train` extra: torch, transformers)."""

from .capture import KLALCapture, parse_layers, register

__all__ = ["KLALCapture", "parse_layers", "register"]
