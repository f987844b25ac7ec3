"""The VLM families linebench trains and evaluates (one module each; `base.Family` says what a record
holds). `for_model_type` / `for_processor` find a family; `tiny_names` lists the tiny models."""

from __future__ import annotations

from ..errors import UsageError
from .base import REGISTRY, Family


def _load() -> None:
    """Import every family module (each registers its record): a new family is a new module, nothing
    else to edit. The support matrix lists them in `Family.order`."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    ordered = sorted(REGISTRY.values(), key=lambda f: (f.order, f.name))
    REGISTRY.clear()
    REGISTRY.update((f.name, f) for f in ordered)


_load()

__all__ = ["Family", "REGISTRY", "for_model_type", "for_processor", "tiny_family", "tiny_names", "supported"]


def supported() -> str:
    """The trainable families, for messages: "LLaVA-1.5, Qwen2.5-VL, ..."."""
    return ", ".join(f.label for f in REGISTRY.values())


def for_model_type(model_type: str | None, where: str = "") -> Family:
    for family in REGISTRY.values():
        if model_type in family.model_types:
            return family
    raise UsageError(f"{where}model type {model_type!r} is not supported for training and evaluation (supported: {supported()})")


def for_processor(processor) -> Family:
    for family in REGISTRY.values():
        if family.reads(processor):
            return family
    raise UsageError(f"no map profile for the processor {type(processor).__name__} (supported families: {supported()})")


def tiny_names() -> tuple[str, ...]:
    """Every tiny model's name: `tiny` (LLaVA-1.5's) and `tiny-<family>` for each family with one."""
    names = []
    for f in REGISTRY.values():
        if f.build_tiny is not None:
            names += [*f.aliases, f.tiny_name]
    return tuple(names)


def tiny_family(name: str) -> Family:
    for f in REGISTRY.values():
        if f.build_tiny is not None and name in (f.tiny_name, *f.aliases):
            return f
    raise UsageError(f"no tiny model {name!r}; the tiny models are {', '.join(tiny_names())}")
