"""Speed of `linebench maps` (issue 17 target: three profiles added to 10,000 rows in <= 30 s on 2 cores).

    python benchmarks/maps_annotations.py                   # 10,000 RefCOCO-style rows, 3 profiles, all cores
    python benchmarks/maps_annotations.py --rows 2000 --kind points

Builds a RefCOCO-style parquet file in a temporary folder (JPEG images of the sizes COCO has —
640x427, 640x480, 500x375, 1024x683 —, one `bbox` in xywh px per row; or PixMo-style points in
percent with --kind points), then times `linebench.annotate.add_maps` end to end: reading the
source, image sizes from the JPEG headers, the maps, parquet shards, card and manifest. The
dataset build is not timed. Prints one markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def build(path: Path, rows: int, kind: str) -> None:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(640, 427), (640, 480), (500, 375), (1024, 683)]
    images = {}
    for w, h in sizes:  # a few distinct pictures: the benchmark times maps, not JPEG decoding
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(b, format="JPEG", quality=70)
        images[(w, h)] = b.getvalue()
    recs = []
    for i in range(rows):
        w, h = sizes[i % len(sizes)]
        if kind == "boxes":
            x, y = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            ann = [float(x), float(y), float(rng.uniform(8, w / 2)), float(rng.uniform(8, h / 2))]
        else:
            ann = [{"x": float(rng.uniform(1, 99)), "y": float(rng.uniform(1, 99))} for _ in range(int(rng.integers(1, 6)))]
        recs.append({"image": {"bytes": images[(w, h)], "path": None}, "ann": ann, "question": f"object {i}", "answer": "yes"})
    ann_feat = datasets.List(datasets.Value("float32")) if kind == "boxes" else datasets.List({"x": datasets.Value("float32"), "y": datasets.Value("float32")})
    feats = datasets.Features({"image": datasets.Image(), "ann": ann_feat, "question": datasets.Value("string"), "answer": datasets.Value("string")})
    datasets.Dataset.from_list(recs, features=feats).to_parquet(str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--kind", choices=("boxes", "points"), default="boxes")
    ap.add_argument("--maps", default="qwen2.5-vl,llava-1.5-pad,internvl")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import datasets

    from linebench.annotate import Options, add_maps

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.parquet"
        build(src, args.rows, args.kind)
        if args.kind == "boxes":
            opts = Options(kind="boxes", column="ann", box_format="xywh", box_mode="centre")
        else:
            opts = Options(kind="points", column="ann", coords="percent")
        t0 = time.perf_counter()
        result = add_maps(str(src), Path(tmp) / "out", maps=tuple(args.maps.split(",")), opts=opts, workers=args.workers)
        seconds = time.perf_counter() - t0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, workers {args.workers}")
    print("| rows | annotations | profiles | seconds | rows/s |")
    print("|---:|---|---|---:|---:|")
    print(f"| {result.rows:,} | {args.kind} | {args.maps} | {seconds:.1f} | {result.rows / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
