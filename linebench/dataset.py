"""Dataset folders: features, sharded resumable parquet writing, manifest.

Layout of a folder (readable by `datasets.load_dataset(folder)`, no loading script):
  README.md                                 dataset card, YAML `configs` + `dataset_info`
  manifest.json                             version, command, counts, sha256 of every shard and
                                            of README.md and assets/example.png; written last
  data/<split>-NNNNN-of-NNNNN.parquet      shards, `shard_size` rows each
  assets/example.png                        the first sample's image (shown in the card)
  .linebench-run.json                       the run's arguments (for --resume), kept afterwards
  .linebench-done                           sha256 of each shard as it was finished (for --resume)
  .linebench-lock                           the run's exclusive lock (holds the last holder's pid)

A folder holds one split or several (a release: `linebench generate --spec`), all of one task,
canvas and set of maps. A shard is a pure function of (RunSpec, shard index). Every file is
written to a temporary file, fsynced and renamed into place (linebench.fsio), so a killed run
never leaves a truncated file, and `--resume` rewrites every shard that is missing or whose
bytes differ from the ones the run recorded.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .errors import GenerationError, Interrupted, MapError, UsageError
from .folder import MANIFEST, MAX_SHARDS, RUN_FILE, expected_shards, read_manifest, read_run_file, sha256_bytes, sha256_file, write_manifest
from .fsio import atomic_write, check_path_text, fsync_dir, umask, why
from .grids import grid_shape, layout
from .samples import RowMaker, RunSpec, generator_version, scene_maps
from .tasks import Task, get_task

__all__ = ["generate", "read_manifest", "read_row", "MANIFEST", "RUN_FILE", "sha256_file", "features"]
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


def encode_shard(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """The parquet bytes of one shard (a pure function of the rows)."""
    table = pa.Table.from_arrays([_column(rows, f.name, f.type) for f in schema], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_SIZE,
        compression={f.name: ("none" if f.name == "image" else "zstd") for f in schema},
        write_statistics=[f.name for f in schema if f.name not in ("image", "geometry", "params")],
    )
    return sink.getvalue().to_pybytes()


def write_shard(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> tuple[str, int]:
    """Write rows to `path` atomically (temporary file + fsync + rename) -> (sha256, bytes)."""
    data = encode_shard(rows, schema)
    atomic_write(path, data)
    return sha256_bytes(data), len(data)


# Worker state (set once per process by the pool initializer).
_W: dict[str, Any] = {}
PROBES = 8  # scenes per level that preflight draws before anything is written
CHUNK_ROWS = 25  # rows per work item: small enough to balance cores and report progress smoothly
WINDOW = 4  # work items in flight per worker: bounds memory whatever --n is
MAX_ROWS = 100_000_000  # rows per split (a 448 px row is ~25 kB: 2.5 TB)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the main process dies (even by SIGKILL), instead of
    living on and printing BrokenPipeError tracebacks."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _init_worker(spec_dicts: list[dict[str, Any]], in_pool: bool = True) -> None:
    import gc
    import signal

    if in_pool:  # Ctrl-C and SIGTERM are the main process's to handle (it stops the pool and reports)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
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
    rows_written: int = 0  # rows made by this run (the rate is over these)
    damaged: int = 0  # kept shards whose bytes did not match the run's record (rewritten)


# --------------------------------------------------------------------------- the output folder

LOCK = ".linebench-lock"
DONE_LOG = ".linebench-done"  # `sha256  path` per finished shard (sha256sum format), appended
STAGING = ".linebench-staging"  # an --overwrite run builds the new dataset here, then swaps it in
OWNED = ("data", "assets", "README.md", MANIFEST, RUN_FILE, DONE_LOG)  # what a run writes (and --overwrite replaces)
_RUN_KEYS = ("specs", "shard_size", "generator_version")


class FolderLock:
    """An exclusive `flock` on OUT/.linebench-lock for the whole run: a second run into the same
    folder stops with one line naming the first one's pid. The lock file holds the holder's pid
    while it runs, and is left empty."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.fd: int | None = None

    def __enter__(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        except OSError as e:
            raise UsageError(f"cannot write to {self.path.parent}: {why(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise UsageError(f"another linebench run (pid {pid}) is writing to {self.path.parent}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            folder = self.path.parent
            if not (folder / RUN_FILE).exists() and not (folder / STAGING).exists():
                _unlink(self.path)  # nothing of a run is here (refused, or taken back): leave no trace
            os.ftruncate(self.fd, 0)  # no stale pid left behind: a finished folder's bytes do not depend on the run
            os.close(self.fd)  # releases the lock; the file stays (removing it would race)
            self.fd = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def read_done(folder: Path) -> dict[str, str]:
    """Shard path -> sha256 of the shards the run recorded as finished (a torn last line is ignored)."""
    try:
        text = (folder / DONE_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    done = {}
    for line in text.splitlines():
        sha, _, path = line.partition("  ")
        if len(sha) == 64 and path.startswith("data/") and path.endswith(".parquet"):
            done[path] = sha
    return done


def _record_done(folder: Path, name: str, sha: str) -> None:
    with open(folder / DONE_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{sha}  {name}\n")
        fh.flush()
        os.fsync(fh.fileno())


def _anchor_writable(out: Path) -> None:
    anchor = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not anchor.is_dir():
        raise UsageError(f"cannot create {out}: {anchor} is not a folder")
    try:  # a real write test: permission bits say nothing on read-only mounts or to root
        fd, probe = tempfile.mkstemp(prefix=".linebench-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {anchor} is not writable ({e.strerror})") from None


def _same_run(folder: Path, run: dict[str, Any]) -> bool:
    have = read_run_file(folder)
    return have is not None and {k: have[k] for k in _RUN_KEYS} == run


def _prepare_out(out: Path, run: dict[str, Any], overwrite: bool, resume: bool) -> Path:
    """Check the output folder (under the lock) and choose where this run writes: `out` itself,
    or OUT/.linebench-staging for --overwrite (and for resuming an interrupted --overwrite)."""
    staging = out / STAGING
    contents = [p for p in out.iterdir() if p.name not in (LOCK, STAGING)]
    ours = (out / RUN_FILE).is_file()  # written first by every run: the folder is ours
    if resume:
        if staging.is_dir() and _same_run(staging, run):
            return staging  # an --overwrite run that was interrupted: the old dataset is still in place
        if not contents:
            raise UsageError(f"cannot resume: {out} is empty (run without --resume)")
        if not ours:
            raise UsageError(f"cannot resume: {out} has no {RUN_FILE} (it was not made by linebench generate)")
        if not _same_run(out, run):
            raise UsageError(f"cannot resume: {out} was started with other arguments; use the same ones, or --overwrite")
        return out
    if overwrite:
        if contents and not ours:
            raise UsageError(f"refusing to overwrite {out}: it has no {RUN_FILE}, so it is not a linebench dataset folder")
        if staging.exists():
            shutil.rmtree(staging)
        if not contents:
            return out
        staging.mkdir()
        return staging
    if contents:
        raise UsageError(f"output folder {out} exists and is not empty; use --overwrite to replace it or --resume to finish it")
    if staging.exists():
        shutil.rmtree(staging)
    return out


def _remove_owned(folder: Path, names: Sequence[str] = OWNED) -> None:
    for name in names:  # only what a run writes; anything else the user put there stays
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the dataset in `out` by the complete one in `staging`: the old manifest goes first
    (so a crash in between leaves a folder no check accepts), the new manifest comes last."""
    old = staging / ".old"
    old.mkdir()
    for name in (MANIFEST, *[n for n in OWNED if n != MANIFEST]):
        if (out / name).exists() or (out / name).is_symlink():
            os.replace(out / name, old / name)
    for name in (*[n for n in OWNED if n != MANIFEST], MANIFEST):
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    fsync_dir(out)
    shutil.rmtree(staging)


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


def preflight(specs: Sequence[RunSpec], shard_size: int = 1000):
    """Validate a run before touching the disk: parameters resolve, sizes are bounded, and each
    level can produce a scene (so impossible knob combinations fail here, with one clear
    message). Returns the run's `datasets.Features` (one schema for every split of a folder)."""
    if not specs:
        raise UsageError("nothing to generate: no splits")
    first = specs[0]
    splits = [s.split for s in specs]
    if len(set(splits)) != len(splits):
        raise UsageError(f"each split may appear once in a folder, got {', '.join(splits)}")
    for spec in specs:
        if spec.n <= 0:
            raise UsageError(f"--n must be positive, got {spec.n}")
        if spec.n > MAX_ROWS:
            raise UsageError(f"--n is at most {MAX_ROWS:,} rows per split, got {spec.n:,}")
        if -(-spec.n // shard_size) > MAX_SHARDS:
            raise UsageError(f"{spec.n:,} rows of --shard-size {shard_size} make more than {MAX_SHARDS:,} shards; raise --shard-size")
        if spec.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {spec.seed}")
        if (spec.task, spec.params.canvas, spec.maps) != (first.task, first.params.canvas, first.maps):
            raise UsageError("every split of a folder needs the same task, canvas and maps (they share one schema)")
        maker = RowMaker(spec)  # resolves and checks the parameters of every level (and the canvas)
        check_coverage(spec.maps, spec.params.canvas)
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


def _chunks(which: int, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    for c in range(start, stop, CHUNK_ROWS):
        yield (which, c, min(c + CHUNK_ROWS, stop))


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
    recorded in the manifest and card (default: one `linebench generate` line per split).

    Every file is written atomically and the manifest last, so a folder is either finished (and
    passes `verify`) or visibly not. Failures leave: after bad input, nothing; after a row the
    knobs cannot produce (GenerationError), nothing of this run; after Ctrl-C, SIGTERM or a full
    disk, the finished shards, for `--resume`. `--overwrite` builds the new dataset beside the
    old one (OUT/.linebench-staging) and replaces the old one only once the new one is complete."""
    t0 = time.perf_counter()
    out = Path(out)
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    check_path_text(out, "--out")
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other")
    if type(shard_size) is not int or shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {shard_size}")
    if workers <= 0:
        raise UsageError(f"--workers must be positive, got {workers}")
    feats = preflight(specs, shard_size)
    spec_dicts = [s.to_dict() for s in specs]
    version = generator_version(get_task(specs[0].task))
    run = {"specs": spec_dicts, "shard_size": shard_size, "generator_version": version}
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    _anchor_writable(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {why(e)}") from None
    try:
        with FolderLock(out):
            target = _prepare_out(out, run, overwrite, resume)
            fresh = not (target / RUN_FILE).exists()
            try:
                result = _generate_into(target, specs, spec_dicts, run, feats, workers, shard_size, progress, command, t0)
            except GenerationError as e:
                if fresh:  # this run can never finish: take back all it wrote
                    if target == out:
                        _remove_owned(out)
                    else:
                        shutil.rmtree(target, ignore_errors=True)
                kept = "nothing was written" if fresh else "the folder is as it was"
                if target != out:
                    kept += f" and the dataset in {out} is untouched"
                raise UsageError(f"{e}; {kept} (or raise --knob max_attempts=N and run again)") from None
            except KeyboardInterrupt as e:
                raise _interrupted(e, out, target, fresh) from None
            except OSError as e:
                finished = len(read_done(target))
                raise UsageError(
                    f"{why(e)} while writing {getattr(e, 'filename', None) or target}; "
                    f"{finished} finished shard(s) are kept: make room and run the same command with --resume"
                ) from None
            if target != out:
                _swap_in(target, out)
                result.out = out
    except BaseException:
        _remove_created(out, created)
        raise
    return result


def _interrupted(e: KeyboardInterrupt, out: Path, target: Path, fresh: bool) -> Interrupted:
    code = getattr(e, "exit_code", 130)
    finished = len(read_done(target))
    if finished == 0 and fresh:
        if target == out:
            _remove_owned(out)
        else:
            shutil.rmtree(target, ignore_errors=True)
        kept = f"the dataset in {out} is untouched" if target != out else f"nothing was kept in {out}"
        return Interrupted(f"interrupted before any shard was finished; {kept}", code)
    old = " (the dataset that was there is untouched until the new one is complete)" if target != out else ""
    return Interrupted(f"interrupted; {finished} finished shard(s) are kept{old}. Run the same command with --resume to finish {out}", code)


def _remove_created(out: Path, created: list[Path]) -> None:
    """Remove the folders this run created, if nothing but its lock file is in them."""
    for p in created:  # innermost first
        try:
            if p == out and (p / LOCK).exists() and [c.name for c in p.iterdir()] == [LOCK]:
                (p / LOCK).unlink()
            p.rmdir()
        except OSError:
            return


def _generate_into(target, specs, spec_dicts, run, feats, workers, shard_size, progress, command, t0) -> GenerateResult:
    from .card import card_files

    schema = feats.arrow_schema
    layout_ = []  # (spec index, shard path, first row, end row) in folder order
    for which, d in enumerate(spec_dicts):
        start = 0
        for name, _, rows in expected_shards([d], shard_size):
            layout_.append((which, name, start, start + rows))
            start += rows
    total = sum(s.n for s in specs)
    (target / "data").mkdir(parents=True, exist_ok=True)
    for stale in (target / "data").glob(".*.tmp"):
        stale.unlink()
    if not (target / RUN_FILE).exists():
        atomic_write(target / RUN_FILE, json.dumps(run, indent=1, sort_keys=True) + "\n")

    recorded = read_done(target)
    digests: dict[str, tuple[str, int]] = {}
    damaged = 0
    todo = []
    for which, name, start, stop in layout_:
        path = target / name
        sha = sha256_file(path) if name in recorded and path.is_file() else None
        if sha is not None and sha == recorded[name]:
            digests[name] = (sha, path.stat().st_size)
        else:
            damaged += sha is not None
            todo.append((which, start, stop, name))
    if damaged:  # the log now describes what is on disk: the damaged shards are rewritten below
        atomic_write(target / DONE_LOG, "".join(f"{digests[n][0]}  {n}\n" for n in digests))
    done_rows = total - sum(e - s for _, s, e, _ in todo)
    report = progress or (lambda done, total: None)
    report(done_rows, total)
    jobs = (job for w, s, e, _ in todo for job in _chunks(w, s, e))
    pool = None
    if workers > 1 and sum(e - s for _, s, e, _ in todo) > CHUNK_ROWS:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        n_jobs = sum(-(-(e - s) // CHUNK_ROWS) for _, s, e, _ in todo)
        pool = ctx.Pool(min(workers, n_jobs), initializer=_init_worker, initargs=(spec_dicts,))
        pending: deque = deque()
        window = WINDOW * min(workers, n_jobs)

        def chunks() -> Iterator[list[dict[str, Any]]]:
            for job in jobs:  # keep `window` work items in flight, in order
                pending.append(pool.apply_async(_make_rows, (job,)))
                if len(pending) >= window:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()

        stream = chunks()
    else:
        _init_worker(spec_dicts, in_pool=False)
        stream = map(_make_rows, jobs)
    made = 0
    try:
        for _, start, stop, name in todo:
            rows: list[dict[str, Any]] = []
            while len(rows) < stop - start:
                rows += next(stream)
                report(done_rows + len(rows), total)
            digests[name] = write_shard(rows, schema, target / name)
            _record_done(target, name, digests[name][0])
            done_rows += len(rows)
            made += len(rows)
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

    shards = [
        {"path": name, "split": specs[w].split, "rows": stop - start, "sha256": digests[name][0], "bytes": digests[name][1]}
        for w, name, start, stop in layout_
    ]
    manifest = {
        "linebench_version": __version__,
        "generator_version": run["generator_version"],
        "task": specs[0].task,
        "command": command or "\n".join(canonical_command(s, shard_size) for s in specs),
        "specs": spec_dicts,
        "shard_size": shard_size,
        "num_rows": total,
        "splits": {s.split: s.n for s in specs},
        "shards": shards,
    }
    files = card_files(target, specs, feats, manifest)  # README.md and assets/example.png
    (target / "assets").mkdir(exist_ok=True)
    for rel, data in files.items():
        atomic_write(target / rel, data)
    manifest["files"] = {rel: {"sha256": sha256_bytes(data), "bytes": len(data)} for rel, data in files.items()}
    write_manifest(target, manifest)  # last: the folder is finished
    return GenerateResult(target, total, len(layout_), len(todo), time.perf_counter() - t0, made, damaged)


def task_of(manifest: dict[str, Any]) -> Task:
    return get_task(manifest["task"])


def read_row(folder: Path, index: int, split: str | None = None) -> dict[str, Any]:
    """Row `index` of `split` (default: the folder's first split) as a dict, image as PNG bytes."""
    manifest = read_manifest(folder)
    shards = manifest["shards"]
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
