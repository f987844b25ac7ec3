"""Dataset folders: features, sharded resumable parquet writing, manifest.

Layout of a folder (readable by `datasets.load_dataset(folder)`, no loading script):
  README.md                                 dataset card, YAML `configs` + `dataset_info`
  manifest.json                             version, command, counts, sha256 of every shard
  data/<split>-NNNNN-of-NNNNN.parquet      shards, `shard_size` rows each
  assets/example.png                        the first sample's image (shown in the card)
  .linebench-run.json                       the run's arguments (for --resume), kept afterwards

A folder holds one split or several (a release: `linebench generate --spec`), all of one task,
canvas and set of maps. A shard is a pure function of (RunSpec, shard index): workers write whole
shards to a temporary file and rename it into place, so a killed run never leaves a truncated
shard and `--resume` only writes the shards that are missing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .errors import GenerationError, MapError, UsageError
from .grids import grid_shape, layout
from .samples import RowMaker, RunSpec, generator_version, scene_maps
from .tasks import Task, get_task

RUN_FILE = ".linebench-run.json"
MANIFEST = "manifest.json"
OWNED = ("data", "assets", "README.md", MANIFEST, RUN_FILE)  # what --overwrite may delete
ROW_GROUP_SIZE = 100  # small row groups keep streaming and the Hub viewer light for image rows

_PY_TO_VALUE = {int: "int32", float: "float32", bool: "bool", str: "string"}


def base_columns() -> list[tuple[str, str]]:
    return [
        ("id", "string"),
        ("image", "image"),
        ("question", "string"),
        ("answer", "string"),
        ("task", "string"),
        ("split", "string"),
        ("index", "int64"),
        ("seed", "int64"),
        ("generator_version", "string"),
        ("difficulty", "string"),
    ]


def features(spec: RunSpec):
    """The `datasets.Features` of a run's rows: declared once, stored in the shards and the card."""
    from datasets import Array2D, Features, Image, Value

    task = get_task(spec.task)
    cols: dict[str, Any] = {}
    for name, kind in base_columns():
        cols[name] = Image() if kind == "image" else Value(kind)
    for c in task.columns:
        cols[c.name] = Value(_PY_TO_VALUE[c.kind])
    cols["attempts"] = Value("int32")
    cols["params"] = Value("string")
    cols["geometry"] = Value("string")
    for name in spec.maps:
        cols[f"attn_{name}"] = Array2D(grid_shape(name, spec.params.canvas), "float32")
    return Features(cols)


# --------------------------------------------------------------------------- shards


def shard_name(split: str, i: int, count: int) -> str:
    return f"data/{split}-{i:05d}-of-{count:05d}.parquet"


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def _column(rows: list[dict[str, Any]], name: str, typ: pa.DataType) -> pa.Array:
    if isinstance(typ, pa.ExtensionType):  # Array2D: nested lists over one flat float32 buffer
        arr = np.stack([r[name] for r in rows]).astype(np.float32, copy=False)  # [B, R, C]
        b, r, c = arr.shape
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, b * r * c + 1, c, dtype=np.int32)), pa.array(arr.ravel()))
        outer = pa.ListArray.from_arrays(pa.array(np.arange(0, b * r + 1, r, dtype=np.int32)), inner)
        return pa.ExtensionArray.from_storage(typ, outer)
    if pa.types.is_struct(typ):  # Image: {bytes, path}
        return pa.StructArray.from_arrays(
            [pa.array([r[name] for r in rows], pa.binary()), pa.nulls(len(rows), pa.string())], names=["bytes", "path"]
        )
    return pa.array([r[name] for r in rows], typ)


