"""Are the rows the same under another OpenCV, or with numpy's SIMD kernels turned off?

Row content (every column but the image) must be a function of linebench alone; the pixels
should not depend on the OpenCV version either. This script regenerates the same rows in fresh
processes under several configurations and compares, per task, the content digest (every column
but the image), the pixel digest (decoded RGB) and the PNG-bytes digest:

    python benchmarks/same_rows.py --opencv 4.14.0.94 --opencv 5.0.0.93 --opencv 5.1.0.95 --simd-off

Rows: the first `--rows` of every official split (train, validation, test, ood: every level), the
same splits with two other seeds, and a non-square 640x480 canvas (mixed levels). `--opencv V`
runs under opencv-python-headless V, installed once (pip --target) into ~/.cache/linebench-bench;
`--simd-off` runs once more with NPY_DISABLE_CPU_FEATURES set to every SIMD target numpy dispatches
to on this CPU. The first configuration (the installed packages) is the reference; the script
exits 1 if any content digest differs from it, and prints how many pictures differ and by how much.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import hashlib, json, sys
import cv2, numpy as np
from linebench.release import load_release
from linebench.render import decode_png, renderer
from linebench.detmath import simd_targets
from linebench.samples import RowMaker
rows = int(sys.argv[1])
out = {"renderer": renderer(), "numpy": np.__version__, "simd": simd_targets()[1], "tasks": {}}
for task in ("intersection", "tracing", "grid_patch"):
    rel = load_release(task)
    specs = []
    for seed in (rel.seed, 7, 2026):
        specs += [s.__class__(**{**s.__dict__, "seed": seed, "n": rows}) for s in rel.run_specs()]
    base = rel.run_specs()[0]
    wide = base.params.__class__((640, 480), "mixed", dict(base.params.overrides))
    specs.append(base.__class__(**{**base.__dict__, "params": wide, "maps": None, "n": rows}))
    content, pixels, png = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    per_image = []
    for spec in specs:
        make = RowMaker(spec)
        for i in range(spec.n):
            row = make(i)
            image = row.pop("image")
            for k in sorted(row):
                v = row[k]
                content.update(k.encode() + (v.astype("<f4").tobytes() if isinstance(v, np.ndarray) else repr(v).encode()))
            rgb = decode_png(image)
            pixels.update(rgb.tobytes())
            png.update(image)
            per_image.append(rgb)
    np.save(sys.argv[2] + f"/{task}.npy", np.stack([p for p in per_image if p.shape == per_image[0].shape]))
    out["tasks"][task] = {"rows": len(per_image), "content": content.hexdigest()[:16], "pixels": pixels.hexdigest()[:16], "png": png.hexdigest()[:16]}
print(json.dumps(out))
"""


def opencv_dir(version: str) -> Path:
    target = Path.home() / ".cache" / "linebench-bench" / f"opencv-{version}"
    if not (target / "cv2").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"opencv-python-headless=={version}"], check=True)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=40, help="rows per split and seed (default 40)")
    ap.add_argument("--opencv", action="append", default=[], metavar="VERSION", help="also run under this opencv-python-headless")
    ap.add_argument("--simd-off", action="store_true", help="also run with numpy's dispatched SIMD kernels turned off")
    args = ap.parse_args()

    configs = [("installed", {})]
    for v in args.opencv:
        configs.append((f"opencv {v}", {"PYTHONPATH": os.pathsep.join([str(opencv_dir(v)), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}))
    if args.simd_off:
        from linebench.detmath import simd_targets

        configs.append(("numpy SIMD off", {"NPY_DISABLE_CPU_FEATURES": " ".join(simd_targets()[1])}))

    import tempfile

    import numpy as np

    results = []
    for label, env in configs:
        scratch = tempfile.mkdtemp(prefix="same_rows-")
        r = subprocess.run([sys.executable, "-c", CHILD, str(args.rows), scratch], env={**os.environ, **env}, capture_output=True, text=True)
        if r.returncode:
            print(f"{label}: failed\n{r.stderr[-3000:]}", file=sys.stderr)
            return 2
        results.append((label, json.loads(r.stdout.strip().splitlines()[-1]), scratch))

    ref_label, ref, ref_dir = results[0]
    print(f"rows per task: {ref['tasks']['tracing']['rows']} (first {args.rows} of every official split, seeds {{release, 7, 2026}}, and a 640x480 canvas)\n")
    print("| configuration | renderer | numpy SIMD on | task | content | pixels | PNG bytes | pictures differing from the first row of the table |")
    print("|---|---|---|---|---|---|---|---|")
    content_differs = False
    for label, res, scratch in results:
        for task, d in res["tasks"].items():
            r0 = ref["tasks"][task]
            a, b = np.load(f"{ref_dir}/{task}.npy"), np.load(f"{scratch}/{task}.npy")
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=3)
            n_img = int((diff.reshape(len(diff), -1) > 0).any(axis=1).sum())
            worst = f"{n_img}" + (f" (at most {int((diff > 0).sum(axis=(1, 2)).max())} px by {int(diff.max())} levels)" if n_img else "")
            same = lambda k: d[k] + ("" if d[k] == r0[k] else " **differs**")  # noqa: E731
            content_differs |= d["content"] != r0["content"]
            print(f"| {label} | {res['renderer']} | {' '.join(res['simd']) or 'none'} | {task} | {same('content')} | {same('pixels')} | {same('png')} | {worst} |")
    print("\ncontent identical in every configuration" if not content_differs else "\nCONTENT DIFFERS between configurations")
    return 1 if content_differs else 0


if __name__ == "__main__":
    sys.exit(main())
