"""The one folder writer: how `generate`, `merge` and `maps` put a dataset folder on disk.

A command describes its folder as a run (the JSON that identifies it, for `--resume`), a list of
shards (each made of work items, in order) and a finish step (card, example, manifest); the
writer does the rest, the same way for all of them:

- the output folder is created if need be and locked (`flock` on OUT/.linebench-lock) for the run;
- `--overwrite` builds the new folder in OUT/.linebench-staging and swaps it in only once it is
  complete; `--resume` keeps every shard whose bytes match the done log and rewrites the others;
- work items run in a pool of forked workers (killed with the main process), at most WINDOW per
  worker in flight, and their results are joined into shards in folder order;
- every file is written atomically (linebench.fsio), each finished shard's sha256 is appended to
  the done log, the card and example come before the manifest, the manifest last;
- a failure is one line: a run that can never finish takes back what it wrote, Ctrl-C/SIGTERM and
  a full disk keep the finished shards for `--resume`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import Interrupted, UsageError
from .folder import (
    DONE_LOG, LOCK, MANIFEST, PART_FILE, RUN_FILE, STAGING, read_done, read_run_file, sha256_bytes, sha256_file, write_manifest,
)
from .fsio import atomic_write, check_path_text, fsync_dir, umask, why

OWNED = ("data", "assets", "README.md", MANIFEST, RUN_FILE, DONE_LOG, PART_FILE)  # what a run writes (and --overwrite replaces)
WINDOW = 4  # work items in flight per worker: bounds memory whatever the folder's size


@dataclass(frozen=True)
class Shard:
    """One shard of a folder: its path, split and rows, and the work items whose results (in
    order) make it: (rows, item) pairs, `item` handed to the run's work function."""

    path: str
    split: str
    rows: int
    jobs: tuple[tuple[int, Any], ...]


@dataclass
class FolderResult:
    """What a run did: rows and shards in the folder, shards and rows this run wrote (the rest were
    there already, with --resume), kept shards whose bytes did not match the done log (rewritten)."""

    out: Path
    rows: int
    shards: int
    written: int
    seconds: float
    rows_written: int = 0
    damaged: int = 0
    splits: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- the lock


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


@contextmanager
def locked_output(out: Path, markers: Sequence[str] = (RUN_FILE, STAGING)) -> Iterator[None]:
    """The output folder of a run (generate, merge, maps, train, eval), created if need be and
    locked for the run (`markers`: see FolderLock); the folders the run created are removed again
    if it fails with nothing of it kept."""
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


def _remove_created(out: Path, created: list[Path]) -> None:
    """Remove the folders this run created, if nothing but its lock file is in them."""
    for p in created:  # innermost first
        try:
            if p == out and (p / LOCK).exists() and [c.name for c in p.iterdir()] == [LOCK]:
                (p / LOCK).unlink()
            p.rmdir()
        except OSError:
            return


# --------------------------------------------------------------------------- where a run writes


def same_run(folder: Path, run: Mapping[str, Any]) -> bool:
    """Whether the run file in `folder` is this run's: the same value for every key of `run`, and
    no other key (a run file from an older linebench may also hold `done`)."""
    have = read_run_file(folder)
    return have is not None and set(have) - {"done"} <= set(run) and all(have.get(k) == v for k, v in run.items())


def _prepare_out(out: Path, run: Mapping[str, Any], overwrite: bool, resume: bool) -> Path:
    """Check the output folder (under the lock) and choose where this run writes: `out` itself,
    or OUT/.linebench-staging for --overwrite (and for resuming an interrupted --overwrite)."""
    staging = out / STAGING
    contents = [p for p in out.iterdir() if p.name not in (LOCK, STAGING)]
    ours = (out / RUN_FILE).is_file()  # written first by every run: the folder is ours
    if resume:
        if staging.is_dir() and same_run(staging, run):
            return staging  # an --overwrite run that was interrupted: the old dataset is still in place
        if not contents:
            raise UsageError(f"cannot resume: {out} is empty (run without --resume)")
        if not ours:
            raise UsageError(f"cannot resume: {out} has no {RUN_FILE} (linebench did not start it)")
        if not same_run(out, run):
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


