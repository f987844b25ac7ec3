"""The dataset cards (README.md): YAML the Hub reads + a body people read, from one source, for
both kinds of folder: generated rows (`card_files`) and a real dataset with maps (`maps_card_files`).

The YAML `configs` and `dataset_info.features` come from the same `Features` the shards carry,
through huggingface_hub's `DatasetCardData` and datasets' `DatasetInfosDict`; nothing is written
by hand twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq

from .version import __version__
from .folder import read_manifest
from .samples import RunSpec, column_help, features
from .tasks import get_task

PAPER_BIBTEX = """@article{esmaeilkhani2025klal,
  title   = {Direct Visual Grounding by Directing Attention of Visual Tokens},
  author  = {Esmaeilkhani, Parsa and Latecki, Longin Jan},
  journal = {arXiv preprint arXiv:2511.12738},
  year    = {2025},
  note    = {WACV 2026}
}"""

SOFTWARE_BIBTEX = f"""@software{{linebench,
  title   = {{linebench: synthetic visual-grounding benchmarks with ground-truth attention maps}},
  author  = {{linebench developers}},
  version = {{{__version__}}},
  year    = {{2026}}
}}"""


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _histograms(folder: Path, manifest: dict[str, Any]) -> tuple[dict[str, Counter], dict[str, Counter]]:
    """Per split: how often each answer and each difficulty level occurs."""
    answers: dict[str, Counter] = {split: Counter() for split in manifest["splits"]}
    levels: dict[str, Counter] = {split: Counter() for split in manifest["splits"]}
    for shard in manifest["shards"]:
        t = pq.read_table(folder / shard["path"], columns=["answer", "difficulty"])
        answers[shard["split"]].update(t.column("answer").to_pylist())
        levels[shard["split"]].update(t.column("difficulty").to_pylist())
    return answers, levels


def _table(per_split: dict[str, Counter]) -> str:
    """One row per value, one column per split: rows (share of the split)."""
    keys = sorted({k for c in per_split.values() for k in c}, key=lambda k: (len(str(k)), str(k)))
    lines = ["| value | " + " | ".join(per_split) + " |", "|---|" + "---:|" * len(per_split)]
    for k in keys:
        cells = [f"{c[k]} ({100 * c[k] / (sum(c.values()) or 1):.1f}%)" for c in per_split.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def config_name(manifest: dict[str, Any]) -> str:
    """The card's config for this folder: an official release (`generate --spec`) is named after
    its generator version (`core5-tracing2`), the name `linebench push` also tags the Hub commit
    with, so a paper can cite the exact release; any other run is `default`."""
    if manifest.get("command", "").startswith("linebench generate --spec "):
        return manifest["generator_version"]
    return "default"


def card_files(folder: Path, specs: Sequence[RunSpec], feats, manifest: dict[str, Any], repo_id: str | None = None) -> dict[str, bytes]:
    """The card (README.md) and the example picture it shows (the first row's image), as bytes;
    the caller writes them (atomically, before the manifest that records their checksums)."""
    first = pq.read_table(folder / manifest["shards"][0]["path"], columns=["image"]).slice(0, 1).to_pylist()[0]
    return {
        "README.md": render_card(folder, specs, feats, manifest, repo_id).encode("utf-8"),
        "assets/example.png": first["image"]["bytes"],
    }


def card_for_folder(folder: Path, repo_id: str | None = None) -> str:
    """The card of a finished folder, rebuilt from its manifest (e.g. naming the Hub repo it goes to)."""
    manifest = read_manifest(folder)
    specs = [RunSpec.from_dict(d) for d in manifest["specs"]]
    return render_card(folder, specs, features(specs[0]), manifest, repo_id)


def render_card(folder: Path, specs: Sequence[RunSpec], feats, manifest: dict[str, Any], repo_id: str | None = None) -> str:
    """The card text: YAML (configs, dataset_info, licence, tags) + a body. `repo_id` goes into
    the loading snippet (default: a placeholder)."""
    from datasets import Array2D, DatasetInfo, Image, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict
    from huggingface_hub import DatasetCardData

    spec = specs[0]
    task = get_task(spec.task)
    size = sum(s["bytes"] for s in manifest["shards"])
    splits = SplitDict()
    for sp in specs:
        split_bytes = sum(s["bytes"] for s in manifest["shards"] if s["split"] == sp.split)
        splits.add(SplitInfo(sp.split, num_bytes=split_bytes, num_examples=sp.n))
    info = DatasetInfo(features=feats, splits=splits, download_size=size, dataset_size=size)
    n_rows = sum(sp.n for sp in specs)
    config = config_name(manifest)
    data = DatasetCardData(
        license="cc-by-4.0",
        pretty_name=f"linebench {task.name}",
        task_categories=["visual-question-answering"],
        tags=["linebench", "synthetic", "visual-grounding", "attention-maps", task.name],
        size_categories=[_size_category(n_rows)],
        configs=[
            {
                "config_name": config,
                "data_files": [{"split": sp.split, "path": f"data/{sp.split}-*"} for sp in specs],
                "default": True,
            }
        ],
    )
    DatasetInfosDict({config: info}).to_dataset_card_data(data)

    answers, levels = _histograms(folder, manifest)
    first = pq.read_table(folder / manifest["shards"][0]["path"], columns=["question", "answer"]).slice(0, 1).to_pylist()[0]
    where = repo_id or "path/or/repo-id"
    pick = ""
    if config != "default":
        pin = f', revision="{config}"' if repo_id else ""
        pick = f'''
ds = load_dataset("{where}", "{config}", split="{spec.split}"{pin})   # exactly this release'''

    helps = column_help(task)
    rows = []
    for name, feat in feats.items():
        if isinstance(feat, Array2D):
            kind = f"Array2D{tuple(feat.shape)} float32"
            what = "uniform token grid" if name[5:].startswith("grid") else "model's visual tokens, in its token order"
            desc = f"ground-truth attention map P(S) over the `{name[5:]}` {what}; sums to 1"
        else:
            kind = "Image" if isinstance(feat, Image) else feat.dtype
            desc = helps.get(name, "")
        rows.append(f"| `{name}` | {kind} | {desc} |")
    mp_ = spec.map_params
    certify = ""
    if manifest["command"].startswith("linebench generate --spec "):
        name = manifest["command"].split("--spec ", 1)[1]
        certify = (
            f"\nThis is a release defined by a split spec: `linebench verify FOLDER --spec {name}` also checks "
            "every split's content against the checksums stored in the spec."
        )
        if repo_id:
            certify += f"""
To certify a downloaded copy:

```bash
hf download {repo_id} --repo-type dataset --revision {config} --local-dir {repo_id.split("/")[1]}
linebench verify {repo_id.split("/")[1]} --spec {name}
```"""
    body = f"""
# linebench — {task.name}

{task.description} A synthetic visual-grounding benchmark from
[linebench](https://github.com/linebench/linebench): every answer is computed from exact vector
geometry, and every sample carries ground-truth attention maps for training with the KL attention
loss (KLAL) of *Direct Visual Grounding by Directing Attention of Visual Tokens* (Esmaeilkhani & Latecki).

![example](assets/example.png)

Example — **Q:** {first["question"]} **A:** {first["answer"]}

## Load

```python
from datasets import load_dataset
ds = load_dataset("{where}", split="{spec.split}"){pick}
row = ds[0]   # row["image"] is a PIL image, row["attn_{spec.maps[0] if spec.maps else 'grid24'}"] a float32 array
```

## How it was generated

linebench {__version__}, generator `{manifest["generator_version"]}`:

```
{manifest["command"]}
```

Rows depend only on (base seed, task, split, index): the same command gives the same bytes with any
number of workers. `linebench verify FOLDER` re-renders rows from their stored `seed` and `params`
and checks every shard against `manifest.json`.{certify}

Attention maps: target tokens (those holding {getattr(task, "target_description", "the targets")}) share mass
{mp_.target} in proportion to the exact target area in each token; their neighbours within {mp_.radius}
token(s) share {mp_.neighbour}; all other tokens share {mp_.floor}. Maps for other models (LLaVA-NeXT,
LLaVA-OneVision, Qwen2/2.5/3-VL, InternVL, PaliGemma, Gemma 3, Idefics3, SmolVLM, Molmo, or other
checkpoint settings) come from the stored `geometry`, matched to each model's own preprocessing and
token order:

```python
import linebench
m = linebench.attention_map(row, "llava-onevision")   # m.values: one value per visual token
ds = ds.with_transform(linebench.map_transform("qwen2.5-vl:max_pixels=1003520"))
```

## Fields

| field | type | description |
|---|---|---|
{chr(10).join(rows)}

## Statistics

Rows: {", ".join(f"{sp.split} {sp.n:,}" for sp in specs)}.

Answers, per split:

{_table(answers)}

Difficulty levels, per split:

{_table(levels)}

## Licence

The data is released under CC-BY-4.0; the linebench code under Apache-2.0.

## Citation

```bibtex
{PAPER_BIBTEX}

{SOFTWARE_BIBTEX}
```
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def maps_card_files(folder: Path, manifest: dict[str, Any], schema) -> dict[str, bytes]:
    """The card and example of a `linebench maps` folder (the source's rows with maps added): the
    first row's image as PNG (a 1x1 placeholder when rows carry no image bytes), and a card whose
    YAML features come from the shards' Arrow `schema`."""
    import io

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
