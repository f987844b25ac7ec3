"""`linebench verify`: check every file a dataset folder publishes against its manifest, and
rebuild rows from the run's own arguments.

What is checked (a folder is untrusted input: it may have been downloaded or edited):
- the manifest is well-formed and consistent with itself (`manifest_problems`): the
  shard list the specs imply, the row counts, the command, the generator version;
- every published file matches its recorded sha256: the shards, README.md, assets/example.png;
  the example is the first row's picture; `data/` holds nothing the manifest does not list;
- every row's identity columns (id, index, split, task, seed, difficulty, generator_version)
  are the ones the specs imply, recomputed from (seed, task, split, index) — for all rows;
- a sample of rows (`--all`: every row) is rebuilt from the specs alone and compared column by
  column, image bytes and maps included. Pictures that alone differ are measured (pixels, levels)
  and reported in one line: a note when another renderer version made the folder (pixels may
  depend on it; every other column never does), a problem when the same one did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import UsageError
from .dataset import canonical_command
from .folder import EXAMPLE, PUBLISHED, expected_shards, inside, read_manifest, sha256_file
from .release import check_release, layout_problems, load_release, official_dirs, same_specs, split_digests
from .release import write_checksums as write_release_checksums
from .render import pixel_difference, renderer
from .samples import RowMaker, RunSpec, generator_version, row_seed
from .tasks import get_task

IDENTITY = ("id", "index", "split", "task", "seed", "difficulty", "generator_version")


@dataclass
class VerifyReport:
    shards: int = 0
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said, but no reason to fail
    # rows whose picture alone differs from a re-render: (row id, pixels that differ, largest level difference)
    image_diffs: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def manifest_problems(manifest: Mapping[str, Any], *, generator: bool = True) -> list[str]:
    """Ways a (structurally valid) manifest contradicts itself or this linebench; empty if none.
    `generator=False` skips the check that this linebench's generator made it (push does not
    re-render, so it may publish a folder an older linebench made)."""
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
            official = [d / f"{name}.toml" for d in official_dirs() if (d / f"{name}.toml").is_file()]
            if official:
                if not same_specs(manifest, load_release(str(official[0]))):
                    problems.append(f"command says official release {name!r}, but the specs differ from it")
    elif command != "\n".join(canonical_command(r, manifest["shard_size"]) for r in runs):
        problems.append("command is not the command that makes these specs")
    if "files" not in manifest:
        problems.append(f"the manifest records no checksum of {' or '.join(PUBLISHED)} (made by an older linebench): regenerate it")
    return problems


def _rows_to_check(total: int, sample: int, all_rows: bool) -> set[int]:
    if all_rows or sample >= total:
        return set(range(total))
    return set(np.linspace(0, total - 1, num=sample).round().astype(int).tolist())


def verify(
    folder: Path, *, all_rows: bool = False, sample: int = 32, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    folder = Path(folder)
    if type(sample) is not int or sample < 1:
        raise UsageError(f"--sample must be at least 1, got {sample} (use --all to re-render every row)")
    manifest = read_manifest(folder)
    report = VerifyReport(problems=manifest_problems(manifest))
    rebuild = not any("cannot be read" in p or "generator" in p for p in report.problems)
    report.problems += _published_files(folder, manifest)

    makers = {}
    if rebuild:
        makers = {d["split"]: RowMaker(RunSpec.from_dict(d)) for d in manifest["specs"]}
    total = sum(s["rows"] for s in manifest["shards"])
    wanted = _rows_to_check(total, sample, all_rows) if rebuild else set()
    report_progress = progress or (lambda done, total: None)
    report_progress(0, len(wanted))
    offset = 0
    split_index: dict[str, int] = {}  # next index expected in each split
    for i, shard in enumerate(manifest["shards"]):
        path = folder / shard["path"]
        report.shards += 1
        first = split_index.get(shard["split"], 0)
        split_index[shard["split"]] = first + shard["rows"]
        table = _read_shard(folder, path, shard, report.problems)
        if table is None:
            offset += shard["rows"]
            continue
        if i == 0 and table.num_rows and (folder / EXAMPLE).is_file():
            if (folder / EXAMPLE).read_bytes() != table.slice(0, 1).column("image").to_pylist()[0]["bytes"]:
                report.problems.append(f"{EXAMPLE}: not the first row's picture")
        if rebuild and shard["split"] in makers:
            report.problems += _identity(table, makers[shard["split"]], first, shard["path"])
            for r in sorted(j - offset for j in wanted if offset <= j < offset + table.num_rows):
                row = table.slice(r, 1).to_pylist()[0]
                report.problems += _compare(row, makers[shard["split"]](first + r), report.image_diffs)
                report.rows_checked += 1
                report_progress(report.rows_checked, len(wanted))
        offset += shard["rows"]
    if report.image_diffs:
        made_by, here = manifest.get("renderer"), renderer()
        line = image_line(report.image_diffs, report.rows_checked)
        if made_by and made_by != here:  # pixels may depend on the renderer's version; content never does
            report.notes.append(f"{line} ({here} here; the folder was made with {made_by})")
        else:
            report.problems.append(f"{line} ({here}, the renderer that made the folder{'' if made_by else ' (unrecorded)'})")
    return report


def certify(folder: Path, release, report: VerifyReport, *, write_checksums: bool = False) -> None:
    """Check a verified folder against a release spec's content checksums (its problems and notes
    go into `report`); with `write_checksums`, write this folder's checksums into the spec instead,
    if the folder has the release's layout and passed every check."""
    manifest = read_manifest(folder)
    if write_checksums:
        report.problems.extend(layout_problems(folder, manifest, release))
        if report.ok:
            write_release_checksums(release, manifest["generator_version"], split_digests(folder, manifest))
        return
    problems, notes = check_release(folder, manifest, release)
    report.problems.extend(problems)
    report.notes.extend(notes)


