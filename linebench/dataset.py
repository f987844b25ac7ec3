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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .version import __version__
from .errors import GenerationError, Interrupted, MapError, UsageError
from .folder import MANIFEST, MAX_SHARDS, RUN_FILE, expected_shards, read_manifest, read_run_file, sha256_bytes, sha256_file, write_manifest
from .fsio import atomic_write, check_path_text, fsync_dir, umask, why
from .grids import grid_shape, layout
from .render import renderer
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
PART_FILE = ".linebench-part.json"  # a finished part of a run (--part K/N): its run and its shards' sha256
OWNED = ("data", "assets", "README.md", MANIFEST, RUN_FILE, DONE_LOG, PART_FILE)  # what a run writes (and --overwrite replaces)
_RUN_KEYS = ("specs", "shard_size", "generator_version")


class FolderLock:
    """An exclusive `flock` on OUT/.linebench-lock for the whole run: a second run into the same
    folder stops with one line naming the first one's pid. The lock file holds the holder's pid
    while it runs, and is left empty. `markers`: the files whose presence means a run lives in the
    folder (then the lock file stays; else it is removed on release)."""

    def __init__(self, folder: Path, markers: Sequence[str] = (RUN_FILE, STAGING)):
        self.path = folder / LOCK
        self.markers = tuple(markers)
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
            if not any((folder / name).exists() for name in self.markers):
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
    return have is not None and {k: have.get(k) for k in (*_RUN_KEYS, "part")} == {"part": None, **run}


def _prepare_out(
    out: Path, run: dict[str, Any], overwrite: bool, resume: bool, same: Callable[[Path, dict[str, Any]], bool] = _same_run
) -> Path:
    """Check the output folder (under the lock) and choose where this run writes: `out` itself,
    or OUT/.linebench-staging for --overwrite (and for resuming an interrupted --overwrite).
    `same(folder, run)`: whether the run file there is this run's (`linebench maps` has its own)."""
    staging = out / STAGING
    contents = [p for p in out.iterdir() if p.name not in (LOCK, STAGING)]
    ours = (out / RUN_FILE).is_file()  # written first by every run: the folder is ours
    if resume:
        if staging.is_dir() and same(staging, run):
            return staging  # an --overwrite run that was interrupted: the old dataset is still in place
        if not contents:
            raise UsageError(f"cannot resume: {out} is empty (run without --resume)")
        if not ours:
            raise UsageError(f"cannot resume: {out} has no {RUN_FILE} (linebench did not start it)")
        if not same(out, run):
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
    part: tuple[int, int] | None = None,
) -> GenerateResult:
    """Generate one split (a RunSpec) or several (a release) into the folder `out`.
    `progress(done, total)` is called as rows complete; `command` is the reproduction command
    recorded in the manifest and card (default: one `linebench generate` line per split).
    `part=(K, N)` makes only part K of N (0 <= K < N): the shards whose index in the folder's
    shard list is K mod N, and a part file instead of the card and manifest; `merge` joins the
    N parts into the folder a single run makes, byte for byte.

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
    if part is not None:
        k, n_parts = part
        n_shards = len(expected_shards(spec_dicts, shard_size))
        if not (type(k) is int and type(n_parts) is int and 0 <= k < n_parts):
            raise UsageError(f"--part takes K/N with 0 <= K < N, got {k}/{n_parts}")
        if n_parts > n_shards:
            raise UsageError(f"--part {k}/{n_parts}: the run has only {n_shards} shard(s), so at most {n_shards} parts")
        run["part"] = [k, n_parts]
    return write_folder(
        out, run, overwrite, resume,
        lambda target: _generate_into(target, specs, spec_dicts, run, feats, workers, shard_size, progress, command, t0, part),
        gives_up=GenerationError, hint=" (or raise --knob max_attempts=N and run again)",
    )  # fmt: skip


def write_folder(
    out: Path, run: dict[str, Any], overwrite: bool, resume: bool, write: Callable[[Path], "GenerateResult"], *,
    gives_up: type[Exception], hint: str = "", same: Callable[[Path, dict[str, Any]], bool] = _same_run,
) -> "GenerateResult":
    """The folder discipline of `generate` and `maps`: lock OUT, choose where to write (OUT, or its
    staging folder for --overwrite), `write(target)`, then swap a staged result in. A `gives_up`
    error mid-run takes back what the run wrote (one line, + `hint`); Ctrl-C/SIGTERM and a full disk
    are one line too."""
    with locked_output(out):
        target = _prepare_out(out, run, overwrite, resume, same=same)
        fresh = not (target / RUN_FILE).exists()
        try:
            result = write(target)
        except gives_up as e:
            raise UsageError(f"{e}; {_gave_up(out, target, fresh)}{hint}") from None
        except KeyboardInterrupt as e:
            raise _interrupted(e, out, target, fresh) from None
        except OSError as e:
            raise _disk_error(e, target) from None
        if target != out:
            _swap_in(target, out)
            result.out = out
    return result


@contextmanager
def locked_output(out: Path, markers: Sequence[str] = (RUN_FILE, STAGING)) -> Iterator[None]:
    """The output folder of a run (generate, merge, maps, train), created if need be and locked for
    the run (`markers`: see FolderLock); the folders the run created are removed again if it fails
    with nothing of it kept."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    _anchor_writable(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {why(e)}") from None
    try:
        with FolderLock(out, markers):
            yield
    except BaseException:
        _remove_created(out, created)
        raise


