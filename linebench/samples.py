"""From (run spec, index) to one row: seeds, scene, picture, maps. Pure apart from PNG encoding.

Every sample's randomness derives only from (base seed, task, split, index), so a row does not
depend on worker count, shard size or machine, and `verify` can rebuild any row on its own.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .version import CORE_VERSION
from .grids import default_maps
from .maps import MapParams, map_values
from .render import encode_png, rasterise
from .errors import GenerationError, MapError
from .tasks import STRATIFIED, ParamSpec, Scene, Task, get_task, levels_for, resolve_params

SPLITS = ("train", "validation", "test", "ood")


# --------------------------------------------------------------------------- the row's schema


@dataclass(frozen=True)
class Field:
    """A column every generated row has (a task's own are `tasks.Column`s)."""

    name: str
    kind: str  # a `datasets.Value` dtype, or "image"
    help: str  # what the dataset card says about it


# The columns of every generated row, in order: HEAD, then the task's own (`Task.columns`), then
# TAIL, then one `attn_<profile>` map per profile. `features` turns them into the `datasets.Features`
# the shards and the card carry; `RowMaker` fills them. docs/schema.md documents the same contract.
HEAD_COLUMNS = (
    Field("id", "string", "unique, stable id: `<task>-<split>-s<base seed>-<index>`"),
    Field("image", "image", "the picture (PNG, RGB, canvas size)"),
    Field("question", "string", "the question, answerable from the picture alone"),
    Field("answer", "string", "the exact answer, computed from the geometry"),
    Field("task", "string", "task name"),
    Field("split", "string", "split name"),
    Field("index", "int64", "position of the sample in its split"),
    Field("seed", "int64", "the sample's own seed; with `params` it regenerates the row"),
    Field("generator_version", "string", "version of the generator that made the row (`core<N>-<task><M>`)"),
    Field("difficulty", "string", "difficulty level the sample was drawn at"),
)
TAIL_COLUMNS = (
    Field("attempts", "int32", "scenes drawn until one passed the audit"),
    Field("params", "string", "JSON: every parameter used (resolved knobs, audit thresholds, canvas, maps, base seed)"),
    Field("geometry", "string", "JSON: the exact scene (see docs/schema.md) incl. the attention-map targets"),
)
_PY_TO_VALUE = {int: "int32", float: "float32", bool: "bool", str: "string"}  # a task column's Python type -> dtype


def features(spec: "RunSpec"):
    """The `datasets.Features` of a run's rows: declared once, stored in the shards and the card."""
    from datasets import Array2D, Features, Image, Value

    from .grids import grid_shape

    cols: dict[str, Any] = {c.name: Image() if c.kind == "image" else Value(c.kind) for c in HEAD_COLUMNS}
    for c in get_task(spec.task).columns:
        cols[c.name] = Value(_PY_TO_VALUE[c.kind])
    cols.update({c.name: Value(c.kind) for c in TAIL_COLUMNS})
    for name in spec.maps:
        cols[f"attn_{name}"] = Array2D(grid_shape(name, spec.params.canvas), "float32")
    return Features(cols)


def column_help(task: Task) -> dict[str, str]:
    """Column name -> what the card says about it (the maps' columns are described by the card)."""
    return {c.name: c.help for c in (*HEAD_COLUMNS, *task.columns, *TAIL_COLUMNS)}


def _key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def row_seed(base_seed: int, task: str, split: str, index: int) -> int:
    """The seed stored on the row: a 63-bit integer from SeedSequence((base, task, split, index))."""
    ss = np.random.SeedSequence([base_seed, _key(task), _key(split), index, 0])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def level_of(base_seed: int, task: str, split: str, index: int, levels: list[str]) -> str:
    """The difficulty level of a sample, from a stream separate from the scene's."""
    if len(levels) == 1:
        return levels[0]
    ss = np.random.SeedSequence([base_seed, _key(task), _key(split), index, 1])
    return levels[int(ss.generate_state(1)[0]) % len(levels)]


def generator_version(task: Task) -> str:
    return f"core{CORE_VERSION}-{task.name}{task.version}"


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a generated split (and nothing that does not, like workers)."""

    task: str
    split: str = "train"
    n: int = 1000
    seed: int = 0
    params: ParamSpec = field(default_factory=ParamSpec)
    maps: tuple[str, ...] | None = None  # None: grids.default_maps(canvas)
    map_params: MapParams = field(default_factory=MapParams)

    def __post_init__(self) -> None:
        if self.maps is None:
            object.__setattr__(self, "maps", default_maps(self.params.canvas))

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "split": self.split,
            "n": self.n,
            "seed": self.seed,
            "canvas": list(self.params.canvas),
            "difficulty": self.params.difficulty,
            "knobs": dict(sorted(self.params.overrides.items())),
            "maps": list(self.maps),
            "map_params": self.map_params.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        return cls(
            task=d["task"],
            split=d["split"],
            n=int(d["n"]),
            seed=int(d["seed"]),
            params=ParamSpec(tuple(d["canvas"]), d["difficulty"], dict(d["knobs"])),
            maps=tuple(d["maps"]),
            map_params=MapParams(**d["map_params"]),
        )


def sample_params(spec: RunSpec, task: Task, level: str) -> dict[str, Any]:
    """The `params` of a row: what `Task.sample` was given, plus the map settings and base seed."""
    params = resolve_params(task, level, spec.params)
    params["maps"] = {"profiles": list(spec.maps), **spec.map_params.to_dict()}
    params["base_seed"] = spec.seed
    return params


def scene_maps(scene_geometry: Mapping[str, Any], profiles: tuple[str, ...], map_params: MapParams) -> dict[str, np.ndarray]:
    """`attn_<profile>` arrays (float32, each summing to 1) from a scene's stored geometry: [rows, cols]
    for a one-grid layout, [1, tokens] (token order) for several grids."""
    from .grids import layout as make_layout

    out = {}
    # profiles with the same token cells share one map (on a 448 px square: grid24 = llava-1.5, qwen2.5-vl = internvl)
    done: dict[tuple, np.ndarray] = {}
    canvas = tuple(int(v) for v in scene_geometry["canvas"])
    targets = scene_geometry["targets"]
    for name in profiles:
        lay = make_layout(name, canvas)
        key = tuple((g.x_edges.tobytes(), g.y_edges.tobytes()) for g in lay.grids)
        if key not in done:  # = attention_map(scene_geometry, lay, **map_params.to_dict()).values
            done[key] = map_values(targets, lay, map_params)
        values = done[key]
        out[f"attn_{name}"] = values.reshape(lay.grids[0].shape if len(lay.grids) == 1 else (1, -1))
    return out


def build(task: Task, seed: int, params: Mapping[str, Any]) -> tuple[Scene, bytes]:
    """Scene and PNG bytes from a row's stored seed and params (the same path generate and verify take)."""
    scene = task.sample(np.random.default_rng(seed), params)
    png = encode_png(rasterise(scene.canvas, task.draw(scene.geometry)))
    return scene, png


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False)


