"""`linebench generate` and `linebench merge`: the folders of generated rows.

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
canvas and set of maps. A shard is a pure function of (RunSpec, shard index): its rows come from
`samples.RowMaker`, its bytes from `shards.encode_shard`; linebench.writer writes the folder
(lock, staging, resume, worker pool, card before manifest). A run can be cut into parts
(`--part K/N`, run anywhere) that `merge` joins into the folder a single run makes, byte for byte.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import GenerationError, MapError, UsageError
from .folder import MAX_SHARDS, PART_FILE, expected_shards, read_manifest, read_part, sha256_file, shard_ranges
from .fsio import atomic_write, check_path_text
from .grids import layout
from .render import renderer
from .samples import RowMaker, RunSpec, features, generator_version, scene_maps
from .shards import encode_shard
from .tasks import get_task, knob_text
from .version import __version__
from .writer import FolderResult, Shard, check_options, shard_entries, write_finished, write_folder

__all__ = ["generate", "merge", "read_row", "preflight", "canonical_command", "part_shards"]

PROBES = 8  # scenes per level that preflight draws before anything is written
CHUNK_ROWS = 25  # rows per work item: small enough to balance cores and report progress smoothly
MAX_ROWS = 100_000_000  # rows per split (a 448 px row is ~25 kB: 2.5 TB)
RUN_KEYS = ("specs", "shard_size", "generator_version")  # what identifies a run (and a part's run)


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
    parts += [f"--knob {name}={knob_text(value)}" for name, value in sorted(spec.params.overrides.items())]
    parts.append(spec.map_params.flags())
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


def _row_maker(spec_dicts: list[dict[str, Any]]) -> Callable[[tuple[int, int, int]], list[dict[str, Any]]]:
    """A worker's work function: (spec index, first row, end row) -> those rows."""
    makers = [RowMaker(RunSpec.from_dict(d)) for d in spec_dicts]
    return lambda job: [makers[job[0]](index) for index in range(job[1], job[2])]


def _shards(spec_dicts: list[dict[str, Any]], shard_size: int) -> list[Shard]:
    """Every shard of a run, in folder order, as CHUNK_ROWS-row work items."""
    return [
        Shard(path, split, stop - start, tuple((min(c + CHUNK_ROWS, stop) - c, (which, c, min(c + CHUNK_ROWS, stop))) for c in range(start, stop, CHUNK_ROWS)))
        for which, path, split, start, stop in shard_ranges(spec_dicts, shard_size)
    ]


def part_shards(spec_dicts, shard_size: int, part: tuple[int, int]) -> list[str]:
    """The shard paths of part K of N: those whose index in the folder's shard list is K mod N
    (round robin, so every part holds a share of every split and level)."""
    k, n = part
    return [name for i, (name, _, _) in enumerate(expected_shards(spec_dicts, shard_size)) if i % n == k]


def _finisher(specs: Sequence[RunSpec], run: dict[str, Any], shards: list[Shard], feats, command: str) -> Callable[[Path, dict], None]:
    """What a run writes after its shards: the card, the example and (last) the manifest; for a
    part, its part file (no card, no manifest: `merge` writes those)."""
    from .card import card_files

    def finish(target: Path, digests: dict[str, tuple[str, int]]) -> None:
        if "part" in run:
            record = {**run, "command": command, "shards": {s.path: {"sha256": digests[s.path][0], "bytes": digests[s.path][1]} for s in shards}}
            atomic_write(target / PART_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")  # last: the part is complete
            return
        manifest = {
            "linebench_version": __version__,
            "generator_version": run["generator_version"],
            "renderer": renderer(),  # pixels may depend on it; row content never does
            "task": specs[0].task,
            "command": command,
            "specs": run["specs"],
            "shard_size": run["shard_size"],
            "num_rows": sum(s.n for s in specs),
            "splits": {s.split: s.n for s in specs},
            "shards": shard_entries(shards, digests),
        }
        write_finished(target, manifest, card_files(target, specs, feats, manifest))  # README.md, assets/example.png, manifest

    return finish


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
) -> FolderResult:
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
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    out = check_options(out, shard_size=shard_size, workers=workers, overwrite=overwrite, resume=resume)
    feats = preflight(specs, shard_size)
    spec_dicts = [s.to_dict() for s in specs]
    version = generator_version(get_task(specs[0].task))
    run = {"specs": spec_dicts, "shard_size": shard_size, "generator_version": version}
    shards = _shards(spec_dicts, shard_size)
    if part is not None:
        k, n_parts = part
        if not (type(k) is int and type(n_parts) is int and 0 <= k < n_parts):
            raise UsageError(f"--part takes K/N with 0 <= K < N, got {k}/{n_parts}")
        if n_parts > len(shards):
            raise UsageError(f"--part {k}/{n_parts}: the run has only {len(shards)} shard(s), so at most {len(shards)} parts")
        run["part"] = [k, n_parts]
        mine = set(part_shards(spec_dicts, shard_size, part))
        shards = [s for s in shards if s.path in mine]
    command = command or "\n".join(canonical_command(s, shard_size) for s in specs)
    schema = feats.arrow_schema
    return write_folder(
        out, run, shards, _finisher(specs, run, shards, feats, command),
        setup=_row_maker, args=(spec_dicts,), encode=lambda pieces: encode_shard([r for rows in pieces for r in rows], schema),
        workers=workers, overwrite=overwrite, resume=resume, progress=progress,
        gives_up=GenerationError, hint=" (or raise --knob max_attempts=N and run again)", t0=t0,
    )  # fmt: skip


# --------------------------------------------------------------------------- parts -> one folder


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


def merge(parts: Sequence[Path], out: Path, *, overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> FolderResult:
    """Join the N parts of one run (`generate --part K/N`, run anywhere) into `out`: the folder a
    single run makes, byte for byte (shards, run file, done log, card, example, manifest). Checks
    that the parts are from the same run, that each of 0..N-1 is there once, complete, with every
    shard matching its sha256; nothing is written before all of that holds."""
    t0 = time.perf_counter()
    out = Path(out)
    check_path_text(out, "--out")
    if not parts:
        raise UsageError("merge needs the part folders")
    records = [(Path(p), read_part(Path(p))) for p in parts]
    first_path, first = records[0]
    keys = (*RUN_KEYS, "command")
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
    run = {k: first[k] for k in RUN_KEYS}
    where: dict[str, Path] = {}
    for path, rec in records:
        want = part_shards(run["specs"], run["shard_size"], tuple(rec["part"]))
        if sorted(rec["shards"]) != sorted(want):
            raise UsageError(f"{path} does not hold the shards of part {rec['part'][0]}/{n} of this run")
        for name in want:
            file = path / name
            entry = rec["shards"][name]
            if not file.is_file() or file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                raise UsageError(f"{file} is missing or damaged: make part {rec['part'][0]}/{n} again (its command with --resume)")
            where[name] = path
    specs = [RunSpec.from_dict(d) for d in run["specs"]]
    # one work item per shard: its bytes, copied from the part that holds it (in folder order, as a single run finishes them)
    shards = [Shard(name, split, rows, ((rows, str(where[name] / name)),)) for name, split, rows in expected_shards(run["specs"], run["shard_size"])]
    return write_folder(
        out, run, shards, _finisher(specs, run, shards, features(specs[0]), first["command"]),
        setup=_file_reader, encode=lambda pieces: pieces[0], overwrite=overwrite, progress=progress, resumable=False, t0=t0,
    )  # fmt: skip


def _file_reader() -> Callable[[str], bytes]:
    return lambda path: Path(path).read_bytes()


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