def take_back(out: Path, target: Path) -> None:
    """Remove what a run wrote: its files in `out`, or its whole staging folder."""
    if target == out:
        _remove_owned(out)
    else:
        shutil.rmtree(target, ignore_errors=True)


def _gave_up(out: Path, target: Path, fresh: bool) -> str:
    """A run that can never finish: take back all it wrote (if it started the folder) and say so."""
    if fresh:
        take_back(out, target)
    kept = "nothing was written" if fresh else "the folder is as it was"
    return kept + (f" and the dataset in {out} is untouched" if target != out else "")


def _disk_error(e: OSError, target: Path) -> UsageError:
    return UsageError(
        f"{why(e)} while writing {getattr(e, 'filename', None) or target}; "
        f"{len(read_done(target))} finished shard(s) are kept: make room and run the same command with --resume"
    )


def _interrupted(e: KeyboardInterrupt, out: Path, target: Path, fresh: bool) -> Interrupted:
    code = getattr(e, "exit_code", 130)
    finished = len(read_done(target))
    if finished == 0 and fresh:
        take_back(out, target)
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


def _layout(spec_dicts, shard_size: int) -> list[tuple[int, str, int, int]]:
    """(spec index, shard path, first row, end row) of every shard, in folder order."""
    out = []
    for which, d in enumerate(spec_dicts):
        start = 0
        for name, _, rows in expected_shards([d], shard_size):
            out.append((which, name, start, start + rows))
            start += rows
    return out


def part_shards(spec_dicts, shard_size: int, part: tuple[int, int]) -> list[str]:
    """The shard paths of part K of N: those whose index in the folder's shard list is K mod N
    (round robin, so every part holds a share of every split and level)."""
    k, n = part
    return [name for i, (_, name, _, _) in enumerate(_layout(spec_dicts, shard_size)) if i % n == k]


