"""The Task protocol, its plain-data companions, and the registry of installed tasks.

A task is found through the entry-point group `linebench.tasks` (name = task name, value =
`module:Class`), so a third-party package adds one by declaring an entry point; linebench
itself never imports `generators/`.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import GenerationError, UsageError
from .render import Primitive

ENTRY_POINT_GROUP = "linebench.tasks"
MIXED = "mixed"  # the difficulty that draws a level per sample (from every level but OOD)
STRATIFIED = "stratified"  # every level but OOD in turn (index mod levels): equal shares to within one row
OOD = "ood"  # the out-of-distribution level: harder than anything `mixed` draws


@dataclass(frozen=True)
class Knob:
    """A parameter users may set with `--knob name=value` (ints and floats also `lo..hi`).
    `kind` is int, float, bool or str (a str knob lists its `choices`)."""

    name: str
    kind: type  # int, float or bool
    default: Any  # scalar, or [lo, hi] for a range sampled per scene
    help: str
    bounds: tuple[float, float] | None = None  # allowed values, inclusive
    audit: bool = False  # an audit threshold rather than a scene property
    choices: tuple[str, ...] | None = None  # allowed values of a str knob


@dataclass(frozen=True)
class Column:
    """A per-sample value stored as a typed column of the row (a knob as actually drawn)."""

    name: str
    kind: type  # int, float or bool
    help: str


@dataclass
class Scene:
    """Everything about one sample, as plain JSON-safe data."""

    canvas: tuple[int, int]  # (width, height) px
    question: str
    answer: str
    geometry: dict[str, Any]  # what `Task.draw` needs, plus "targets" (see linebench.maps)
    knobs: dict[str, Any]  # values for every `Task.columns` entry
    attempts: int = 1  # scenes drawn until one passed the audit


@runtime_checkable
class Task(Protocol):
    name: str
    version: str  # bump when this task's output bytes change
    description: str
    knobs: Sequence[Knob]
    columns: Sequence[Column]
    levels: Mapping[str, Mapping[str, Any]]  # level name -> knob values (scalar or [lo, hi])
    # Optional: `answer_kind` ("number", the default, or "cell"): how `linebench score` parses answers.

    def check(self, params: Mapping[str, Any]) -> None:
        """Raise UsageError if the resolved parameters cannot produce a scene (e.g. canvas too small)."""

    def sample(self, rng: np.random.Generator, params: Mapping[str, Any]) -> Scene:
        """A scene that passed the audit; a pure function of the generator state and params."""

    def draw(self, geometry: Mapping[str, Any]) -> list[Primitive]:
        """The primitives of the picture, from the geometry alone (so rows can be re-rendered)."""


@functools.lru_cache(maxsize=None)
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    return sorted(_entry_points())


@functools.lru_cache(maxsize=None)
def get_task(name: str) -> Task:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(task_names()) or "none (is linebench installed with `pip install -e .`?)"
        raise UsageError(f"unknown task {name!r}; installed tasks: {known}")
    task = eps[name].load()()
    if not isinstance(task, Task):
        raise UsageError(f"entry point {name!r} does not implement linebench.tasks.Task")
    return task


# --------------------------------------------------------------------------- parameters


def knob_text(value: Any) -> str:
    """A knob value as `--knob` text, the inverse of `parse_value`: 3, 2..5, true, 0.5."""
    if isinstance(value, (list, tuple)):
        return f"{value[0]}..{value[1]}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(knob: Knob, text: str) -> Any:
    """`--knob` text -> a knob value: '3', '2..5', 'true', '0.5'."""
    text = text.strip()
    try:
        if knob.kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if knob.kind is str:
            if knob.choices and text not in knob.choices:
                raise ValueError
            return text
        if ".." in text:
            lo, hi = (knob.kind(v) for v in text.split("..", 1))
            return [lo, hi]
        return knob.kind(text)
    except ValueError:
        form = (
            "true/false" if knob.kind is bool
            else "one of " + ", ".join(knob.choices or ()) if knob.kind is str
            else f"a {knob.kind.__name__} or a range lo..hi"
        )
        raise UsageError(f"knob {knob.name!r} takes {form}, got {text!r}") from None


def parse_overrides(task: Task, items: Sequence[str]) -> dict[str, Any]:
    """['curves=4', 'bends=1..3'] -> {'curves': 4, 'bends': [1, 3]} (validated against the knobs)."""
    by_name = {k.name: k for k in task.knobs}
    out: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--knob expects NAME=VALUE, got {item!r}")
        if name not in by_name:
            raise UsageError(f"task {task.name!r} has no knob {name!r}; knobs: {', '.join(by_name)}")
        if name in out:
            raise UsageError(f"--knob {name} is given twice ({name}={raw[name]} and {name}={value.strip()}); give it once")
        raw[name] = value.strip()
        out[name] = parse_value(by_name[name], value)
    return out


def _check_value(knob: Knob, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    kinds = {bool: (bool,), str: (str,), int: (numbers.Integral,), float: (numbers.Real,)}.get(knob.kind, (knob.kind,))
    for v in values:
        if not isinstance(v, kinds) or (knob.kind is not bool and isinstance(v, bool)):
            form = "a range [lo, hi]" if knob.kind in (int, float) else "a single value"
            raise UsageError(f"knob {knob.name!r} takes a {knob.kind.__name__} or {form}, got {value!r}")
    if isinstance(value, list) and (knob.audit or knob.kind in (bool, str)):
        raise UsageError(f"knob {knob.name!r} takes a single value, not a range")
    if isinstance(value, list) and (len(value) != 2 or value[0] > value[1]):
        raise UsageError(f"knob {knob.name!r}: a range needs lo <= hi, got {value[0]}..{value[1]}")
    if knob.bounds is not None:
        lo, hi = knob.bounds
        for v in values:
            if not lo <= v <= hi:
                raise UsageError(f"knob {knob.name!r} must be within {lo}..{hi}, got {v}")


@dataclass(frozen=True)
class ParamSpec:
    """What a generation run asks of a task: canvas, difficulty and knob overrides."""

    canvas: tuple[int, int] = (448, 448)
    difficulty: str = MIXED
    overrides: Mapping[str, Any] = field(default_factory=dict)


def level_names(task: Task) -> list[str]:
    return list(task.levels)


CANVAS_MIN, CANVAS_MAX = 32, 8192  # px per side; 8192² RGB is 192 MiB, the largest canvas worth drawing


def resolve_params(task: Task, level: str, spec: ParamSpec) -> dict[str, Any]:
    """Defaults <- the level's values <- explicit overrides; validated. This dict is what
    `Task.sample` receives and what each row stores in `params`."""
    if level not in task.levels:
        raise UsageError(f"task {task.name!r} has no difficulty {level!r}; levels: {', '.join(task.levels)}, {MIXED}")
    knobs = {k.name: k.default for k in task.knobs}
    knobs.update(task.levels[level])
    knobs.update({k: list(v) if isinstance(v, tuple) else v for k, v in spec.overrides.items()})  # (lo, hi) is a range too
    by_name = {k.name: k for k in task.knobs}
    for name, value in knobs.items():
        if name not in by_name:
            raise UsageError(f"task {task.name!r} has no knob {name!r}; knobs: {', '.join(by_name)}")
        _check_value(by_name[name], value)
    w, h = spec.canvas
    if not all(type(v) is int and CANVAS_MIN <= v <= CANVAS_MAX for v in (w, h)):
        raise UsageError(f"the canvas must be within {CANVAS_MIN}..{CANVAS_MAX} px each way, got {w!r}x{h!r}")
    params = {"task": task.name, "version": task.version, "canvas": [int(w), int(h)], "level": level, "knobs": knobs}
    task.check(params)
    return params


def levels_for(task: Task, difficulty: str) -> list[str]:
    """The levels a run draws from: one named level, or all but OOD for 'mixed' and 'stratified'."""
    if difficulty in (MIXED, STRATIFIED):
        return [lv for lv in level_names(task) if lv != OOD]
    if difficulty not in task.levels:
        raise UsageError(
            f"task {task.name!r} has no difficulty {difficulty!r}; choose from {', '.join(task.levels)}, {MIXED}, {STRATIFIED}"
        )
    return [difficulty]


def first_accepted(task: str, attempt: Callable[[], "Scene | str"], knobs: Mapping[str, Any], hint: str) -> Scene:
    """Call `attempt()` (a scene, or the name of the audit rule it broke) until a scene passes,
    at most `knobs["max_attempts"]` times; the scene records how many it took."""
    last = None
    for n in range(1, int(knobs["max_attempts"]) + 1):
        scene = attempt()
        if isinstance(scene, Scene):
            scene.attempts = n
            return scene
        last = scene
    raise GenerationError(
        f"{task}: no scene passed the audit in {knobs['max_attempts']} attempts with knobs {dict(knobs)} "
        f"(last rejection: {last}); {hint}"
    )


def draw_int(rng: np.random.Generator, value: Any) -> int:
    """A knob value that is either an int or an inclusive [lo, hi] range."""
    if isinstance(value, list):
        return int(rng.integers(value[0], value[1] + 1))
    return int(value)


def bounds_of(value: Any) -> tuple[Any, Any]:
    return (value[0], value[1]) if isinstance(value, list) else (value, value)