def image_line(diffs: list[tuple[str, int, int]], checked: int) -> str:
    """One line for the pictures that alone differ from their re-render."""
    return (f"{len(diffs)} of {checked} re-rendered image(s) differ from the stored ones, at most "
            f"{max(d[1] for d in diffs)} pixel(s) by at most {max(d[2] for d in diffs)} level(s); every other column matches")


def _published_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    files = manifest.get("files", {})
    for rel in PUBLISHED:
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif not inside(folder, path):
            problems.append(f"{rel}: a link to a file outside the folder")
        elif rel in files and (path.stat().st_size != files[rel]["bytes"] or sha256_file(path) != files[rel]["sha256"]):
            problems.append(f"{rel}: differs from manifest.json (sha256)")
    listed = {s["path"] for s in manifest["shards"]}
    data = folder / "data"
    if data.is_dir():
        for p in sorted(data.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if not p.name.startswith(".") and not p.is_dir() and rel not in listed:
                problems.append(f"{rel}: in data/ but not in manifest.json (load_dataset would read it)")
    return problems


def _read_shard(folder: Path, path: Path, shard: dict[str, Any], problems: list[str]) -> pa.Table | None:
    name = shard["path"]
    if not path.is_file():
        problems.append(f"{name}: missing")
        return None
    if not inside(folder, path):
        problems.append(f"{name}: a link to a file outside the folder")
        return None
    if path.stat().st_size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
        problems.append(f"{name}: sha256 differs from manifest.json")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{name}: unreadable ({str(e).splitlines()[0][:120]})")
        return None
    if table.num_rows != shard["rows"]:
        problems.append(f"{name}: {table.num_rows} rows, manifest.json says {shard['rows']}")
    missing = [c for c in IDENTITY if c not in table.column_names]
    if missing:
        problems.append(f"{name}: no column {', '.join(missing)}")
        return None
    return table


def _identity(table: pa.Table, maker: RowMaker, first: int, name: str, limit: int = 5) -> list[str]:
    """Every row's identity columns against what the run's specs imply (cheap: no rendering)."""
    cols = {c: table.column(c).to_pylist() for c in IDENTITY}
    spec, task = maker.spec, maker.task.name
    problems = []
    for r in range(table.num_rows):
        index = first + r
        want = {
            "id": maker.row_id(index),
            "index": index,
            "split": spec.split,
            "task": task,
            "seed": row_seed(spec.seed, task, spec.split, index),
            "difficulty": maker.level(index),
            "generator_version": maker.version,
        }
        bad = [c for c in IDENTITY if cols[c][r] != want[c]]
        if bad:
            problems.append(f"{name} row {r}: {', '.join(f'{c} = {cols[c][r]!r}, expected {want[c]!r}' for c in bad)}")
            if len(problems) >= limit:
                problems.append(f"{name}: further rows not listed")
                break
    return problems


def _same(stored: Any, value: Any) -> bool:
    if isinstance(value, np.ndarray):
        arr = np.asarray(stored, dtype=np.float32) if stored is not None else None
        return arr is not None and arr.shape == value.shape and np.array_equal(arr, value.astype(np.float32))
    if isinstance(value, float) and not isinstance(value, bool):
        return stored is not None and abs(float(np.float32(value)) - float(stored)) <= 1e-6 * max(1.0, abs(value))
    return stored == value


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _compare(row: dict[str, Any], expected: dict[str, Any], image_diffs: list[tuple[str, int, int]]) -> list[str]:
    """A stored row against the row rebuilt from the specs, column by column. A picture that alone
    differs (every other column matches) goes to `image_diffs`, measured in pixels."""
    rid = expected["id"]
    problems = []
    picture = None
    for name, value in expected.items():
        if name not in row:
            problems.append(f"{rid}: no column {name}")
            continue
        stored = row[name]
        if name == "image":
            if not isinstance(stored, dict) or stored.get("bytes") != value:
                picture = pixel_difference(stored.get("bytes") or b"", value) if isinstance(stored, dict) else None
                if picture is None:
                    problems.append(f"{rid}: the image is not a picture of the re-render's size")
        elif name in ("params", "geometry", "question"):
            if stored != value:
                problems.append(f"{rid}: {name} differs from a re-render")
        elif isinstance(value, np.ndarray):
            if not _same(stored, value):
                problems.append(f"{rid}: {name} differs from the map recomputed from geometry")
        elif not _same(stored, value):
            problems.append(f"{rid}: {name} differs from a re-render (stored {_short(stored)}, re-render {_short(value)})")
    if picture is not None:
        if problems:
            problems.append(f"{rid}: image differs from a re-render ({picture[0]} pixel(s), by up to {picture[1]} level(s))")
        else:
            image_diffs.append((rid, *picture))
    return problems