def take_back(out: Path, target: Path) -> None:
    """Remove what a run wrote: its files in `out` (only those; anything else the user put there
    stays), or its whole staging folder."""
    if target != out:
        shutil.rmtree(target, ignore_errors=True)
        return
    for name in OWNED:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# --------------------------------------------------------------------------- the shards


def record_done(folder: Path, name: str, sha: str) -> None:
    """Append a finished shard to the done log (`sha256  path`, sha256sum's format), durably."""
    with open(folder / DONE_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{sha}  {name}\n")
        fh.flush()
        os.fsync(fh.fileno())


def die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the main process dies (even by SIGKILL), instead of
    living on and printing BrokenPipeError tracebacks."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


_W: dict[str, Any] = {}  # a worker's work function (set once per process by the pool initializer)


def _init_worker(setup: Callable[..., Callable[[Any], Any]], args: tuple, in_pool: bool = True) -> None:
    import gc
    import signal

    if in_pool:  # Ctrl-C and SIGTERM are the main process's to handle (it stops the pool and reports)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
    _W["work"] = setup(*args)
    gc.freeze()  # long-lived imports out of the collector's way: cheaper collections per item


def _do(item: Any) -> Any:
    return _W["work"](item)


def _results(items: list[Any], setup: Callable, args: tuple, workers: int) -> tuple[Iterator[Any], Callable[[bool], None]]:
    """The work items' results, in order, and a function that ends the pool (ok: let it finish)."""
    if workers <= 1 or len(items) <= 1:
        _init_worker(setup, args, in_pool=False)
        return map(_do, items), lambda ok: None
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    n = min(workers, len(items))
    pool = ctx.Pool(n, initializer=_init_worker, initargs=(setup, args))
    pending: deque = deque()

    def stream() -> Iterator[Any]:
        for item in items:  # keep WINDOW items per worker in flight, in order
            pending.append(pool.apply_async(_do, (item,)))
            if len(pending) >= WINDOW * n:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def end(ok: bool) -> None:
        if ok:
            pool.close()  # let workers exit on their own: killing them mid-exit aborts native threads
        else:
            pool.terminate()
        pool.join()

    return stream(), end


def write_shards(
    target: Path,
    shards: Sequence[Shard],
    *,
    setup: Callable[..., Callable[[Any], Any]],
    args: tuple = (),
    encode: Callable[[list[Any]], bytes],
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, tuple[str, int]], int, int, int]:
    """Write the shards that are not already in `target` with the bytes the done log recorded.
    `setup(*args)` makes, once per worker, the function that turns a work item into a result;
    `encode(results)` joins one shard's results into its parquet bytes (in the main process).
    -> (path -> (sha256, bytes) of every shard, shards written, rows written, damaged shards)."""
    (target / "data").mkdir(parents=True, exist_ok=True)
    for stale in (target / "data").glob(".*.tmp"):
        stale.unlink()
    recorded = read_done(target)
    digests: dict[str, tuple[str, int]] = {}
    damaged = 0
    todo = []
    for shard in shards:
        path = target / shard.path
        sha = sha256_file(path) if shard.path in recorded and path.is_file() else None
        if sha is not None and sha == recorded[shard.path]:
            digests[shard.path] = (sha, path.stat().st_size)
        else:
            damaged += sha is not None
            todo.append(shard)
    if damaged:  # the log now describes what is on disk: the damaged shards are rewritten below
        atomic_write(target / DONE_LOG, "".join(f"{digests[n][0]}  {n}\n" for n in digests))
    total = sum(s.rows for s in shards)
    done = total - sum(s.rows for s in todo)
    report = progress or (lambda done, total: None)
    report(done, total)
    results, end = _results([item for s in todo for _, item in s.jobs], setup, args, workers)
    made = 0
    try:
        for shard in todo:
            pieces, rows = [], 0
            for n, _ in shard.jobs:
                pieces.append(next(results))
                rows += n
                if rows < shard.rows:  # the shard's last rows are reported once it is on disk
                    report(done + rows, total)
            data = encode(pieces)
            atomic_write(target / shard.path, data)
            digests[shard.path] = (sha256_bytes(data), len(data))
            record_done(target, shard.path, digests[shard.path][0])
            done += shard.rows
            made += shard.rows
            report(done, total)
    except BaseException:
        end(False)
        raise
    end(True)
    report(total, total)
    return digests, len(todo), made, damaged


