"""Evaluating VLMs on linebench: `linebench eval` (`run.evaluate_folder`), with a Hugging Face backend
(local checkpoints, attention diagnostics) and an OpenAI-compatible one (any served model).

    from linebench.evaluate import evaluate
    report = evaluate(model, processor, rows)          # accuracy, per level, attention per layer
"""

from .hf import attention_metrics, evaluate, generate

__all__ = ["evaluate", "generate", "attention_metrics"]
