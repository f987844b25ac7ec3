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

The folder is written as `generate` writes one (linebench/dataset.py): a lock, shards written
atomically by the workers in parallel, a done log with each shard's sha256 for `--resume`,
`--overwrite` staged beside the old folder, the card and example written before the manifest, the
manifest last. Presets name the column layouts of PixMo-Points and RefCOCO.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .version import __version__
from .annotations import BOX_FORMATS, BOX_MODES, COORDS, annotation_geometry, as_list, image_size
from .dataset import DONE_LOG, _record_done, read_done, write_folder
from .errors import UsageError
from .folder import RUN_FILE, expected_shards, sha256_bytes, sha256_file, write_manifest
from .fsio import atomic_write, check_path_text
from .grids import canonical_maps, layout
from .maps import MapParams, attention_map
from .pointing import answer_text

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


@dataclass
class MapsResult:
    out: Path
    rows: int
    shards: int
    written: int
    seconds: float
    rows_written: int = 0
    damaged: int = 0
    splits: dict[str, int] = field(default_factory=dict)


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
    from .folder import MANIFEST, manifest_kind

    path = Path(folder)
    return path.is_dir() and (path / MANIFEST).is_file() and manifest_kind(path) == "annotations"


def as_rows(ds, folder: Path | str):
    """A split of a `linebench maps` folder as linebench-style rows for `linebench eval` and
    `linebench train`: `question` is the preset's prompt around the question column, `answer` the
    answer column (or the annotation as text, `answer_text`), `task` "grounding-<kind>"; the image
    column becomes `image`. Images are not decoded or re-encoded."""
    from .folder import read_maps_manifest

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


_W: dict[str, Any] = {}


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


def _work(job: tuple[str, int, int, str]) -> tuple[str, str, int]:
    split, start, stop, name = job
    w = _W
    table = _shard_table(w["splits"][split], start, stop, w["opts"], w["profiles"], w["params"], w["base"], f"{split}", w["schema"])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=100, compression={f.name: ("none" if f.name == w["opts"].image_column else "zstd") for f in w["schema"]})
    data = sink.getvalue().to_pybytes()
    atomic_write(w["target"] / name, data)
    return name, sha256_bytes(data), len(data)


def _init(state: dict[str, Any], in_pool: bool = True) -> None:
    import signal

    from .dataset import _die_with_parent

    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
    _W.update(state)


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
) -> MapsResult:
    """Write the source with maps added into `out` (see the module docstring)."""
    t0 = time.perf_counter()
    out = Path(out)
    check_path_text(out, "--out")
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other")
    if type(shard_size) is not int or shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {shard_size}")
    if workers <= 0:
        raise UsageError(f"--workers must be positive, got {workers}")
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
    # the folder discipline of `generate`; a row the options cannot read takes back what this run wrote
    return write_folder(
        out, run, overwrite, resume,
        lambda target: _write(target, splits, run, schema, opts, profiles, map_params, base, workers, shard_size, progress, command or "", source, t0),
        gives_up=UsageError, same=_same_maps_run,
    )  # fmt: skip


def _same_maps_run(folder: Path, run: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / RUN_FILE).read_text()) == run
    except (OSError, ValueError):
        return False


def _write(target, splits, run, schema, opts, profiles, map_params, base, workers, shard_size, progress, command, source, t0) -> MapsResult:
    (target / "data").mkdir(parents=True, exist_ok=True)
    if not (target / RUN_FILE).exists():
        atomic_write(target / RUN_FILE, json.dumps(run, indent=1, sort_keys=True) + "\n")
    specs = [{"split": k, "n": len(v)} for k, v in splits.items()]
    plan = []
    for s in specs:
        start = 0
        for name, _, rows in expected_shards([s], shard_size):
            plan.append((s["split"], start, start + rows, name))
            start += rows
    recorded = read_done(target)
    digests: dict[str, tuple[str, int]] = {}
    todo, damaged = [], 0
    for split_name, start, stop, name in plan:
        path = target / name
        sha = sha256_file(path) if name in recorded and path.is_file() else None
        if sha is not None and sha == recorded[name]:
            digests[name] = (sha, path.stat().st_size)
        else:
            damaged += sha is not None
            todo.append((split_name, start, stop, name))
    if damaged:
        atomic_write(target / DONE_LOG, "".join(f"{digests[n][0]}  {n}\n" for n in digests))
    total = sum(len(v) for v in splits.values())
    done = total - sum(e - s for _, s, e, _ in todo)
    report = progress or (lambda d, t: None)
    report(done, total)
    state = {"splits": splits, "opts": opts, "profiles": profiles, "params": map_params, "base": base, "schema": schema, "target": target}
    made = 0
    if workers > 1 and len(todo) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(min(workers, len(todo)), initializer=_init, initargs=(state,))
        try:
            for name, sha, size in pool.imap_unordered(_work, todo):
                digests[name] = (sha, size)
                _record_done(target, name, sha)
                rows = next(e - s for _, s, e, n in todo if n == name)
                done += rows
                made += rows
                report(done, total)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    else:
        _init(state, in_pool=False)
        for job in todo:
            name, sha, size = _work(job)
            digests[name] = (sha, size)
            _record_done(target, name, sha)
            done += job[2] - job[1]
            made += job[2] - job[1]
            report(done, total)
    shards = [{"path": n, "split": sp, "rows": e - s, "sha256": digests[n][0], "bytes": digests[n][1]} for sp, s, e, n in plan]
    manifest = {
        "kind": KIND,
        "linebench_version": __version__,
        "source": str(source),
        "command": command,
        "options": opts.to_dict(),
        "maps": list(profiles),
        "map_params": map_params.to_dict(),
        "shard_size": shard_size,
        "num_rows": total,
        "splits": {k: len(v) for k, v in splits.items()},
        "shards": shards,
    }
    files = _card_files(target, manifest, splits, schema)
    (target / "assets").mkdir(exist_ok=True)
    for rel, data in files.items():
        atomic_write(target / rel, data)
    manifest["files"] = {rel: {"sha256": sha256_bytes(d), "bytes": len(d)} for rel, d in files.items()}
    write_manifest(target, manifest)
    return MapsResult(target, total, len(plan), len(todo), time.perf_counter() - t0, made, damaged, manifest["splits"])


