"""Which PNG settings encode linebench's pictures fastest, and how big are they?

    python benchmarks/png_settings.py [--n 60]

Draws the first N pictures of each task (default run spec, the product's renderer), then encodes
each with OpenCV at zlib levels 1 and 3, the None / Sub / Up row filters and the default / RLE
zlib strategies, and once with Python's zlib on the same filter-None scanlines (to see whether
OpenCV's bundled zlib differs from the system one). Where they are installed (`pip install
zlib-ng isal deflate`; none is a dependency of linebench), the same scanlines also go through
zlib-ng (`zlib_ng`), Intel ISA-L (`isal.isal_zlib`) and libdeflate (`deflate`), the faster deflate
libraries issue 18 asked about; their times include building the scanlines, which a PNG writer
around them would have to do. Prints ms per picture (best of 3 passes) and the mean size. The
product uses level 3, filter None, default strategy (`linebench.render.PNG_PARAMS`).
"""
from __future__ import annotations

import argparse
import struct
import time
import zlib

import cv2
import numpy as np

from linebench.render import PNG_PARAMS, rasterise
from linebench.samples import RowMaker, RunSpec, row_seed

FILTERS = {"none": cv2.IMWRITE_PNG_FILTER_NONE, "sub": cv2.IMWRITE_PNG_FILTER_SUB, "up": cv2.IMWRITE_PNG_FILTER_UP}
STRATEGIES = {"default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT, "rle": cv2.IMWRITE_PNG_STRATEGY_RLE}


def pictures(task: str, n: int) -> list[np.ndarray]:
    m = RowMaker(RunSpec(task, n=n))
    out = []
    for i in range(n):
        s = m.task.sample(np.random.default_rng(row_seed(0, task, "train", i)), m.params[m.level(i)])
        out.append(rasterise(s.canvas, m.task.draw(s.geometry)))
    return out


def best_of(fn, items, passes: int = 3) -> tuple[float, list]:
    best, out = float("inf"), []
    for _ in range(passes):
        t = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - t)
    return 1000 * best / len(items), out


def idat(png: bytes) -> bytes:
    i, data = 8, b""
    while i < len(png):
        (length,) = struct.unpack(">I", png[i:i + 4])
        if png[i + 4:i + 8] == b"IDAT":
            data += png[i + 8:i + 8 + length]
        i += 12 + length
    return data


def scanlines(bgr: np.ndarray) -> bytes:
    """The filter-None PNG scanlines of an RGB picture: a 0 byte, then the row (about 0.1-0.25 ms
    for 448 x 448: OpenCV swaps the channels; numpy's reversed view `bgr[..., ::-1]` takes 1.7 ms)."""
    h = bgr.shape[0]
    buf = np.empty((h, bgr.shape[1] * 3 + 1), np.uint8)
    buf[:, 0] = 0
    buf[:, 1:] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).reshape(h, -1)
    return buf.tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="pictures per task")
    args = ap.parse_args()
    print(f"OpenCV {cv2.__version__}, system zlib {zlib.ZLIB_RUNTIME_VERSION}, {args.n} pictures per task; ms per picture (best of 3)\n")
    print("| task | strategy | filter | level | ms | KiB |\n|---|---|---|---:|---:|---:|")
    for task in ("tracing", "intersection", "grid_patch"):
        imgs = pictures(task, args.n)
        for st in STRATEGIES:
            for f in FILTERS:
                for level in (1, 3) if st == "default" else (1,):
                    params = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_FILTER, FILTERS[f], cv2.IMWRITE_PNG_STRATEGY, STRATEGIES[st]]
                    ms, out = best_of(lambda x: cv2.imencode(".png", x, params)[1].tobytes(), imgs)
                    mark = " (product)" if (st, f, level) == ("default", "none", 3) else ""
                    print(f"| {task} | {st} | {f} | {level}{mark} | {ms:.2f} | {np.mean([len(o) for o in out]) / 1024:.1f} |")
        product = [cv2.imencode(".png", x, PNG_PARAMS)[1].tobytes() for x in imgs]
        raw = [scanlines(x) for x in imgs]
        ms, packed = best_of(lambda b: zlib.compress(b, 3), raw)
        same = sum(idat(p) == z for p, z in zip(product, packed))
        print(f"| {task} | Python zlib.compress(level 3) on the same scanlines | none | 3 | {ms:.2f} | "
              f"{np.mean([len(z) for z in packed]) / 1024:.1f} (IDAT identical to OpenCV's: {same}/{len(imgs)}) |")
        for name, compress, levels in faster_deflates():
            for level in levels:
                ms, packed = best_of(lambda x: compress(scanlines(x), level), imgs)
                print(f"| {task} | {name} on scanlines built from the picture | none | {level} | {ms:.2f} | "
                      f"{np.mean([len(z) for z in packed]) / 1024:.1f} |")


def faster_deflates() -> list[tuple[str, object, tuple[int, ...]]]:
    """(name, compress(data, level), levels) for each faster deflate library that is installed."""
    found = []
    try:
        import zlib_ng.zlib_ng as zng

        found.append((f"zlib-ng {zng.ZLIBNG_VERSION}", zng.compress, (1, 3)))
    except ImportError:
        pass
    try:
        import isal
        from isal import isal_zlib

        found.append((f"ISA-L {isal.ISAL_VERSION}", isal_zlib.compress, (0, 1, 2, 3)))
    except ImportError:
        pass
    try:
        import deflate

        found.append((f"libdeflate (deflate {deflate.__version__})", deflate.zlib_compress, (1, 3, 6)))
    except ImportError:
        pass
    return found


if __name__ == "__main__":
    main()