def _generate_into(target, specs, spec_dicts, run, feats, workers, shard_size, progress, command, t0, part=None) -> GenerateResult:
    schema = feats.arrow_schema
    layout_ = _layout(spec_dicts, shard_size)
    if part is not None:
        mine = set(part_shards(spec_dicts, shard_size, part))
        layout_ = [entry for entry in layout_ if entry[1] in mine]
    total = sum(e - s for _, _, s, e in layout_)
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
    if part is not None:  # a part: its shards and what they hold, for `merge`; no card, no manifest
        record = {**run, "command": command or "\n".join(canonical_command(s, shard_size) for s in specs),
                  "shards": {name: {"sha256": digests[name][0], "bytes": digests[name][1]} for _, name, _, _ in layout_}}
        atomic_write(target / PART_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")  # last: the part is complete
        return GenerateResult(target, total, len(layout_), len(todo), time.perf_counter() - t0, made, damaged)
    write_finished(target, specs, spec_dicts, run, feats, shard_size, command, digests)
    return GenerateResult(target, total, len(layout_), len(todo), time.perf_counter() - t0, made, damaged)


def write_finished(target: Path, specs, spec_dicts, run, feats, shard_size: int, command: str | None, digests: dict[str, tuple[str, int]]) -> None:
    """The card, the example and (last) the manifest of a folder whose shards are all there."""
    from .card import card_files

    layout_ = _layout(spec_dicts, shard_size)
    total = sum(s.n for s in specs)
    shards = [
        {"path": name, "split": specs[w].split, "rows": stop - start, "sha256": digests[name][0], "bytes": digests[name][1]}
        for w, name, start, stop in layout_
    ]
    manifest = {
        "linebench_version": __version__,
        "generator_version": run["generator_version"],
        "renderer": renderer(),  # pixels may depend on it; row content never does
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


# --------------------------------------------------------------------------- parts -> one folder


def _read_part(folder: Path) -> dict[str, Any]:
    from .folder import _Check, _check_specs, _read_json

    path = Path(folder) / PART_FILE
    hint = "; make the part again (the same command with --overwrite)"
    if not Path(folder).is_dir():
        raise UsageError(f"{folder} is not a folder")
    try:
        d = _read_json(path, "a part file", hint)
    except FileNotFoundError:
        why_ = " (an unfinished part: run its command again with --resume)" if (Path(folder) / RUN_FILE).exists() else ""
        raise UsageError(f"{folder} is not a finished part of a run: it has no {PART_FILE}{why_}") from None
    c = _Check(path, hint)
    c.obj(d, "the part file", ("specs", "shard_size", "generator_version", "part", "command", "shards"))
    _check_specs(c, d["specs"])
    c.int(d["shard_size"], "shard_size", 1)
    if not (isinstance(d["part"], list) and len(d["part"]) == 2 and all(type(v) is int for v in d["part"])):
        raise c.fail("part", "[K, N]", d["part"])
    c.obj(d["shards"], "shards", ())
    for name, entry in d["shards"].items():
        c.shard_path(name, "a shard's path")
        c.obj(entry, f"shards.{name}", ("sha256", "bytes"))
        c.hex(entry["sha256"], f"shards.{name}.sha256")
    return d


def _differs(a: dict[str, Any], b: dict[str, Any]) -> str:
    """What differs between the runs of two parts, said briefly."""
    if a["generator_version"] != b["generator_version"]:
        return f"generator {a['generator_version']} vs {b['generator_version']}"
    if a["shard_size"] != b["shard_size"]:
        return f"--shard-size {a['shard_size']} vs {b['shard_size']}"
    for sa, sb in zip(a["specs"], b["specs"]):
        for key in sa:
            if sa[key] != sb.get(key):
                return f"{sa['split']} {key} {sa[key]!r} vs {sb.get(key)!r}"
    if len(a["specs"]) != len(b["specs"]):
        return "other splits"
    if a["part"][1] != b["part"][1]:
        return f"cut into {a['part'][1]} vs {b['part'][1]} parts"
    return "the command"


def merge(parts: Sequence[Path], out: Path, *, overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> GenerateResult:
    """Join the N parts of one run (`generate --part K/N`, run anywhere) into `out`: the folder a
    single run makes, byte for byte (shards, run file, done log, card, example, manifest). Checks
    that the parts are from the same run, that each of 0..N-1 is there once, complete, with every
    shard matching its sha256; nothing is written before all of that holds."""
    t0 = time.perf_counter()
    out = Path(out)
    check_path_text(out, "--out")
    if not parts:
        raise UsageError("merge needs the part folders")
    records = [(Path(p), _read_part(Path(p))) for p in parts]
    first_path, first = records[0]
    keys = (*_RUN_KEYS, "command")
    for path, rec in records[1:]:
        if any(rec[k] != first[k] for k in keys) or rec["part"][1] != first["part"][1]:
            raise UsageError(f"{path} and {first_path} are parts of different runs ({_differs(first, rec)})")
    n = first["part"][1]
    seen: dict[int, Path] = {}
    for path, rec in records:
        k = rec["part"][0]
        if k in seen:
            raise UsageError(f"part {k}/{n} is given twice ({seen[k]} and {path})")
        seen[k] = path
    missing = [k for k in range(n) if k not in seen]
    if missing:
        raise UsageError(f"part {'/'.join(map(str, (missing[0], n)))} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                         + f": {len(seen)} of {n} parts given")
    version = generator_version(get_task(first["specs"][0]["task"]))
    if first["generator_version"] != version:
        raise UsageError(f"the parts were made by generator {first['generator_version']}; this linebench's is {version}: merge with the linebench that made them")
    run = {k: first[k] for k in _RUN_KEYS}
    digests: dict[str, tuple[str, int]] = {}
    for path, rec in records:
        want = part_shards(run["specs"], run["shard_size"], tuple(rec["part"]))
        if sorted(rec["shards"]) != sorted(want):
            raise UsageError(f"{path} does not hold the shards of part {rec['part'][0]}/{n} of this run")
        for name in want:
            file = path / name
            entry = rec["shards"][name]
            if not file.is_file() or file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                raise UsageError(f"{file} is missing or damaged: make part {rec['part'][0]}/{n} again (its command with --resume)")
            digests[name] = (entry["sha256"], entry["bytes"])
    specs = [RunSpec.from_dict(d) for d in run["specs"]]
    feats = features(specs[0])
    layout_ = _layout(run["specs"], run["shard_size"])
    where = {name: seen[rec["part"][0]] for path, rec in records for name in rec["shards"]}
    with locked_output(out):
        target = _prepare_out(out, run, overwrite, False)
        try:
            (target / "data").mkdir(parents=True, exist_ok=True)
            atomic_write(target / RUN_FILE, json.dumps(run, indent=1, sort_keys=True) + "\n")
            report = progress or (lambda done, total: None)
            total_rows = sum(s.n for s in specs)
            done = 0
            for _, name, start, stop in layout_:  # folder order, as a single run finishes them
                atomic_write(target / name, (where[name] / name).read_bytes())
                _record_done(target, name, digests[name][0])
                done += stop - start
                report(done, total_rows)
            write_finished(target, specs, run["specs"], run, feats, run["shard_size"], first["command"], digests)
        except BaseException as e:  # a merge that did not finish keeps nothing (the parts are still there)
            take_back(out, target)
            if isinstance(e, OSError):
                raise UsageError(f"{why(e)} while merging into {out}; nothing was kept") from None
            raise
        if target != out:
            _swap_in(target, out)
    return GenerateResult(out, sum(s.n for s in specs), len(layout_), len(layout_), time.perf_counter() - t0, sum(s.n for s in specs))


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
