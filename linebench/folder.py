"""A dataset folder's names and bookkeeping files, each read through one validating reader.

- `manifest.json` (written last by `generate`, `merge`, `maps`): version, command, specs, counts,
  the sha256 of every shard, and (`files`) the sha256 of every other file the folder publishes:
  README.md and assets/example.png.
- `.linebench-run.json` (written first): the run's arguments, so `--resume` continues only the
  same run; `.linebench-done`: the sha256 of each shard as it is finished, so `--resume` keeps only
  shards whose bytes are the ones it wrote; `.linebench-part.json`: a finished part of a run
  (`generate --part K/N`), for `merge`.

Writing them is linebench.writer's; checking what they say against this linebench (the shard list
the specs imply, the command, the generator) is linebench.verify's (`manifest_problems`).

A folder is untrusted input (it may have been downloaded): every value is type-checked, every
path must be a plain `data/<name>.parquet` inside the folder, and a damaged file is one line
(`UsageError`), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError

RUN_FILE = ".linebench-run.json"
MANIFEST = "manifest.json"
LOCK = ".linebench-lock"  # the run's exclusive lock (holds the holder's pid while it runs)
DONE_LOG = ".linebench-done"  # `sha256  path` per finished shard (sha256sum format), appended
STAGING = ".linebench-staging"  # an --overwrite run builds the new dataset here, then swaps it in
PART_FILE = ".linebench-part.json"  # a finished part of a run (--part K/N): its run and its shards' sha256
CARD = "README.md"
EXAMPLE = "assets/example.png"
PUBLISHED = (CARD, EXAMPLE)  # files besides the shards that the manifest's `files` covers
MAX_SHARDS = 99_999  # shard names carry 5-digit numbers (`train-00000-of-00050`)

_SHARD_PATH = re.compile(r"data/[A-Za-z0-9][A-Za-z0-9_.-]*\.parquet")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path, what: str, hint: str) -> Any:
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file ({what} expected){hint}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is damaged (not UTF-8){hint}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UsageError(f"{path} is damaged (not valid JSON: {str(e)[:80]}){hint}") from None


class Check:
    """Type checks with one-line messages naming the file and the field."""

    def __init__(self, path: Path, hint: str):
        self.path, self.hint = path, hint

    def fail(self, field: str, want: str, got: Any) -> UsageError:
        shown = repr(got)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return UsageError(f"{self.path} is damaged: {field} should be {want}, got {shown}{self.hint}")

    def obj(self, d: Any, field: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(d, dict):
            raise self.fail(field, "a JSON object", d)
        for k in keys:
            if k not in d:
                raise UsageError(f"{self.path} is damaged: {field} has no {k!r}{self.hint}")
        return d

    def int(self, v: Any, field: str, lo: int = 0) -> int:
        if type(v) is not int or v < lo:
            raise self.fail(field, f"an integer >= {lo}", v)
        return v

    def str(self, v: Any, field: str) -> str:
        if not isinstance(v, str):
            raise self.fail(field, "a string", v)
        return v

    def hex(self, v: Any, field: str) -> str:
        if not isinstance(v, str) or not _HEX64.fullmatch(v):
            raise self.fail(field, "a sha256 (64 hex digits)", v)
        return v

    def shard_path(self, v: Any, field: str) -> str:
        if not isinstance(v, str) or not _SHARD_PATH.fullmatch(v) or ".." in v:
            raise self.fail(field, "a path data/<name>.parquet inside the folder", v)
        return v


def check_specs(c: Check, specs: Any) -> list[dict[str, Any]]:
    if not isinstance(specs, list) or not specs:
        raise c.fail("specs", "a non-empty list", specs)
    for i, s in enumerate(specs):
        c.obj(s, f"specs[{i}]", ("task", "split", "n", "seed", "canvas", "difficulty", "knobs", "maps", "map_params"))
        c.str(s["task"], f"specs[{i}].task")
        c.str(s["split"], f"specs[{i}].split")
        c.int(s["n"], f"specs[{i}].n", 1)
        c.int(s["seed"], f"specs[{i}].seed")
        c.str(s["difficulty"], f"specs[{i}].difficulty")
        if not (isinstance(s["canvas"], list) and len(s["canvas"]) == 2 and all(type(v) is int and v > 0 for v in s["canvas"])):
            raise c.fail(f"specs[{i}].canvas", "[width, height]", s["canvas"])
        if not isinstance(s["knobs"], dict):
            raise c.fail(f"specs[{i}].knobs", "an object", s["knobs"])
        if not (isinstance(s["maps"], list) and all(isinstance(m, str) for m in s["maps"])):
            raise c.fail(f"specs[{i}].maps", "a list of profile names", s["maps"])
        if not isinstance(s["map_params"], dict):
            raise c.fail(f"specs[{i}].map_params", "an object", s["map_params"])
    return specs


def _load_manifest(folder: Path, hint: str, what: str = "linebench dataset") -> Any:
    """The parsed manifest.json of `folder` (not yet validated), or a one-line UsageError."""
    try:
        return read_json(Path(folder) / MANIFEST, "a JSON manifest", hint)
    except FileNotFoundError:
        raise UsageError(f"{folder} has no {MANIFEST}: not a finished {what} (an interrupted run? use --resume)") from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json of a finished folder, structurally validated (UsageError otherwise)."""
    folder = Path(folder)
    path = folder / MANIFEST
    hint = "; regenerate the folder, or download it again"
    d = _load_manifest(folder, hint)
    if isinstance(d, dict) and d.get("kind") == "annotations":
        raise UsageError(
            f"{folder} holds a dataset with maps added by `linebench maps`; this command reads folders made by "
            "`linebench generate` (load it with datasets.load_dataset, maps with linebench.attention_map)"
        )
    c = Check(path, hint)
    c.obj(d, "the manifest", ("generator_version", "task", "command", "specs", "shard_size", "num_rows", "splits", "shards"))
    for key in ("generator_version", "task", "command"):
        c.str(d[key], key)
    c.int(d["shard_size"], "shard_size", 1)
    c.int(d["num_rows"], "num_rows", 1)
    check_specs(c, d["specs"])
    if not isinstance(d["splits"], dict) or not d["splits"]:
        raise c.fail("splits", "an object {split: rows}", d["splits"])
    for k, v in d["splits"].items():
        c.int(v, f"splits.{k}", 1)
    _check_shards(c, d)
    return d


