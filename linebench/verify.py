"""`linebench verify`: check a dataset folder against its manifest and rebuild rows from their seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .dataset import read_manifest, sha256_file, task_of
from .maps import MapParams
from .samples import build, dumps, scene_maps


@dataclass
class VerifyReport:
    shards: int = 0
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _rows_to_check(total: int, sample: int, all_rows: bool) -> set[int]:
    if all_rows or sample >= total:
        return set(range(total))
    return set(np.linspace(0, total - 1, num=max(sample, 1)).round().astype(int).tolist())


def verify(
    folder: Path, *, all_rows: bool = False, sample: int = 32, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    folder = Path(folder)
    manifest = read_manifest(folder)
    report = VerifyReport()
    task = task_of(manifest)
    total = sum(s["rows"] for s in manifest["shards"])
    wanted = _rows_to_check(total, sample, all_rows)
    report_progress = progress or (lambda done, total: None)
    offset = 0
    for shard in manifest["shards"]:
        path = folder / shard["path"]
        report.shards += 1
        if not path.exists():
            report.problems.append(f"{shard['path']}: missing")
            offset += shard["rows"]
            continue
        if sha256_file(path) != shard["sha256"]:
            report.problems.append(f"{shard['path']}: sha256 differs from manifest.json")
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            report.problems.append(f"{shard['path']}: unreadable ({e})")
            offset += shard["rows"]
            continue
        if table.num_rows != shard["rows"]:
            report.problems.append(f"{shard['path']}: {table.num_rows} rows, manifest says {shard['rows']}")
        picks = sorted(i - offset for i in wanted if offset <= i < offset + table.num_rows)
        for r in picks:
            row = table.slice(r, 1).to_pylist()[0]
            report.problems.extend(_check_row(task, row))
            report.rows_checked += 1
            report_progress(report.rows_checked, len(wanted))
        offset += shard["rows"]
    return report


def _check_row(task, row: dict) -> list[str]:
    import json

    problems = []
    rid = row["id"]
    params = json.loads(row["params"])
    scene, png = build(task, int(row["seed"]), params)
    if png != row["image"]["bytes"]:
        problems.append(f"{rid}: image bytes differ from a re-render")
    for name, value in (("question", scene.question), ("answer", scene.answer), ("geometry", dumps(scene.geometry))):
        if value != row[name]:
            problems.append(f"{rid}: {name} differs from a re-render")
    for name, value in scene.knobs.items():
        stored = row.get(name)
        if isinstance(value, float) and stored is not None:
            same = abs(float(np.float32(value)) - stored) <= 1e-6 * max(1.0, abs(value))
        else:
            same = stored == value
        if not same:
            problems.append(f"{rid}: column {name} = {stored!r}, re-render gives {value!r}")
    m = dict(params["maps"])
    profiles = tuple(m.pop("profiles"))
    for name, arr in scene_maps(json.loads(row["geometry"]), profiles, MapParams(**m)).items():
        stored = np.asarray(row[name], dtype=np.float32)
        if stored.shape != arr.shape or not np.array_equal(stored, arr):
            problems.append(f"{rid}: {name} differs from the map recomputed from geometry")
    return problems
