"""A linebench folder as a harness sees it: the image, the prompt, the answer and what scoring
needs, nothing else (the attention maps, geometry and params are 40+ KB a row, and a harness logs
every column it is given), and one row's verdict by `linebench score`'s own parser.

Rows of a `linebench maps` folder are first made linebench-style (`annotate.as_rows`: the preset's
prompt, the answer as text, task "grounding-<kind>") and keep their annotations as `target`, the
part of the geometry that `pointing.judge` reads (canvas and annotations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..score import level_order, row_correct

KEEP = ("id", "question", "answer", "task", "difficulty")  # the columns a harness row keeps, with the image
TARGET = "target"  # grounding rows: {"canvas": ..., "annotations": ...} as JSON
GROUNDING_LEVEL = "all"  # `linebench score` reports grounding rows overall only


def target_of(geometry: str | Mapping[str, Any]) -> str:
    """The part of a `linebench maps` row's geometry that its answer is judged against."""
    g = json.loads(geometry) if isinstance(geometry, (str, bytes)) else geometry
    return json.dumps({"canvas": g["canvas"], "annotations": g.get("annotations") or {}}, separators=(",", ":"), sort_keys=True)


def verdict(row: Mapping[str, Any], prediction: Any) -> bool | None:
    """`linebench score`'s verdict on one harness row (None: nothing could be parsed, counted wrong)."""
    task = str(row["task"])
    if task.startswith("grounding-"):
        return row_correct({"geometry": row[TARGET]}, prediction, task)
    return row_correct(row, prediction, task)


def by_level(items: Iterable[tuple[str, str, bool]]) -> dict[str, float]:
    """(task, level, correct) -> accuracy per level, in the tasks' level order (as `linebench score`)."""
    counts: dict[str, list[int]] = {}
    tasks: dict[str, None] = {}
    for task, level, ok in items:
        tasks.setdefault(str(task))
        c = counts.setdefault(str(level), [0, 0])
        c[0] += bool(ok)
        c[1] += 1
    order = level_order(list(tasks))
    ranked = sorted(counts, key=lambda lv: (order.index(lv) if lv in order else len(order), lv))
    return {lv: counts[lv][0] / counts[lv][1] for lv in ranked}


def harness_dataset(ds, folder: Path | str | None = None):
    """A split (a `datasets.Dataset`) with only the columns a harness needs: image + KEEP (+ TARGET for
    a `linebench maps` folder, whose rows become linebench-style first). No image is decoded."""
    from ..annotate import as_rows, is_maps_folder

    if folder is not None and is_maps_folder(folder):
        ds = as_rows(ds, folder)

        def add(geometry: list[str]) -> dict[str, list]:
            return {TARGET: [target_of(g) for g in geometry], "difficulty": [GROUNDING_LEVEL] * len(geometry)}

        ds = ds.map(add, batched=True, input_columns=["geometry"], load_from_cache_file=False)
    keep = ["image", *KEEP] + ([TARGET] if TARGET in ds.column_names else [])
    missing = [c for c in keep if c not in ds.column_names]
    if missing:
        from ..errors import UsageError

        raise UsageError(f"the rows have no {', '.join(missing)} column(s): not a linebench dataset")
    return ds.select_columns(keep)