class RowMaker:
    """Builds the rows of one RunSpec; parameters are resolved (and checked) once per level."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.task = get_task(spec.task)
        self.levels = levels_for(self.task, spec.params.difficulty)
        self.params = {lv: sample_params(spec, self.task, lv) for lv in self.levels}
        self._params_json = {lv: dumps(p) for lv, p in self.params.items()}  # the same for every row of a level
        self.version = generator_version(self.task)

    def level(self, index: int) -> str:
        if self.spec.params.difficulty == STRATIFIED:
            return self.levels[index % len(self.levels)]
        return level_of(self.spec.seed, self.task.name, self.spec.split, index, self.levels)

    def row_id(self, index: int) -> str:
        return f"{self.task.name}-{self.spec.split}-s{self.spec.seed}-{index:07d}"

    def __call__(self, index: int) -> dict[str, Any]:
        spec, task = self.spec, self.task
        level = self.level(index)
        params = self.params[level]
        seed = row_seed(spec.seed, task.name, spec.split, index)
        try:
            scene, png = build(task, seed, params)
        except GenerationError as e:
            raise GenerationError(f"row {self.row_id(index)} ({level}): {e}") from None
        row: dict[str, Any] = {
            "id": self.row_id(index),
            "image": png,
            "question": scene.question,
            "answer": scene.answer,
            "task": task.name,
            "split": spec.split,
            "index": index,
            "seed": seed,
            "generator_version": self.version,
            "difficulty": level,
        }
        row.update(scene.knobs)
        row["attempts"] = scene.attempts
        row["params"] = self._params_json[level]
        row["geometry"] = dumps(scene.geometry)
        try:
            row.update(scene_maps(scene.geometry, spec.maps, spec.map_params))
        except MapError as e:
            raise GenerationError(f"row {self.row_id(index)} ({level}): {e}") from None
        return row