def _check_shards(c: Check, d: dict[str, Any]) -> None:
    """The shard list and the `files` entry, shared by both kinds of manifest."""
    if not isinstance(d["shards"], list):
        raise c.fail("shards", "a list", d["shards"])
    for i, s in enumerate(d["shards"]):
        c.obj(s, f"shards[{i}]", ("path", "split", "rows", "sha256", "bytes"))
        c.shard_path(s["path"], f"shards[{i}].path")
        c.str(s["split"], f"shards[{i}].split")
        c.int(s["rows"], f"shards[{i}].rows", 1)
        c.hex(s["sha256"], f"shards[{i}].sha256")
        c.int(s["bytes"], f"shards[{i}].bytes")
    if "files" in d:
        c.obj(d["files"], "files", ())
        for name, entry in d["files"].items():
            if name not in PUBLISHED:
                raise c.fail("files", f"entries for {' and '.join(PUBLISHED)}", name)
            c.obj(entry, f"files.{name}", ("sha256", "bytes"))
            c.hex(entry["sha256"], f"files.{name}.sha256")
            c.int(entry["bytes"], f"files.{name}.bytes")


def manifest_kind(folder: Path) -> str:
    """"generated" (linebench generate) or "annotations" (linebench maps); UsageError if unreadable."""
    d = _load_manifest(folder, "; regenerate the folder, or download it again")
    return "annotations" if isinstance(d, dict) and d.get("kind") == "annotations" else "generated"