def _card_files(folder: Path, manifest: dict[str, Any], splits, schema: pa.Schema) -> dict[str, bytes]:
    from datasets import Features
    from datasets.info import DatasetInfo, DatasetInfosDict
    from huggingface_hub import DatasetCardData
    from PIL import Image

    first = manifest["shards"][0]
    image_col = manifest["options"]["image_column"]
    example = b""
    names = pq.read_schema(folder / first["path"]).names
    if image_col in names:
        value = pq.read_table(folder / first["path"], columns=[image_col]).slice(0, 1).to_pylist()[0][image_col]
        if isinstance(value, dict) and value.get("bytes"):
            with Image.open(io.BytesIO(value["bytes"])) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG")
                example = buf.getvalue()
    if not example:  # no image bytes in the rows (--size-columns): a 1x1 placeholder
        buf = io.BytesIO()
        Image.new("RGB", (1, 1), (255, 255, 255)).save(buf, format="PNG")
        example = buf.getvalue()
    feats = Features.from_arrow_schema(schema)
    size = sum(s["bytes"] for s in manifest["shards"])
    data = DatasetCardData(
        license="other",
        pretty_name=f"{manifest['source']} with linebench attention maps",
        task_categories=["visual-question-answering"],
        tags=["linebench", "visual-grounding", "attention-maps"],
        configs=[{"config_name": "default", "data_files": [{"split": k, "path": f"data/{k}-*"} for k in manifest["splits"]], "default": True}],
    )
    DatasetInfosDict({"default": DatasetInfo(features=feats, download_size=size, dataset_size=size)}).to_dataset_card_data(data)
    opts = manifest["options"]
    mp_ = manifest["map_params"]
    body = f"""
# {manifest['source']} — with ground-truth attention maps

The rows of `{manifest['source']}` as they are, with exact ground-truth attention maps added by
[linebench](https://github.com/linebench/linebench) {__version__} for training with the KL attention
loss (KLAL) of *Direct Visual Grounding by Directing Attention of Visual Tokens* (Esmaeilkhani &
Latecki). **The source dataset's licence and terms apply to these rows.**

![example](assets/example.png)

## Columns added

| column | type | meaning |
|---|---|---|
| `geometry` | string | JSON `{{"canvas": [w, h], "targets": [...]}}`: the map targets in image px |
| `params` | string | JSON: the map levels and how the annotations were read |
""" + "".join(f"| `attn_{p}` | list<float32> | map over `{p}`'s visual tokens in token order; sums to 1 |\n" for p in manifest["maps"]) + f"""
Annotations: column `{opts['column']}` ({opts['kind']}), coordinates `{opts['coords']}`, box format
`{opts['box_format']}`, box mode `{opts['box_mode']}`. Map levels: target {mp_['target']}, neighbour
{mp_['neighbour']} (radius {mp_['radius']}), floor {mp_['floor']}.

```python
from datasets import load_dataset
from linebench import attention_map
row = load_dataset("path/or/repo-id", split="{next(iter(manifest['splits']))}")[0]
m = attention_map(row, "qwen2.5-vl")   # the same map for any profile, from `geometry`
```

Made with:

```
{manifest['command']}
```
"""
    card = f"---\n{data.to_yaml()}\n---\n{body}"
    return {"README.md": card.encode("utf-8"), "assets/example.png": example}
