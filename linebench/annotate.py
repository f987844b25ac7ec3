"""`linebench maps`: add ground-truth attention maps to a real grounding dataset, as it is.

Reads a Hugging Face dataset (a local folder, parquet / JSON(L) files, or a Hub id already in the
user's cache), turns each row's annotations (points, boxes, polygons or masks; see
`linebench.annotations` for the conventions) into map targets on that row's own image size, and
writes a Hub-ready folder: every source column unchanged, plus

- `id` (only when the source has none): `<split>-<index>`, the key of predictions;
- `geometry`: JSON `{"canvas": [w, h], "targets": [...]}` — what `linebench.attention_map(row, p)`
  reads, so a map for any other model is recomputed later, exactly;
- `params`: JSON `{"maps": {...}, "annotations": {...}}` — the map levels and the annotation options;
- `attn_<profile>`: the map, flat float32 in the model's token order (image sizes vary per row, so
  the length does too; `attention_map(row, profile).grids()` gives the grids).

The folder is written by linebench.writer, as `generate`'s are: a lock, shards made by the
workers in parallel and written atomically, a done log with each shard's sha256 for `--resume`,
`--overwrite` staged beside the old folder, the card and example written before the manifest, the
manifest last. Presets name the column layouts of PixMo-Points and RefCOCO.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .annotations import BOX_FORMATS, BOX_MODES, COORDS, annotation_geometry, as_list, image_size
from .card import maps_card_files
from .errors import UsageError
from .folder import MANIFEST, manifest_kind, read_maps_manifest, shard_ranges
from .grids import canonical_maps, layout
from .maps import MapParams, attention_map
from .pointing import answer_text
from .shards import encode_table
from .version import __version__
from .writer import FolderResult, Shard, check_options, shard_entries, write_finished, write_folder

KIND = "annotations"
ANNOTATION_KINDS = ("points", "boxes", "polygons", "masks")
PROBE_ROWS = 8  # rows checked end to end before anything is written


@dataclass(frozen=True)
class Options:
    """How to read the source's columns (the presets fill these in)."""

    image_column: str = "image"
    kind: str = "boxes"  # which annotation the column holds: points | boxes | polygons | masks
    column: str = "bbox"
    coords: str = "px"
    box_format: str = "xyxy"
    box_mode: str = "area"
    point_radius: float | None = None
    question_column: str | None = "question"
    answer_column: str | None = "answer"
    prompt: str = "{question}"  # the question asked (eval, train): {question} is the question column's text
    size_columns: tuple[str, str] | None = None  # (width, height) columns, when rows carry no image bytes

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["size_columns"] = list(self.size_columns) if self.size_columns else None
        return d


PRESETS: dict[str, Options] = {
    # allenai/pixmo-points: `points` is a list of {"x", "y"} in percent of the image (0-100), `label`
    # names what is pointed at; the dataset ships image URLs: fetch the images into an `image`
    # column first (its own download script does), or give --size-columns.
    "pixmo-points": Options(
        image_column="image", kind="points", column="points", coords="percent", question_column="label", answer_column=None,
        prompt="Point to every {question} in the image.",
    ),
    # lmms-lab/RefCOCO, jxu124/refcoco: `bbox` is COCO's [x, y, width, height] in px; the question is
    # the referring expression. Maps use the box's centre region, as the paper does for RefCOCO.
    "refcoco": Options(
        image_column="image", kind="boxes", column="bbox", coords="px", box_format="xywh", box_mode="centre", answer_column=None,
        prompt='Give the bounding box of "{question}" in the image as [x1, y1, x2, y2] in pixels.',
    ),
}


