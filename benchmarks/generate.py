"""How fast is `linebench generate`, against the floor and against a matplotlib renderer?

Run from the repository root (matplotlib, for row c, comes with `pip install -e '.[bench]'`):

    python benchmarks/generate.py --n 5000 [--task intersection]

It prints the machine, then a markdown table of three runs with the same worker count:

  (a) `linebench generate --task TASK` as a subprocess: the whole product (scene sampling,
      drawing, PNG, attention maps, parquet), with wall time, peak RSS and output size;
  (b) the floor: the same scenes' lines (tracing's curves, intersection's lines), pre-extracted in
      this process, drawn with OpenCV and PNG-encoded with the product's settings, and nothing
      else; for a task without lines (grid_patch) the floor is (b2);
  (b2) the same scenes' whole pictures (task.draw: lines, markers, labels, shapes) drawn by
      linebench.render and PNG-encoded: (a) minus (b2) is the cost of sampling, auditing, maps and
      writing;
  (c) the same primitives drawn with matplotlib (Agg), as most benchmark generators do.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from linebench.render import Disc, Polygon, Polyline, Text, encode_png, rasterise
from linebench.tasks import get_task
from linebench.samples import RowMaker, RunSpec, row_seed

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle
    from matplotlib.patches import Polygon as MplPolygon
except ImportError:  # optional: pip install -e '.[bench]'
    matplotlib = None

SCENES: list = []  # set before the pools fork, so workers inherit it instead of unpickling it
TASK = "tracing"  # set from --task before the pools fork


# ---- (a) the CLI, with process-tree RSS polling ----------------------------------------------
def _rss_tree(root: int) -> list[int]:
    """RSS in bytes of `root` and all its descendants (from /proc)."""
    parent, rss = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name may contain spaces
        parent[int(d)] = int(fields[1])
        rss[int(d)] = int(fields[21]) * resource.getpagesize()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in rss:
            tree.append(rss[pid])
        todo += [c for c, p in parent.items() if p == pid]
    return tree


def run_cli(n: int, workers: int, out: Path) -> dict:
    exe = Path(sys.executable).parent / "linebench"
    cmd = [str(exe), "generate", "--task", TASK, "--n", str(n), "--out", str(out), "--workers", str(workers)]
    peak = {"max": 0, "sum": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def poll() -> None:
        while proc.poll() is None:
            tree = _rss_tree(proc.pid)
            if tree:
                peak["max"], peak["sum"] = max(peak["max"], max(tree)), max(peak["sum"], sum(tree))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    log = proc.communicate()[0]
    seconds = time.perf_counter() - t0
    poller.join()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.decode(errors='replace')}")
    ru_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    rss_max = max(ru_max, peak["max"])  # ru_maxrss also sees peaks between two polls
    # At any moment the sum is at least the largest process, so its peak is at least rss_max too.
    return {"n": n, "s": seconds, "rss_max": rss_max, "rss_sum": max(peak["sum"], rss_max), "bytes": size}


# ---- scenes, from the real generator -----------------------------------------------------------
def make_scenes(n: int) -> list[dict]:
    maker = RowMaker(RunSpec(TASK, n=n))
    scenes = []
    for i in range(n):
        params = maker.params[maker.level(i)]
        seed = row_seed(0, TASK, "train", i)
        scenes.append(maker.task.sample(np.random.default_rng(seed), params).geometry)
    return scenes


def extract_curves(geometry: dict) -> tuple:
    """What (b) draws: canvas size and, per curve, OpenCV fixed-point points, BGR colour, thickness."""
    t = int(geometry.get("thickness_px", 1))
    curves = [
        (np.round((np.asarray(c["points"], dtype=np.float64) - 0.5) * 16).astype(np.int32),
         (int(c["rgb"][2]), int(c["rgb"][1]), int(c["rgb"][0])), t)
        for c in geometry.get("curves", geometry.get("lines", []))
    ]
    return tuple(geometry["canvas"]), curves


# ---- (b) the floor ---------------------------------------------------------------------------
def floor_chunk(bounds: tuple[int, int]) -> int:
    total = 0
    for (w, h), curves in SCENES[bounds[0]:bounds[1]]:
        img = np.full((h, w, 3), 255, dtype=np.uint8)
        for pts, bgr, t in curves:
            cv2.polylines(img, [pts], False, bgr, t, cv2.LINE_AA, 4)
        total += len(encode_png(img))
    return total


def picture_chunk(bounds: tuple[int, int]) -> int:
    """(b2): the whole picture (curves, markers, labels) with linebench's renderer, then PNG."""
    task = get_task(TASK)
    return sum(len(encode_png(rasterise(tuple(g["canvas"]), task.draw(g)))) for g in SCENES[bounds[0]:bounds[1]])