def shard_entries(shards: Sequence[Shard], digests: Mapping[str, tuple[str, int]]) -> list[dict[str, Any]]:
    """The manifest's `shards`: path, split, rows, sha256 and bytes of every shard, in folder order."""
    return [{"path": s.path, "split": s.split, "rows": s.rows, "sha256": digests[s.path][0], "bytes": digests[s.path][1]} for s in shards]


def write_finished(target: Path, manifest: dict[str, Any], files: Mapping[str, bytes]) -> None:
    """The files the card publishes (README.md, assets/example.png), then the manifest recording
    their checksums: last, so a folder with a manifest is finished."""
    (target / "assets").mkdir(exist_ok=True)
    for rel, data in files.items():
        atomic_write(target / rel, data)
    manifest["files"] = {rel: {"sha256": sha256_bytes(data), "bytes": len(data)} for rel, data in files.items()}
    write_manifest(target, manifest)


# --------------------------------------------------------------------------- a whole run


def check_options(out: Path | str, *, shard_size: int, workers: int, overwrite: bool, resume: bool) -> Path:
    """The options every folder-writing command takes, checked before any work -> `out` as a Path."""
    out = Path(out)
    check_path_text(out, "--out")
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other")
    if type(shard_size) is not int or shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {shard_size}")
    if workers <= 0:
        raise UsageError(f"--workers must be positive, got {workers}")
    return out


def write_folder(
    out: Path,
    run: dict[str, Any],
    shards: Sequence[Shard],
    finish: Callable[[Path, dict[str, tuple[str, int]]], None],
    *,
    setup: Callable[..., Callable[[Any], Any]],
    args: tuple = (),
    encode: Callable[[list[Any]], bytes],
    workers: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    gives_up: type[BaseException] = UsageError,
    hint: str = "",
    resumable: bool = True,
    t0: float | None = None,
) -> FolderResult:
    """A whole run into `out`: lock it, choose where to write (OUT, or its staging folder for
    --overwrite), write the run file, the shards (`write_shards`) and `finish(target, digests)`
    (card, example, manifest; or a part file), then swap a staged folder in.

    A `gives_up` error (a row the run can never make) takes back what the run wrote (one line, +
    `hint`); Ctrl-C/SIGTERM and a full disk are one line, keeping the finished shards for --resume.
    `resumable=False` (merge): any failure takes back everything, nothing is left to resume."""
    t0 = time.perf_counter() if t0 is None else t0
    with locked_output(out):
        target = _prepare_out(out, run, overwrite, resume)
        fresh = not (target / RUN_FILE).exists()
        try:
            if fresh:
                (target / "data").mkdir(parents=True, exist_ok=True)
                atomic_write(target / RUN_FILE, json.dumps(run, indent=1, sort_keys=True) + "\n")
            digests, written, made, damaged = write_shards(
                target, shards, setup=setup, args=args, encode=encode, workers=workers, progress=progress
            )
            finish(target, digests)
        except BaseException as e:
            if not resumable:  # nothing to resume from: keep nothing (the inputs are still there)
                take_back(out, target)
                if isinstance(e, OSError):
                    raise UsageError(f"{why(e)} while writing {out}; nothing was kept") from None
                raise
            if isinstance(e, gives_up):
                raise UsageError(f"{e}; {_gave_up(out, target, fresh)}{hint}") from None
            if isinstance(e, KeyboardInterrupt):
                raise _interrupted(e, out, target, fresh) from None
            if isinstance(e, OSError):
                raise _disk_error(e, target) from None
            raise
        if target != out:
            _swap_in(target, out)
    splits: dict[str, int] = {}
    for s in shards:
        splits[s.split] = splits.get(s.split, 0) + s.rows
    return FolderResult(out, sum(s.rows for s in shards), len(shards), written, time.perf_counter() - t0, made, damaged, splits)


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
