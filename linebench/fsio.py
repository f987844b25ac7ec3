"""Writing files without losing or leaking anything (docs/design.md, "Writing files").

Two kinds of writes:

- **Folder files** (shards, the card, the example picture, manifest.json, the run file): written
  with `atomic_write`: a temporary file beside the target, fsync, rename, fsync of the folder. A
  killed or failing run leaves the old file or the new one, never a truncated one.
- **User-named outputs** (`score --json`, `show -o`, ...): written with `write_output`, which renames
  only over a regular file (or nothing). A symlink is followed and its target replaced the same
  way; a device, pipe or socket (`/dev/null`, `/dev/stdout`, a FIFO) is written through in place,
  never replaced.

New files get the mode the umask gives (0666 & ~umask, as `open()` would), not mkstemp's 0600; a
replaced regular file keeps its mode. A full disk (or any other OSError) is a `UsageError`: one line
naming the file, with nothing half-written left behind.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import UsageError

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def umask() -> int:
    """The process umask (read without changing it, where /proc allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # pragma: no cover - systems without /proc
    os.umask(old)
    return old


def why(e: OSError) -> str:
    """A short reason for an OSError, with a hint for a full disk."""
    if e.errno in FULL:
        return "no space left on the device (or a file size / quota limit)"
    return e.strerror or str(e)


def write_error(path: Path | str, e: OSError, hint: str = "") -> UsageError:
    return UsageError(f"cannot write {path}: {why(e)}{hint}")


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:  # already gone, or a read-only file system: nothing more to do
        pass


def fsync_dir(folder: Path | str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | str, *, mode: int | None = None, sync: bool = True) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename. Raises OSError
    (callers turn it into one line); the temporary file never outlives a failure."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


def output_target(path: Path | str) -> tuple[Path, bool]:
    """Where a user-named output really goes -> (path, write through in place?). Follows symlinks
    (a loop or a dangling link into a missing folder is a UsageError)."""
    path = Path(path)
    if not str(path):
        raise UsageError("an output path is empty")
    try:
        path.parent.stat()
    except OSError as e:
        raise UsageError(f"cannot write {path}: its folder {path.parent} {_missing(e)}") from None
    target = path
    if path.is_symlink():
        try:
            target = path.resolve(strict=False)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            raise UsageError(f"cannot write {path}: it is a symlink loop") from None
        if target.is_symlink():  # resolve gave up on a loop
            raise UsageError(f"cannot write {path}: it is a symlink loop")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise UsageError(f"cannot write {path}: it links to {target}, whose folder does not exist") from None
        return target, False
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"cannot write {path}: it is a symlink loop") from None
        raise UsageError(f"cannot write {path}: {why(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot write {path}: it is a folder")
    return target, not stat.S_ISREG(st.st_mode)


def _missing(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "does not exist"
    if e.errno == errno.ELOOP:
        return "is a symlink loop"
    return f"cannot be used ({why(e)})"


def check_output(path: Path | str) -> None:
    """Fail before any work if `path` cannot be written (folder missing or read-only, a folder
    in its place, a symlink loop)."""
    target, through = output_target(path)
    if through:
        if not os.access(target, os.W_OK):
            raise UsageError(f"cannot write {path}: permission denied")
        return
    if not os.access(target.parent, os.W_OK):
        raise UsageError(f"cannot write {path}: {target.parent} is not writable")


def write_output(path: Path | str, data: bytes | str) -> None:
    """Write one user-named output (see the module docstring). Raises UsageError."""
    write_outputs({Path(path): data})


def write_outputs(outputs: dict[Path, bytes | str]) -> None:
    """Write several user-named outputs: all regular files are staged first and renamed into
    place together, so an error leaves none of them half-written."""
    staged: list[tuple[str, Path, int]] = []
    try:
        plan = [(path, *output_target(path), data) for path, data in outputs.items()]
        for path, target, through, data in plan:
            raw = data.encode("utf-8") if isinstance(data, str) else data
            if through:  # a device, pipe or socket: write into it, never replace it
                try:
                    with open(target, "wb") as fh:
                        fh.write(raw)
                except OSError as e:
                    raise write_error(path, e) from None
                continue
            try:
                keep = stat.S_IMODE(os.stat(target).st_mode)
            except FileNotFoundError:
                keep = 0o666 & ~umask()
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as e:
                raise write_error(path, e) from None
            staged.append((tmp, target, keep))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, keep)
            except OSError as e:
                raise write_error(path, e) from None
        for tmp, target, _ in staged:
            try:
                os.replace(tmp, target)
            except OSError as e:
                raise write_error(target, e) from None
    finally:
        for tmp, _, _ in staged:
            if os.path.lexists(tmp):
                _unlink_quietly(tmp)


def check_path_text(path: Path | str, what: str) -> None:
    """Refuse a path that cannot be printed or stored as UTF-8 (a stray byte in a file name)."""
    text = os.fspath(path)
    if text == "":
        raise UsageError(f"{what} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {text.encode('utf-8', 'backslashreplace').decode()} is not valid UTF-8: rename it") from None


def remove_quietly(paths: Iterable[Path]) -> None:
    for p in paths:
        _unlink_quietly(p)