# ---- (c) matplotlib --------------------------------------------------------------------------
def mpl_chunk(bounds: tuple[int, int]) -> int:
    task = get_task(TASK)
    total = 0
    for g in SCENES[bounds[0]:bounds[1]]:
        w, h = g["canvas"]
        fig = Figure(figsize=(w / 100, h / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)  # canvas coordinates: y grows downwards
        ax.axis("off")
        for p in task.draw(g):  # the same primitives linebench.render draws
            if isinstance(p, Polyline):
                pts = np.asarray(p.points)
                ax.plot(pts[:, 0], pts[:, 1], color=np.asarray(p.colour) / 255,
                        linewidth=p.thickness_px * 72 / 100, solid_capstyle="round")
            elif isinstance(p, Disc):
                ax.add_patch(Circle(p.center, p.radius_px, color=np.asarray(p.colour) / 255))
            elif isinstance(p, Polygon):
                ax.add_patch(MplPolygon(np.asarray(p.points), closed=True, color=np.asarray(p.colour) / 255))
            elif isinstance(p, Text):
                ax.text(p.origin[0], p.origin[1], p.text, ha="left", va="baseline",
                        fontsize=30 * p.scale * 72 / 100, color=np.asarray(p.colour) / 255)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        total += buf.tell()
    return total


def timed_pool(fn, n: int, workers: int) -> float:
    """Seconds for `workers` forked processes to run `fn` over SCENES[:n] (pool start-up excluded)."""
    per = max(1, -(-n // (workers * 8)))  # ~8 chunks per worker, for load balance
    chunks = [(s, min(s + per, n)) for s in range(0, n, per)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(abs, range(workers))  # make sure every worker is up
        t0 = time.perf_counter()
        pool.map(fn, chunks, chunksize=1)
        return time.perf_counter() - t0


# ---- where the time of one row goes (one process) --------------------------------------------
def breakdown(n: int) -> list[tuple[str, float]]:
    """Milliseconds per row for each stage of `RowMaker.__call__`, then for what the writer adds,
    timed separately in this process."""
    from linebench.dataset import CHUNK_ROWS
    from linebench.samples import features
    from linebench.shards import encode_shard
    from linebench.samples import dumps, scene_maps

    maker = RowMaker(RunSpec(TASK, n=n))
    for i in range(50):  # warm the per-process caches (layouts, spline bases, end orders) on rows outside the timed range
        maker(10**6 + i)
    seeds = [(maker.params[maker.level(i)], row_seed(0, TASK, "train", i)) for i in range(n)]
    t = time.perf_counter()
    scenes = [maker.task.sample(np.random.default_rng(seed), params) for params, seed in seeds]
    stages = [("sample + audit", time.perf_counter() - t)]
    draw = encode = 0.0
    for s in scenes:  # one image at a time: holding them all would time page faults, not drawing
        t0 = time.perf_counter()
        img = rasterise(s.canvas, maker.task.draw(s.geometry))
        t1 = time.perf_counter()
        encode_png(img)
        draw, encode = draw + t1 - t0, encode + time.perf_counter() - t1
    stages += [("draw", draw), ("PNG encode", encode)]
    t = time.perf_counter()
    for s in scenes:
        scene_maps(s.geometry, maker.spec.maps, maker.spec.map_params)
    stages.append(("attention maps", time.perf_counter() - t))
    t = time.perf_counter()
    for s in scenes:  # (a row's params JSON is encoded once per level)
        dumps(s.geometry)
    stages.append(("JSON", time.perf_counter() - t))
    t = time.perf_counter()
    rows = [maker(i) for i in range(n)]
    stages.append(("whole row (RowMaker)", time.perf_counter() - t))
    # What the main process adds per row: receiving the rows from the workers (a pickle round trip
    # per work item, as multiprocessing does) and encoding them into parquet shards.
    t = time.perf_counter()
    for c in range(0, n, CHUNK_ROWS):
        pickle.loads(pickle.dumps(rows[c:c + CHUNK_ROWS], protocol=pickle.HIGHEST_PROTOCOL))
    stages.append(("to the writer (pickle round trip)", time.perf_counter() - t))
    schema = features(maker.spec).arrow_schema
    encode_shard(rows[:1000], schema)  # outside the timing: pyarrow's memory pool grows to a shard once per process
    t = time.perf_counter()
    for c in range(0, n, 1000):
        encode_shard(rows[c:c + 1000], schema)
    stages.append(("parquet shard encode (writer)", time.perf_counter() - t))
    return [(name, 1000 * sec / n) for name, sec in stages]


# ---- report ----------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mpl = matplotlib.__version__ if matplotlib else "not installed"
    return (f"- CPU: {cpu}, os.cpu_count() = {os.cpu_count()}\n"
            f"- Python {platform.python_version()}, numpy {np.__version__}, "
            f"opencv {cv2.__version__}, matplotlib {mpl}")


def mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB" if b >= 10 * 2**20 else f"{b / 2**20:,.1f} MB"


def hms(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="tracing", help="task to benchmark")
    ap.add_argument("--n", type=int, default=5000, help="samples for (a) and (b)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes for every run")
    ap.add_argument("--matplotlib-n", type=int, default=500, help="samples for (c), at most --n")
    ap.add_argument("--keep", action="store_true", help="keep the output folder of (a) and print its path")
    ap.add_argument("--breakdown", type=int, default=1000, help="rows for the per-stage timing (0: skip)")
    args = ap.parse_args()
    n, w, n_mpl = args.n, args.workers, min(args.n, args.matplotlib_n)
    global SCENES, TASK
    TASK = get_task(args.task).name
    sys.stdout.reconfigure(line_buffering=True)

    print(f"## linebench generate benchmark: {TASK} (n = {n}, workers = {w})\n\n{machine()}\n", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="linebench-bench-")
    try:
        print("(a) linebench generate ...", file=sys.stderr, flush=True)
        a = run_cli(n, w, Path(tmp.name) / TASK)  # first: RUSAGE_CHILDREN must see only the CLI
        print("pre-generating scenes ...", file=sys.stderr, flush=True)
        geometries = make_scenes(n)
        print("(b) OpenCV floor ...", file=sys.stderr, flush=True)
        SCENES = [extract_curves(g) for g in geometries]
        has_lines = any(curves for _, curves in SCENES)
        b = {"n": n, "s": timed_pool(floor_chunk, n, w)} if has_lines else None
        print("(b2) whole picture ...", file=sys.stderr, flush=True)
        SCENES = geometries
        b2 = {"n": n, "s": timed_pool(picture_chunk, n, w)}
        b = b or b2
        c = None
        if matplotlib is None:
            print("matplotlib is not installed (pip install -e '.[bench]'): skipping (c)\n")
        else:
            print("(c) matplotlib ...", file=sys.stderr, flush=True)
            SCENES = geometries[:n_mpl]
            c = {"n": n_mpl, "s": timed_pool(mpl_chunk, n_mpl, w)}
    finally:
        if args.keep:
            print(f"output of (a) kept in {tmp.name}/{TASK}\n")
        else:
            tmp.cleanup()

    per = lambda r: r["s"] / r["n"]  # noqa: E731 - seconds per sample
    rows = [
        ("(a) `linebench generate` (whole product)", a, f"a/b = {per(a) / per(b):.1f}×",
         f"{mb(a['rss_max'])} / {mb(a['rss_sum'])}", mb(a["bytes"]), hms(50_000 * per(a))),
        ("(b) floor: OpenCV lines + PNG only" if b is not b2 else "(b) floor = (b2): no lines to draw alone", b, "1×", "–", "–", "–"),
        ("(b2) whole picture (curves, markers, labels) + PNG", b2, f"b2/b = {per(b2) / per(b):.1f}×", "–", "–", "–"),
    ]
    if c:
        rows.append(("(c) matplotlib (Agg) renderer", c, f"c/a = {per(c) / per(a):.1f}×", "–", "–", "–"))
    print("| run | samples | seconds | samples/s | time per sample | peak RSS (largest process / sum) | output | 50,000 samples |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, ratio, rss, size, proj in rows:
        print(f"| {name} | {r['n']:,} | {r['s']:.2f} | {r['n'] / r['s']:,.0f} | {ratio} | {rss} | {size} | {proj} |")
    print(f"\nAll runs use {w} worker processes. (a) is wall time of the whole command, start-up included; "
          "(b) and (c) time only the drawing in already-started workers.")
    if c and c["n"] != n:
        print(f"(c) ran on the first {c['n']:,} scenes only; samples/s and the ratios are per sample, so they compare.")
    print("Peak RSS sums resident memory over the process tree (polled every 0.05 s); pages shared "
          "between forked workers count once per process.")
    if args.breakdown:
        print(f"\nWhere one row's time goes ({args.breakdown:,} rows, one process):\n")
        print("| stage | ms per row |\n|---|---:|")
        for name, ms in breakdown(args.breakdown):
            print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