def write_shard(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> tuple[str, int]:
    """Write rows to `path` atomically (temporary file + rename) -> (sha256, bytes)."""
    table = pa.Table.from_arrays([_column(rows, f.name, f.type) for f in schema], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_SIZE,
        compression={f.name: ("none" if f.name == "image" else "zstd") for f in schema},
        write_statistics=[f.name for f in schema if f.name not in ("image", "geometry", "params")],
    )
    data = sink.getvalue().to_pybytes()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest(), len(data)


# Worker state (set once per process by the pool initializer).
_W: dict[str, Any] = {}
PROBES = 8  # scenes per level that preflight draws before anything is written
CHUNK_ROWS = 25  # rows per work item: small enough to balance cores and report progress smoothly


def _init_worker(spec_dicts: list[dict[str, Any]], in_pool: bool = True) -> None:
    import gc
    import signal

    if in_pool:  # Ctrl-C is the main process's to handle (it stops the pool and reports)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _W["makers"] = [RowMaker(RunSpec.from_dict(d)) for d in spec_dicts]
    gc.freeze()  # long-lived imports out of the collector's way: cheaper collections per row


def _make_rows(job: tuple[int, int, int]) -> list[dict[str, Any]]:
    which, start, stop = job
    maker = _W["makers"][which]
    return [maker(index) for index in range(start, stop)]


@dataclass
class GenerateResult:
    out: Path
    rows: int
    shards: int
    written: int  # shards written by this run (the rest were already there, with --resume)
    seconds: float


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _prepare_out(out: Path, run: dict[str, Any], overwrite: bool, resume: bool) -> None:
    """Check the output folder before anything is written; clear it for --overwrite."""
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    contents = list(out.iterdir()) if out.exists() else []
    if contents:
        ours = (out / RUN_FILE).is_file()  # written first by every run: the folder is ours
        if resume:
            if not (out / RUN_FILE).exists():
                raise UsageError(f"cannot resume: {out} has no {RUN_FILE} (it was not made by linebench generate)")
            if json.loads((out / RUN_FILE).read_text()) != run:
                raise UsageError(f"cannot resume: {out} was started with other arguments; use the same ones, or --overwrite")
        elif overwrite:
            if not ours:
                raise UsageError(f"refusing to overwrite {out}: it has no {RUN_FILE}, so it is not a linebench dataset folder")
            for name in OWNED:  # only what a run writes; anything else the user put there stays
                path = out / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        else:
            raise UsageError(f"output folder {out} exists and is not empty; use --overwrite to replace it or --resume to finish it")
    anchor = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not anchor.is_dir():
        raise UsageError(f"cannot create {out}: {anchor} is not a folder")
    try:  # a real write test: permission bits say nothing on read-only mounts or to root
        fd, probe = tempfile.mkstemp(prefix=".linebench-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {anchor} is not writable ({e.strerror})") from None


def _complete_shard(path: Path, rows: int) -> bool:
    """A shard a resumed run may keep: present, with a readable footer and the right row count."""
    if not path.exists():
        return False
    try:
        return pq.read_metadata(path).num_rows == rows
    except (OSError, pa.ArrowException):
        return False


def canonical_command(spec: RunSpec, shard_size: int) -> str:
    """The `linebench generate` command that reproduces this folder (worker count does not matter)."""
    w, h = spec.params.canvas
    parts = [
        "linebench generate",
        f"--task {spec.task}",
        f"--split {spec.split}",
        f"--n {spec.n}",
        f"--seed {spec.seed}",
        f"--difficulty {spec.params.difficulty}",
        f"--canvas {w}x{h}",
        f"--maps {','.join(spec.maps)}",
    ]
    for name, value in sorted(spec.params.overrides.items()):
        text = f"{value[0]}..{value[1]}" if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"--knob {name}={text}")
    mp_ = spec.map_params
    parts.append(f"--map-target {mp_.target} --map-neighbour {mp_.neighbour} --map-floor {mp_.floor} --map-radius {mp_.radius}")
    parts.append(f"--shard-size {shard_size}")
    return " ".join(parts)