def read_maps_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json of a `linebench maps` folder, validated (UsageError otherwise)."""
    folder = Path(folder)
    path = folder / MANIFEST
    hint = "; make the folder again with `linebench maps`"
    d = _load_manifest(folder, hint, "`linebench maps` folder")
    c = Check(path, hint)
    c.obj(d, "the manifest", ("kind", "source", "command", "options", "maps", "map_params", "shard_size", "num_rows", "splits", "shards"))
    if d["kind"] != "annotations":
        raise c.fail("kind", '"annotations"', d["kind"])
    c.obj(d["options"], "options", ("kind", "column", "image_column", "question_column", "answer_column"))
    c.int(d["num_rows"], "num_rows", 1)
    if not isinstance(d["splits"], dict) or not d["splits"]:
        raise c.fail("splits", "an object {split: rows}", d["splits"])
    _check_shards(c, d)
    if sum(s["rows"] for s in d["shards"]) != d["num_rows"]:
        raise UsageError(f"{path} is damaged: the shards hold {sum(s['rows'] for s in d['shards'])} rows, num_rows says {d['num_rows']}{hint}")
    return d


def read_run_file(folder: Path) -> dict[str, Any] | None:
    """The run file of a folder (None if there is none), validated (a `maps` run's: its keys)."""
    path = Path(folder) / RUN_FILE
    hint = "; start the run again with --overwrite"
    try:
        d = read_json(path, "the run file", hint)
    except FileNotFoundError:
        return None
    c = Check(path, hint)
    if isinstance(d, dict) and d.get("kind") == "annotations":  # `linebench maps`
        c.obj(d, "the run file", ("source", "options", "maps", "map_params", "splits", "shard_size"))
        return d
    c.obj(d, "the run file", ("specs", "shard_size", "generator_version"))
    check_specs(c, d["specs"])
    c.int(d["shard_size"], "shard_size", 1)
    c.str(d["generator_version"], "generator_version")
    done = d.get("done", {})
    c.obj(done, "done", ())
    for name, sha in done.items():
        c.shard_path(name, "a finished shard's path")
        c.hex(sha, f"done.{name}")
    return d


def expected_shards(specs: list[Mapping[str, Any]], shard_size: int) -> list[tuple[str, str, int]]:
    """(path, split, rows) of every shard the specs imply, in folder order."""
    out = []
    for s in specs:
        n = int(s["n"])
        count = -(-n // shard_size)
        out += [(f"data/{s['split']}-{i:05d}-of-{count:05d}.parquet", s["split"], min(shard_size, n - i * shard_size)) for i in range(count)]
    return out


def shard_ranges(specs: list[Mapping[str, Any]], shard_size: int) -> list[tuple[int, str, str, int, int]]:
    """(spec index, path, split, first row, end row) of every shard the specs imply, in folder order."""
    out = []
    for which, spec in enumerate(specs):
        start = 0
        for path, split, rows in expected_shards([spec], shard_size):
            out.append((which, path, split, start, start + rows))
            start += rows
    return out


def inside(folder: Path, path: Path) -> bool:
    """`path`, after symlinks, stays inside `folder`."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    from .fsio import atomic_write

    atomic_write(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_done(folder: Path) -> dict[str, str]:
    """Shard path -> sha256 of the shards the run recorded as finished (a torn last line is ignored)."""
    try:
        text = (Path(folder) / DONE_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    done = {}
    for line in text.splitlines():
        sha, _, path = line.partition("  ")
        if len(sha) == 64 and path.startswith("data/") and path.endswith(".parquet"):
            done[path] = sha
    return done


def read_part(folder: Path) -> dict[str, Any]:
    """The part file of a finished part of a run (`generate --part K/N`), validated."""
    path = Path(folder) / PART_FILE
    hint = "; make the part again (the same command with --overwrite)"
    if not Path(folder).is_dir():
        raise UsageError(f"{folder} is not a folder")
    try:
        d = read_json(path, "a part file", hint)
    except FileNotFoundError:
        why_ = " (an unfinished part: run its command again with --resume)" if (Path(folder) / RUN_FILE).exists() else ""
        raise UsageError(f"{folder} is not a finished part of a run: it has no {PART_FILE}{why_}") from None
    c = Check(path, hint)
    c.obj(d, "the part file", ("specs", "shard_size", "generator_version", "part", "command", "shards"))
    check_specs(c, d["specs"])
    c.int(d["shard_size"], "shard_size", 1)
    if not (isinstance(d["part"], list) and len(d["part"]) == 2 and all(type(v) is int for v in d["part"])):
        raise c.fail("part", "[K, N]", d["part"])
    c.obj(d["shards"], "shards", ())
    for name, entry in d["shards"].items():
        c.shard_path(name, "a shard's path")
        c.obj(entry, f"shards.{name}", ("sha256", "bytes"))
        c.hex(entry["sha256"], f"shards.{name}.sha256")
    return d
