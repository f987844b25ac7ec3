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
    return ", ".join(f.label for f in REGISTRY.values() if not f.unsupported)


def for_model_type(model_type: str | None, where: str = "") -> Family:
    for family in REGISTRY.values():
        if model_type in family.model_types:
            if family.unsupported:
                raise UsageError(f"{where}{family.label} ({model_type}) cannot be trained with KLAL yet: {family.unsupported}")
            return family
    raise UsageError(f"{where}model type {model_type!r} is not supported for training and evaluation (supported: {supported()})")


def for_processor(processor) -> Family:
    for family in REGISTRY.values():
        if family.reads(processor) and not family.unsupported:
            return family
    raise UsageError(f"no map profile for the processor {type(processor).__name__} (supported families: {supported()})")


def tiny_names() -> tuple[str, ...]:
    """Every tiny model's name: `tiny` (LLaVA-1.5's) and `tiny-<family>` for each family with one."""
    names = []
    for f in REGISTRY.values():
        if f.build_tiny is not None and not f.unsupported:
            names += [*f.aliases, f.tiny_name]
    return tuple(names)


def tiny_family(name: str) -> Family:
    for f in REGISTRY.values():
        if f.build_tiny is not None and not f.unsupported and name in (f.tiny_name, *f.aliases):
            return f
    raise UsageError(f"no tiny model {name!r}; the tiny models are {', '.join(tiny_names())}")


def matrix() -> list[dict[str, str]]:
    """The support matrix, a row per family: what docs/training.md shows and `linebench models` prints."""
    rows = []
    for f in REGISTRY.values():
        ok = "✗" if f.unsupported else "✓"
        rows.append({
            "family": f.label, "model_type": ", ".join(f"`{t}`" for t in f.model_types), "map profile": f"`{f.profile_base}`",
            "tiny model": " / ".join(f"`{n}`" for n in (*f.aliases, f.tiny_name)) if f.build_tiny and not f.unsupported else "–",
            "train": ok, "LoRA": ok, "resume": ok, "eval": ok, "attention": ok,
            "checked": f.unsupported or f.checked,
        })  # fmt: skip
    return rows