def options_for(preset: str | None = None, columns: dict[str, str | None] | None = None, size_columns: str | None = None, **changes: Any) -> Options:
    """The reading options from a preset and explicit settings (what `linebench maps` is given):
    `columns` maps annotation kinds to a column name (one of them may be set); `changes` sets any
    other option (None: keep the preset's); `size_columns` is "WIDTH,HEIGHT"."""
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    opts = PRESETS[preset] if preset else Options()
    given = {k: v for k, v in (columns or {}).items() if v}
    if len(given) > 1:
        raise UsageError("name one annotation column: --points-column, --boxes-column, --polygons-column or --masks-column")
    if given:
        kind, column = next(iter(given.items()))
        opts = replace(opts, kind=kind, column=column)
    elif preset is None:
        raise UsageError("name the annotation column (--points-column, --boxes-column, --polygons-column or --masks-column) or a --preset")
    opts = replace(opts, **{k: v for k, v in changes.items() if v is not None})
    if size_columns is not None:
        cols = tuple(c.strip() for c in size_columns.split(","))
        if len(cols) != 2 or not all(cols):
            raise UsageError(f"--size-columns takes WIDTH,HEIGHT column names, got {size_columns!r}")
        opts = replace(opts, size_columns=cols)
    return opts


def maps_command(source: str, profiles: tuple[str, ...], opts: Options, split: str | None, map_params: MapParams, shard_size: int) -> str:
    """The command that remakes a `maps` folder, spelled out (no output path: it says nothing about the data)."""
    from shlex import quote

    parts = ["linebench maps", quote(source), f"--maps {','.join(profiles)}"]
    parts += [f"--split {quote(split)}"] if split else []
    parts += [f"--image-column {quote(opts.image_column)}", f"--{opts.kind}-column {quote(opts.column)}", f"--coords {opts.coords}"]
    parts += [f"--box-format {opts.box_format} --box-mode {opts.box_mode}"] if opts.kind == "boxes" else []
    parts += [f"--point-radius {opts.point_radius}"] if opts.kind == "points" and opts.point_radius is not None else []
    parts += [f"--size-columns {','.join(opts.size_columns)}"] if opts.size_columns else []
    parts += [f"--{w}-column {quote(c)}" for w, c in (("question", opts.question_column), ("answer", opts.answer_column)) if c]
    parts.append(map_params.flags())
    parts.append(f"--shard-size {shard_size}")
    return " ".join(parts)


# --------------------------------------------------------------------------- reading the source