def preflight(specs: Sequence[RunSpec]):
    """Validate a run before touching the disk: parameters resolve, and each level can produce a
    scene (so impossible knob combinations fail here, with one clear message). Returns the
    run's `datasets.Features` (one schema for every split of a folder)."""
    if not specs:
        raise UsageError("nothing to generate: no splits")
    first = specs[0]
    splits = [s.split for s in specs]
    if len(set(splits)) != len(splits):
        raise UsageError(f"each split may appear once in a folder, got {', '.join(splits)}")
    for spec in specs:
        if spec.n <= 0:
            raise UsageError(f"--n must be positive, got {spec.n}")
        if spec.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {spec.seed}")
        if (spec.task, spec.params.canvas, spec.maps) != (first.task, first.params.canvas, first.maps):
            raise UsageError("every split of a folder needs the same task, canvas and maps (they share one schema)")
        check_coverage(spec.maps, spec.params.canvas)
        maker = RowMaker(spec)  # resolves and checks the parameters of every level
        for level, params in maker.params.items():
            for probe in range(PROBES):  # several scenes: knobs drawn per sample differ between them
                try:
                    scene = maker.task.sample(np.random.default_rng(probe), params)
                    scene_maps(scene.geometry, spec.maps, spec.map_params)
                except (GenerationError, MapError) as e:
                    raise UsageError(f"difficulty {level!r}: {e}") from None
    return features(first)  # also validates the map profiles


COVERAGE = 0.98  # a layout must see this share of the canvas width and height


def check_coverage(profiles: Sequence[str], canvas: tuple[int, int]) -> None:
    """Refuse profiles that crop the canvas (e.g. llava-1.5 on a wide canvas): targets in the cropped
    parts would have no token. Small unseen margins (SigLIP-384's last 6 px) are fine."""
    w, h = canvas
    for name in profiles:
        grids = layout(name, canvas).grids
        seen_w = (min(w, max(g.x_edges[-1] for g in grids)) - max(0.0, min(g.x_edges[0] for g in grids))) / w
        seen_h = (min(h, max(g.y_edges[-1] for g in grids)) - max(0.0, min(g.y_edges[0] for g in grids))) / h
        if min(seen_w, seen_h) < COVERAGE:
            raise UsageError(
                f"map profile {name} sees only {100 * seen_w:.0f}% x {100 * seen_h:.0f}% of a {w}x{h} canvas (it crops), "
                "so some targets would have no token; use a square canvas or a padding profile (e.g. llava-1.5-pad)"
            )


