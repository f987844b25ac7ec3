"""lmms-eval task functions for linebench: the scoring is linebench's own answer parser (the one
`linebench score` and `linebench eval` use), imported, never copied, so the accuracy lmms-eval
reports equals linebench's on the same predictions. (lmms-eval's BlindTest regexes miscounted
once, lmms-eval PR #931: parsers copied into a task drift.)"""

from __future__ import annotations

from linebench.answers import is_correct
from linebench.tasks import get_task


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def answer_kind(task: str) -> str:
    return getattr(get_task(task), "answer_kind", "number")


def process_results(doc, results):
    """{"accuracy": 1.0 or 0.0} (an unparseable answer counts as wrong, as in `linebench score`),
    and the row's level for per-level breakdowns."""
    prediction = results[0] if results else ""
    ok = is_correct(answer_kind(doc["task"]), prediction, str(doc["answer"]))
    return {"accuracy": float(bool(ok))}