def load_source(source: str, split: str | None = None):
    """The source as {split: datasets.Dataset}: a local folder, parquet / JSON(L) files, or a Hub id
    in the local cache (set HF_HUB_OFFLINE=1 to be sure nothing is downloaded)."""
    import datasets

    path = Path(source)
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # linebench's own bar reports the work
    try:
        if path.is_file():
            builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}.get(path.suffix.lower())
            if builder is None:
                raise UsageError(f"{source}: not a parquet or JSON(L) file (or give a dataset folder or a Hub id)")
            dd = datasets.load_dataset(builder, data_files=str(path))
        else:
            dd = datasets.load_dataset(str(source))
    except UsageError:
        raise
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot read the dataset {source}: {first[:200]}") from None
    except Exception as e:  # connection errors for an uncached Hub id, broken files
        raise UsageError(f"cannot read the dataset {source} ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    if split is not None:
        if split not in dd:
            raise UsageError(f"{source} has no split {split!r} (it has {', '.join(dd)})")
        return {split: dd[split]}
    return dict(dd)


def row_geometry(row: dict[str, Any], size: tuple[int, int], opts: Options) -> dict[str, Any]:
    items = as_list(opts.kind, row[opts.column])
    if not items:
        raise UsageError(f"column {opts.column!r} is empty")
    return annotation_geometry(
        size,
        **{opts.kind: items},
        coords=opts.coords,
        box_format=opts.box_format,
        box_mode=opts.box_mode,
        point_radius=opts.point_radius,
    )


# --------------------------------------------------------------------------- rows for eval and training


def is_maps_folder(folder: Path | str) -> bool:
    path = Path(folder)
    return path.is_dir() and (path / MANIFEST).is_file() and manifest_kind(path) == "annotations"


def as_rows(ds, folder: Path | str):
    """A split of a `linebench maps` folder as linebench-style rows for `linebench eval` and
    `linebench train`: `question` is the preset's prompt around the question column, `answer` the
    answer column (or the annotation as text, `answer_text`), `task` "grounding-<kind>"; the image
    column becomes `image`. Images are not decoded or re-encoded."""
    m = read_maps_manifest(Path(folder))
    o = m["options"]
    prompt, qcol, acol = o.get("prompt") or "{question}", o.get("question_column"), o.get("answer_column")
    task = f"grounding-{o['kind']}"

    cols = ["geometry"] + [c for c in (qcol, acol) if c]

    def convert(*columns: list) -> dict[str, list]:
        batch = dict(zip(cols, columns))
        n = len(batch["geometry"])
        qs = batch[qcol] if qcol else [""] * n
        questions = [prompt.format(question=q[0] if isinstance(q, list) and q else q) for q in qs]
        if acol:
            answers = [a[0] if isinstance(a, list) and a else str(a) for a in batch[acol]]
        else:
            answers = [answer_text(json.loads(g)) for g in batch["geometry"]]
        return {"question": questions, "answer": answers, "task": [task] * n}

    if o["image_column"] != "image":
        ds = ds.rename_column(o["image_column"], "image")
    # input_columns: only these are read for the conversion, so the images are not decoded
    return ds.map(convert, batched=True, input_columns=cols, load_from_cache_file=False)


# --------------------------------------------------------------------------- the work


def _rows(split_ds, start: int, stop: int, opts: Options, profiles: tuple[str, ...], params: MapParams, base: Path | None, ident: str):
    """The new columns for rows [start, stop) of a split -> (geometry, params, {attn_p: [...]})."""
    cols = [opts.image_column, opts.column] + (list(opts.size_columns) if opts.size_columns else [])
    chunk = split_ds.select_columns([c for c in dict.fromkeys(cols)]).with_format("arrow")[start:stop].to_pylist()
    params_json = json.dumps({"maps": {"profiles": list(profiles), **params.to_dict()}, "annotations": opts.to_dict()}, sort_keys=True)
    geoms, maps = [], {p: [] for p in profiles}
    layouts: dict = {}
    for k, row in enumerate(chunk):
        where = f"{ident} row {start + k}"
        try:
            if opts.size_columns:
                size = (int(row[opts.size_columns[0]]), int(row[opts.size_columns[1]]))
            else:
                size = image_size(row[opts.image_column], base)
            geometry = row_geometry(row, size, opts)
            for p in profiles:
                if (p, size) not in layouts:  # image sizes repeat (COCO has a few dozen): one layout each
                    layouts[(p, size)] = layout(p, size)
                maps[p].append(attention_map(geometry, layouts[(p, size)], **params.to_dict()).values)
        except UsageError as e:
            raise UsageError(f"{where}: {e}") from None
        except Exception as e:  # MapError (targets seen by no token), odd values
            raise UsageError(f"{where}: {type(e).__name__}: {e}") from None
        geoms.append(json.dumps(geometry, separators=(",", ":")))
    return geoms, [params_json] * len(chunk), maps


def _shard_table(split_ds, start: int, stop: int, opts: Options, profiles, params: MapParams, base, ident: str, schema: pa.Schema) -> pa.Table:
    table = split_ds.with_format("arrow")[start:stop]
    if "id" not in table.column_names:
        table = table.add_column(0, "id", pa.array([f"{ident}-{i:07d}" for i in range(start, stop)], pa.string()))
    geoms, params_col, maps = _rows(split_ds, start, stop, opts, profiles, params, base, ident)
    table = table.append_column("geometry", pa.array(geoms, pa.string()))
    table = table.append_column("params", pa.array(params_col, pa.string()))
    for p in profiles:
        values = maps[p]
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum([len(v) for v in values])
        flat = np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)
        table = table.append_column(f"attn_{p}", pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)))
    return table.cast(schema)


def _shard_maker(state: dict[str, Any]) -> Callable[[tuple[str, int, int]], bytes]:
    """A worker's work function: (split, first row, end row) -> the parquet bytes of that shard."""
    schema = state["schema"]

    def make(job: tuple[str, int, int]) -> bytes:
        split, start, stop = job
        table = _shard_table(state["splits"][split], start, stop, state["opts"], state["profiles"], state["params"], state["base"], split, schema)
        return encode_table(table, state["opts"].image_column)

    return make


