"""Official releases: a split spec file (`splits/<task>.toml`) -> the RunSpecs of every split, and
content checksums that certify a copy of the release.

A spec file (TOML):

    task = "tracing"
    seed = 0
    canvas = [448, 448]
    maps = ["grid24", "llava-1.5", "qwen2.5-vl", "internvl"]
    shard_size = 1000
    [knobs]                      # optional: knob overrides for every split
    [map_params]                 # optional: target / neighbour / floor / radius
    [splits.train]
    n = 50000
    difficulty = "stratified"    # a level, "mixed" or "stratified"
    ...
    [checksums]                  # written by `linebench verify DIR --spec FILE --write-checksums`
    generator_version = "core2-tracing1"
    [checksums.train]
    rows = 50000
    sha256 = "..."               # content of every row, in order
    sha256_no_images = "..."     # the same without the image column
    head_rows = 16
    head_sha256 = "..."          # content of the first `head_rows` rows (cheap to regenerate)
    head_sha256_no_images = "..."  # the same without the image column (independent of OpenCV)

Checksums are over row *content* (every column's values in row order, in a fixed byte encoding),
not over parquet files, so they do not depend on the pyarrow version or the shard size. Every
column but the image is a function of linebench alone; the pixels were measured the same with
OpenCV 4.12, 4.14, 5.0 and 5.1, but a renderer may change them (docs/releases.md).
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import UsageError
from .grids import canonical_maps, default_maps
from .maps import MapParams
from .samples import SPLITS, RunSpec
from .tasks import ParamSpec, get_task, knob_text, parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HEAD_ROWS = 16
_KEYS = {"task", "seed", "canvas", "maps", "shard_size", "knobs", "map_params", "splits", "checksums"}
_SPLIT_KEYS = {"n", "difficulty"}


def official_dirs() -> list[Path]:
    """Where official specs live: inside an installed wheel, then in a source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "splits", here.parent / "splits"]


def resolve_spec(text: str) -> Path:
    """A spec file path, or the name of an official spec ("tracing" -> splits/tracing.toml)."""
    path = Path(text)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        for d in official_dirs():
            if (d / f"{text}.toml").is_file():
                return d / f"{text}.toml"
    raise UsageError(f"--spec {text!r}: no such file, and no official spec of that name")


@dataclass(frozen=True)
class Release:
    path: Path
    task: str
    seed: int
    canvas: tuple[int, int]
    maps: tuple[str, ...]
    shard_size: int
    knobs: Mapping[str, Any]
    map_params: MapParams
    splits: Mapping[str, tuple[int, str]]  # split -> (rows, difficulty)
    checksums: Mapping[str, Any] = field(default_factory=dict)

    def run_specs(self) -> list[RunSpec]:
        return [
            RunSpec(self.task, split, n, self.seed, ParamSpec(self.canvas, difficulty, dict(self.knobs)), self.maps, self.map_params)
            for split, (n, difficulty) in self.splits.items()
        ]

    @property
    def command(self) -> str:
        official = self.path.resolve().parent in [d.resolve() for d in official_dirs()]
        return f"linebench generate --spec {self.path.stem if official else self.path.name}"  # never a path of the user's machine


