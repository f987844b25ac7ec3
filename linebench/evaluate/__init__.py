"""Evaluating VLMs on linebench: `linebench eval` (`run.evaluate_folder`), with a Hugging Face backend
(local checkpoints, attention diagnostics) and an OpenAI-compatible one (any served model).

    from linebench.evaluate import evaluate
    report = evaluate(model, processor, rows)          # accuracy, per level, attention per layer

The names below come from `hf`, imported on first use: an eval against a server never loads torch.
"""

__all__ = ["evaluate", "generate", "attention_metrics"]


def __getattr__(name: str):
    if name in __all__:
        from . import hf

        return getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