def features_for(split_ds, opts: Options, profiles: tuple[str, ...]):
    from datasets import Features, List, Value

    feats = dict(split_ds.features)
    if "id" not in feats:  # predictions are keyed by id (linebench eval / score): one per row, "<split>-<index>"
        feats = {"id": Value("string"), **feats}
    clash = [c for c in ("geometry", "params", *[f"attn_{p}" for p in profiles]) if c in feats]
    if clash:
        raise UsageError(f"the dataset already has a column {clash[0]!r}: rename it first (linebench adds geometry, params and attn_<profile>)")
    feats["geometry"] = Value("string")
    feats["params"] = Value("string")
    for p in profiles:
        feats[f"attn_{p}"] = List(Value("float32"))
    return Features(feats)


def _check_columns(split: str, split_ds, opts: Options) -> None:
    names = list(split_ds.column_names)
    need = [opts.column] + ([opts.image_column] if not opts.size_columns else list(opts.size_columns))
    need += [c for c in (opts.question_column, opts.answer_column) if c]
    for c in need:
        if c not in names:
            raise UsageError(f"split {split!r} has no column {c!r} (its columns: {', '.join(names)}); name the right one with the --*-column options")


def add_maps(
    source: str,
    out: Path,
    *,
    maps: tuple[str, ...],
    opts: Options = Options(),
    split: str | None = None,
    map_params: MapParams = MapParams(),
    shard_size: int = 1000,
    workers: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
) -> FolderResult:
    """Write the source with maps added into `out` (see the module docstring)."""
    t0 = time.perf_counter()
    out = check_options(out, shard_size=shard_size, workers=workers, overwrite=overwrite, resume=resume)
    if opts.kind not in ANNOTATION_KINDS:
        raise UsageError(f"the annotation kind must be one of {', '.join(ANNOTATION_KINDS)}, got {opts.kind!r}")
    for value, allowed, what in ((opts.coords, COORDS, "--coords"), (opts.box_format, BOX_FORMATS, "--box-format"), (opts.box_mode, BOX_MODES, "--box-mode")):
        if value not in allowed:
            raise UsageError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    if not maps:
        raise UsageError("--maps names no profile")
    profiles = canonical_maps(maps, (448, 448))
    splits = load_source(source, split)
    base = Path(source) if Path(source).is_dir() else Path(source).parent if Path(source).is_file() else None
    feats = None
    for name, ds in splits.items():
        _check_columns(name, ds, opts)
        f = features_for(ds, opts, profiles)
        feats = feats or f
        if len(ds) == 0:
            raise UsageError(f"split {name!r} of {source} has no rows")
        # a bad profile, box format or coordinate convention fails here, before any file is written
        _rows(ds, 0, min(PROBE_ROWS, len(ds)), opts, profiles, map_params, base, name)
    schema = feats.arrow_schema
    run = {"kind": KIND, "source": str(source), "options": opts.to_dict(), "maps": list(profiles), "map_params": map_params.to_dict(),
           "splits": {k: len(v) for k, v in splits.items()}, "shard_size": shard_size}
    ranges = shard_ranges([{"split": k, "n": len(v)} for k, v in splits.items()], shard_size)
    shards = [Shard(path, split_name, stop - start, ((stop - start, (split_name, start, stop)),)) for _, path, split_name, start, stop in ranges]

    def finish(target: Path, digests: dict[str, tuple[str, int]]) -> None:
        manifest = {
            "kind": KIND,
            "linebench_version": __version__,
            "source": str(source),
            "command": command or "",
            "options": opts.to_dict(),
            "maps": list(profiles),
            "map_params": map_params.to_dict(),
            "shard_size": shard_size,
            "num_rows": sum(s.rows for s in shards),
            "splits": run["splits"],
            "shards": shard_entries(shards, digests),
        }
        write_finished(target, manifest, maps_card_files(target, manifest, schema))

    state = {"splits": splits, "opts": opts, "profiles": profiles, "params": map_params, "base": base, "schema": schema}
    # the folder discipline of `generate`; a row the options cannot read takes back what this run wrote
    return write_folder(
        out, run, shards, finish, setup=_shard_maker, args=(state,), encode=lambda pieces: pieces[0],
        workers=workers, overwrite=overwrite, resume=resume, progress=progress, gives_up=UsageError, t0=t0,
    )  # fmt: skip