def load_release(text: str) -> Release:
    path = resolve_spec(text)
    try:
        d = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    where = f"{path}:"
    unknown = set(d) - _KEYS
    if unknown:
        raise UsageError(f"{where} unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("task", "splits"):
        if key not in d:
            raise UsageError(f"{where} missing {key!r}")
    for key in ("knobs", "map_params", "splits", "checksums"):
        if not isinstance(d.get(key, {}), dict):
            raise UsageError(f"{where} {key!r} must be a table")
    task = get_task(str(d["task"]))
    by_name = {k.name: k for k in task.knobs}
    knobs = {}
    for name, value in d.get("knobs", {}).items():
        if name not in by_name:
            raise UsageError(f"{where} task {task.name!r} has no knob {name!r}")
        if isinstance(value, list) and len(value) != 2:
            raise UsageError(f"{where} knobs.{name}: a range is [lo, hi], got {value!r}")
        knobs[name] = parse_value(by_name[name], value if isinstance(value, str) else knob_text(value))
    splits = {}
    for split, s in d["splits"].items():
        if split not in SPLITS:
            raise UsageError(f"{where} split {split!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(s, dict) or set(s) - _SPLIT_KEYS:
            raise UsageError(f"{where} [splits.{split}] is a table with keys {', '.join(sorted(_SPLIT_KEYS))}")
        if type(s.get("n")) is not int or s["n"] <= 0:
            raise UsageError(f"{where} splits.{split}.n must be a positive integer")
        splits[split] = (int(s["n"]), str(s.get("difficulty", "stratified")))
    for key, default in (("seed", 0), ("shard_size", 1000)):
        value = d.get(key, default)
        if type(value) is not int or value < (0 if key == "seed" else 1):
            raise UsageError(f"{where} {key} must be a {'non-negative' if key == 'seed' else 'positive'} integer, got {value!r}")
    maps = d.get("maps", ["grid24"])
    if not isinstance(maps, list) or not maps or not all(isinstance(m, str) for m in maps):
        raise UsageError(f"{where} maps must be a non-empty list of map profile names, got {maps!r}")
    canvas = d.get("canvas", [448, 448])
    if not (isinstance(canvas, list) and len(canvas) == 2 and all(type(v) is int and v > 0 for v in canvas)):
        raise UsageError(f"{where} canvas must be [width, height] in px, got {canvas!r}")
    try:
        return Release(
            path=path,
            task=task.name,
            seed=int(d.get("seed", 0)),
            canvas=(int(canvas[0]), int(canvas[1])),
            maps=canonical_maps(d["maps"], (canvas[0], canvas[1])) if "maps" in d else default_maps((int(canvas[0]), int(canvas[1]))),
            shard_size=int(d.get("shard_size", 1000)),
            knobs=knobs,
            map_params=MapParams(**d.get("map_params", {})),
            splits=splits,
            checksums=d.get("checksums", {}),
        )
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where} {e}") from None


# --------------------------------------------------------------------------- content digests


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _update(hashers: dict[str, Any], name: str, col: pa.ChunkedArray | pa.Array) -> None:
    """Feed one column of a batch of rows to its hash streams. Each stream gets a per-row
    encoding, so feeding a split in one batch or in many (shards) gives the same digest."""

    def stream(part: str):
        return hashers.setdefault(f"{name}/{part}", hashlib.sha256())

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    if pa.types.is_struct(arr.type):  # Image {bytes, path}: the bytes
        arr = arr.field("bytes")
    t = arr.type
    if _is_list(t):  # Array2D maps: the lengths at each nesting level, then the float32 values
        depth = 0
        while _is_list(arr.type):
            stream(f"len{depth}").update(np.asarray(pc.list_value_length(arr), dtype="<i8").tobytes())
            arr = pc.list_flatten(arr)
            depth += 1
        stream("values").update(np.asarray(arr, dtype="<f4").tobytes())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        h = stream("values")
        for v in arr.to_pylist():
            b = v.encode("utf-8") if isinstance(v, str) else v
            h.update(len(b).to_bytes(8, "little") + b)
    elif pa.types.is_boolean(t):
        stream("values").update(np.asarray(arr, dtype=np.uint8).tobytes())
    elif pa.types.is_integer(t):
        stream("values").update(np.asarray(arr, dtype="<i8").tobytes())
    elif pa.types.is_floating(t):
        stream("values").update(np.asarray(arr, dtype="<f8").tobytes())
    else:  # pragma: no cover - a column type the schema never uses
        raise TypeError(f"no content encoding for {t}")


def _column_hashes(tables: Iterable[pa.Table], limit: int | None = None) -> tuple[dict[str, Any], int]:
    """One pass over rows (in order): a hash stream per column part, and the rows read."""
    hashers: dict[str, Any] = {}
    rows = 0
    for table in tables:
        if limit is not None:
            table = table.slice(0, limit - rows)
        for name in table.column_names:
            _update(hashers, name, table.column(name))
        rows += table.num_rows
        if limit is not None and rows >= limit:
            break
    return hashers, rows


def _combine(hashers: Mapping[str, Any], rows: int, skip: tuple[str, ...] = ()) -> str:
    top = hashlib.sha256(rows.to_bytes(8, "little"))
    for name in sorted(hashers):
        if name.split("/", 1)[0] not in skip:
            top.update(name.encode("utf-8") + b"\0" + hashers[name].digest())
    return top.hexdigest()


def split_digests(folder: Path, manifest: Mapping[str, Any], head_rows: int = HEAD_ROWS) -> dict[str, dict[str, Any]]:
    """Per split of a generated folder: rows, content sha256 with and without the images, and the
    same for its first rows."""
    out = {}
    for split in manifest["splits"]:
        paths = [Path(folder) / s["path"] for s in manifest["shards"] if s["split"] == split]
        every, rows = _column_hashes(pq.read_table(p) for p in paths)
        head, n_head = _column_hashes((pq.read_table(p) for p in paths), limit=head_rows)
        out[split] = {
            "rows": rows,
            "sha256": _combine(every, rows),
            "sha256_no_images": _combine(every, rows, skip=("image",)),
            "head_rows": n_head,
            "head_sha256": _combine(head, n_head),
            "head_sha256_no_images": _combine(head, n_head, skip=("image",)),
        }
    return out


def layout_problems(folder: Path, manifest: Mapping[str, Any], release: Release) -> list[str]:
    """Is `folder` laid out as `release` says: generated from its splits and parameters, with no
    shard that the manifest does not list (load_dataset would read it too)?"""
    if not same_specs(manifest, release):
        return [f"the folder was not generated from {release.path} (its splits or parameters differ)"]
    listed = {s["path"] for s in manifest["shards"]}
    extra = sorted(p.relative_to(folder).as_posix() for p in Path(folder).glob("data/*.parquet"))
    extra = [p for p in extra if p not in listed]
    return [f"data/ holds shard(s) that manifest.json does not list: {', '.join(extra[:5])}"] if extra else []


def check_release(folder: Path, manifest: Mapping[str, Any], release: Release) -> tuple[list[str], list[str]]:
    """(problems that keep `folder` from being a faithful copy of `release`, notes). No problems:
    certified. A split whose every column but the images matches is certified for its content;
    its images are a note, not a problem, when another renderer made them than the checksums'
    (pixels may depend on the renderer's version, content never does: docs/releases.md)."""
    problems = layout_problems(folder, manifest, release)
    if problems:
        return problems, []
    sums = release.checksums
    if not sums:
        return [f"{release.path} has no [checksums] yet; write them with `linebench verify DIR --spec {release.path} --write-checksums`"], []
    if manifest.get("generator_version") != sums.get("generator_version"):
        problems.append(
            f"generator version {manifest.get('generator_version')} differs from the spec's checksums "
            f"({sums.get('generator_version')}): the checksums belong to another generator"
        )
    notes: list[str] = []
    made_by, checked_by = manifest.get("renderer"), sums.get("renderer")
    for split, got in split_digests(folder, manifest).items():
        ref = sums.get(split)
        if not ref:
            problems.append(f"{split}: no checksum in {release.path}")
        elif (got["rows"], got["sha256"]) == (ref.get("rows"), ref.get("sha256")):
            continue
        elif got["rows"] == ref.get("rows") and got["sha256_no_images"] == ref.get("sha256_no_images"):
            line = (f"{split}: content certified (every column but the images); the images' bytes differ from the release's "
                    f"(made with {made_by or 'an unrecorded renderer'}, the checksums with {checked_by or 'an unrecorded renderer'})")
            (notes if made_by and checked_by and made_by != checked_by else problems).append(line)
        else:
            problems.append(f"{split}: content sha256 {got['sha256'][:16]}... differs from the spec's {str(ref.get('sha256'))[:16]}...")
    return problems, notes


def same_specs(manifest: Mapping[str, Any], release: Release) -> bool:
    """Was the folder generated from this release (split order aside)?"""
    have = {s.get("split"): s for s in manifest.get("specs") or []}
    return have == {s.split: s.to_dict() for s in release.run_specs()}


def write_checksums(release: Release, generator_version: str, digests: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the spec file's [checksums] tables (kept last in the file) with `digests`."""
    from .render import renderer

    text = release.path.read_text()
    m = re.search(r"^\[checksums[\].]", text, flags=re.M)
    if m:
        if re.search(r"^\[(?!checksums[\].])", text[m.start():], flags=re.M):
            raise UsageError(f"{release.path}: the [checksums] tables must come last (move the tables after them up)")
        text = text[: m.start()]
    lines = [
        "[checksums]  # written by `linebench verify DIR --spec FILE --write-checksums`; do not edit",
        f'generator_version = "{generator_version}"',
        f'renderer = "{renderer()}"  # pixels may depend on it; every other column never does',
    ]
    for split, d in digests.items():
        lines += [
            "",
            f"[checksums.{split}]",
            f"rows = {d['rows']}",
            f'sha256 = "{d["sha256"]}"',
            f'sha256_no_images = "{d["sha256_no_images"]}"',
            f"head_rows = {d['head_rows']}",
            f'head_sha256 = "{d["head_sha256"]}"',
            f'head_sha256_no_images = "{d["head_sha256_no_images"]}"',
        ]
    new = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    tomllib.loads(new)  # never write a file we cannot read back
    tmp = release.path.with_name(f".{release.path.name}.tmp")
    tmp.write_text(new)
    tmp.replace(release.path)
