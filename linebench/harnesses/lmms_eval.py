"""The functions lmms-eval's linebench task files call (`!function utils.NAME`, where the task
folder's utils.py imports them from here): the shipped `integrations/lmms_eval/` (the Hub
releases) and every folder `linebench export --to lmms-eval` writes.

Scoring is `linebench score`'s own parser, imported, never copied, so lmms-eval's accuracy equals
linebench's on the same answers (lmms-eval's BlindTest regexes once miscounted, lmms-eval PR #931:
parsers copied into a task drift). `process_docs` keeps only what the prompt and the scoring need,
so `--log_samples` logs a few hundred bytes a row instead of 40+ KB of maps and geometry.
This module does not import lmms-eval; lmms-eval imports it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .rows import by_level, harness_dataset, verdict

TASK_FILE = """\
# {what}
# lmms-eval --include_path {include} --tasks {task}
task: "{task}"
dataset_path: {path}
test_split: {split}
output_type: generate_until
process_docs: !function utils.process_docs
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: 32
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
  - metric: per_level
    aggregation: !function utils.per_level
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: ""
metadata:
  version: {version}
"""
TASK_VERSION = "2.0"  # 1.0 had no process_docs and no per_level
# The per-level metric's name must not contain "accuracy": a group's aggregate_metric_list entry
# "accuracy" takes every metric whose name contains it (lmms-eval 0.7.3, consolidate_group_results)
# and would try to average the per-level dicts.


def task_file(*, task: str, path: str, split: str, include: str, what: str) -> str:
    """One lmms-eval task file (the shipped ones and the exported one are this text). The path and
    the split are written as JSON strings (YAML reads them back whatever they hold: ": ", "#")."""
    return TASK_FILE.format(task=task, path=json.dumps(path), split=json.dumps(split), include=include, what=what, version=TASK_VERSION)


def doc_to_visual(doc: dict[str, Any]) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The row's question, as `linebench eval` asks it (it says how to answer), with the task's
    pre_prompt / post_prompt around it (empty by default)."""
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def process_docs(dataset):
    """A generated folder's or a release's split with only image, id, question, answer, task and
    difficulty (the maps, geometry, params and knob columns dropped: lmms-eval logs every column
    but the image with each sample)."""
    return harness_dataset(dataset)


def docs_for(folder: str | Path) -> Callable:
    """process_docs for one folder, as an exported task folder binds it: a `linebench maps`
    folder's rows become linebench-style (prompt, answer, task) and keep their annotations."""
    folder = str(folder)

    def process(dataset):
        return harness_dataset(dataset, folder)

    return process


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """{"accuracy": 1.0 or 0.0 (an unparseable answer is wrong, as in `linebench score`),
    "per_level": the row's task, level and verdict, for `per_level`}."""
    prediction = results[0] if results else ""
    ok = bool(verdict(doc, prediction))
    return {"accuracy": float(ok), "per_level": {"task": doc["task"], "level": doc["difficulty"], "correct": ok}}


def per_level(items: list[dict[str, Any]]) -> dict[str, float]:
    """lmms-eval's aggregation of `per_level`: accuracy per difficulty level, in the task's
    level order (easy, medium, hard, ood), equal to `linebench score`'s per-level table."""
    return by_level((it["task"], it["level"], it["correct"]) for it in items)
