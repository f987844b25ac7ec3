"""linebench: synthetic visual-grounding benchmarks with exact geometry and ground-truth attention maps."""

from .version import CORE_VERSION, __version__

__all__ = ["CORE_VERSION", "__version__", "attention_map", "map_transform"]


def __getattr__(name: str):
    # `linebench.attention_map` / `linebench.map_transform` without importing numpy at `import linebench`
    if name in ("attention_map", "map_transform"):
        from . import maps

        return getattr(maps, name)
    raise AttributeError(f"module 'linebench' has no attribute {name!r}")
