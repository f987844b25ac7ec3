"""A dataset folder's two bookkeeping files, read through one validating reader each.

- `manifest.json` (written last by `generate`): version, command, specs, counts, the sha256 of
  every shard, and (`files`) the sha256 of every other file the folder publishes: README.md and
  assets/example.png.
- `.linebench-run.json` (written first): the run's arguments, and the sha256 of each shard as it
  is finished, so `--resume` keeps only shards whose bytes are the ones it wrote.

A folder is untrusted input (it may have been downloaded): every value is type-checked, every
path must be a plain `data/<name>.parquet` inside the folder, and a damaged file is one line
(`UsageError`), never a traceback. `manifest_problems` then says whether the manifest is
consistent with itself (the shard list the specs imply, the row counts, the command, the
generator) — what `verify` reports and `push` refuses.
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


def _read_json(path: Path, what: str, hint: str) -> Any:
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


class _Check:
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


def _check_specs(c: _Check, specs: Any) -> list[dict[str, Any]]:
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
        return _read_json(Path(folder) / MANIFEST, "a JSON manifest", hint)
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
    c = _Check(path, hint)
    c.obj(d, "the manifest", ("generator_version", "task", "command", "specs", "shard_size", "num_rows", "splits", "shards"))
    for key in ("generator_version", "task", "command"):
        c.str(d[key], key)
    c.int(d["shard_size"], "shard_size", 1)
    c.int(d["num_rows"], "num_rows", 1)
    _check_specs(c, d["specs"])
    if not isinstance(d["splits"], dict) or not d["splits"]:
        raise c.fail("splits", "an object {split: rows}", d["splits"])
    for k, v in d["splits"].items():
        c.int(v, f"splits.{k}", 1)
    _check_shards(c, d)
    return d


def _check_shards(c: _Check, d: dict[str, Any]) -> None:
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
    c = _Check(path, hint)
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
    """The run file of a folder (None if there is none), validated."""
    path = Path(folder) / RUN_FILE
    hint = "; start the run again with --overwrite"
    try:
        d = _read_json(path, "the run file", hint)
    except FileNotFoundError:
        return None
    c = _Check(path, hint)
    c.obj(d, "the run file", ("specs", "shard_size", "generator_version"))
    _check_specs(c, d["specs"])
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


def manifest_problems(manifest: Mapping[str, Any], *, generator: bool = True) -> list[str]:
    """Ways a (structurally valid) manifest contradicts itself or this linebench; empty if none.
    `generator=False` skips the check that this linebench's generator made it (push does not
    re-render, so it may publish a folder an older linebench made)."""
    from .dataset import canonical_command
    from .samples import RunSpec, generator_version
    from .tasks import get_task

    problems: list[str] = []
    task = manifest["task"]
    specs = manifest["specs"]
    if any(s["task"] != task for s in specs):
        problems.append(f"specs name another task than the manifest's {task!r}")
    splits = [s["split"] for s in specs]
    if len(set(splits)) != len(splits):
        problems.append(f"a split appears twice in specs: {', '.join(splits)}")
    if manifest["splits"] != {s["split"]: s["n"] for s in specs}:
        problems.append(f"splits {manifest['splits']} disagree with the specs' row counts")
    if manifest["num_rows"] != sum(s["n"] for s in specs):
        problems.append(f"num_rows is {manifest['num_rows']}, the specs add up to {sum(s['n'] for s in specs)}")
    want = expected_shards(specs, manifest["shard_size"])
    have = [(s["path"], s["split"], s["rows"]) for s in manifest["shards"]]
    if have != want:
        if not have:
            problems.append(f"the shard list is empty; the specs imply {len(want)} shard(s)")
        elif len(have) != len(want):
            problems.append(f"the shard list has {len(have)} shard(s); the specs imply {len(want)}")
        else:
            first = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
            problems.append(f"shard {first} is listed as {have[first]}, the specs imply {want[first]}")
    try:
        t = get_task(task)
        runs = [RunSpec.from_dict(s) for s in specs]
    except (UsageError, KeyError, TypeError, ValueError) as e:
        return problems + [f"the specs cannot be read by this linebench ({e})"]
    current = generator_version(t)
    if generator and manifest["generator_version"] != current:
        problems.append(
            f"made by generator {manifest['generator_version']}; this linebench's is {current}, "
            "so its rows cannot be re-rendered here (install the linebench that made it)"
        )
    command = manifest["command"]
    if command.startswith("linebench generate --spec "):
        name = command[len("linebench generate --spec "):]
        if "/" in name or "\\" in name or not name or "\n" in name:
            problems.append(f"command {command!r} names a path, not a release")
        else:
            from .release import official_dirs

            official = [d / f"{name}.toml" for d in official_dirs() if (d / f"{name}.toml").is_file()]
            if official:
                from .release import load_release, same_specs

                if not same_specs(manifest, load_release(str(official[0]))):
                    problems.append(f"command says official release {name!r}, but the specs differ from it")
    elif command != "\n".join(canonical_command(r, manifest["shard_size"]) for r in runs):
        problems.append("command is not the command that makes these specs")
    if "files" not in manifest:
        problems.append(f"the manifest records no checksum of {' or '.join(PUBLISHED)} (made by an older linebench): regenerate it")
    return problems