def generate(
    specs: RunSpec | Sequence[RunSpec],
    out: Path,
    *,
    workers: int = 1,
    shard_size: int = 1000,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
) -> GenerateResult:
    """Generate one split (a RunSpec) or several (a release) into the folder `out`.
    `progress(done, total)` is called as rows complete; `command` is the reproduction command
    recorded in the manifest and card (default: one `linebench generate` line per split)."""
    from .card import write_card

    t0 = time.perf_counter()
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    if shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {shard_size}")
    if workers <= 0:
        raise UsageError(f"--workers must be positive, got {workers}")
    feats = preflight(specs)
    spec_dicts = [s.to_dict() for s in specs]
    version = generator_version(get_task(specs[0].task))
    run = {"specs": spec_dicts, "shard_size": shard_size, "generator_version": version}
    _prepare_out(out, run, overwrite, resume)

    schema = feats.arrow_schema
    layout_ = []  # (spec index, start, stop, shard path) in folder order
    for which, spec in enumerate(specs):
        ranges = shard_ranges(spec.n, shard_size)
        layout_ += [(which, s, e, shard_name(spec.split, i, len(ranges))) for i, (s, e) in enumerate(ranges)]
    total = sum(s.n for s in specs)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for stale in (out / "data").glob(".*.tmp-*"):
        stale.unlink()
    (out / RUN_FILE).write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")

    todo = [(w, s, e, out / nm) for w, s, e, nm in layout_ if not _complete_shard(out / nm, e - s)]
    done_rows = total - sum(e - s for _, s, e, _ in todo)
    report = progress or (lambda done, total: None)
    report(done_rows, total)
    # Workers build rows in small chunks (in index order); this process assembles each shard and
    # writes it as soon as its last chunk arrives. Output bytes depend only on the spec.
    jobs = [(w, c, min(c + CHUNK_ROWS, e)) for w, s, e, _ in todo for c in range(s, e, CHUNK_ROWS)]
    pool = None
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(spec_dicts,))
        chunks = pool.imap(_make_rows, jobs)
    else:
        _init_worker(spec_dicts, in_pool=False)
        chunks = map(_make_rows, jobs)
    digests: dict[Path, tuple[str, int]] = {}
    try:
        for _, start, stop, path in todo:
            rows: list[dict[str, Any]] = []
            while len(rows) < stop - start:
                rows += next(chunks)
                report(done_rows + len(rows), total)
            digests[path] = write_shard(rows, schema, path)
            done_rows += len(rows)
        if pool is not None:
            pool.close()  # let workers exit on their own: killing them mid-exit aborts native threads
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()
    report(total, total)

    shards = []
    for w, s, e, nm in layout_:
        sha, size = digests.get(out / nm) or (sha256_file(out / nm), (out / nm).stat().st_size)
        shards.append({"path": nm, "split": specs[w].split, "rows": e - s, "sha256": sha, "bytes": size})
    manifest = {
        "linebench_version": __version__,
        "generator_version": version,
        "task": specs[0].task,
        "command": command or "\n".join(canonical_command(s, shard_size) for s in specs),
        "specs": spec_dicts,
        "shard_size": shard_size,
        "num_rows": total,
        "splits": {s.split: s.n for s in specs},
        "shards": shards,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    write_card(out, specs, feats, manifest)
    return GenerateResult(out, total, len(layout_), len(todo), time.perf_counter() - t0)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists():
        raise UsageError(f"{folder} has no {MANIFEST}: not a finished linebench dataset (an interrupted run? use --resume)")
    return json.loads(path.read_text())


def task_of(manifest: dict[str, Any]) -> Task:
    name = manifest.get("task") or manifest.get("spec", {}).get("task")  # folders before 0.1 releases
    if not name:
        raise UsageError("manifest.json names no task: not a linebench dataset folder")
    return get_task(name)


def read_row(folder: Path, index: int, split: str | None = None) -> dict[str, Any]:
    """Row `index` of `split` (default: the folder's first split) as a dict, image as PNG bytes."""
    manifest = read_manifest(folder)
    shards = manifest.get("shards", [])
    splits = list(dict.fromkeys(s["split"] for s in shards))
    split = split or (splits[0] if splits else "train")
    if split not in splits:
        raise UsageError(f"{folder} has no split {split!r} (it has {', '.join(splits) or 'none'})")
    mine = [s for s in shards if s["split"] == split]
    total = sum(int(s["rows"]) for s in mine)
    if not 0 <= index < total:
        raise UsageError(f"--index must be within 0..{total - 1} for split {split!r}, got {index}")
    start = 0
    for s in mine:
        if index < start + int(s["rows"]):
            try:
                pf = pq.ParquetFile(folder / s["path"])
                offset = index - start
                group = 0
                while offset >= pf.metadata.row_group(group).num_rows:
                    offset -= pf.metadata.row_group(group).num_rows
                    group += 1
                row = pf.read_row_group(group).slice(offset, 1).to_pylist()[0]
            except (OSError, pa.ArrowException, IndexError) as e:
                raise UsageError(f"shard {s['path']} is missing or unreadable ({e}); run `linebench verify {folder}`") from None
            image = row.get("image")
            if isinstance(image, dict):
                row["image"] = image.get("bytes")
            return row
        start += int(s["rows"])
    raise AssertionError("unreachable")
