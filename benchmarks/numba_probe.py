"""What would numba buy the audits? One audit stage compiled, measured against the numpy code.

    pip install numba            # not a dependency of linebench
    python benchmarks/numba_probe.py [--n 300]

Ports one stage of intersection's audit, the gap measurement `generators.intersection._gaps`
(every vertex of every line against the segments of each other line within reach: pure
arithmetic, no transcendental functions, so a compiled loop can give the same bits), to a
numba `@njit` loop with the same operations in the same order, then on the scenes of the first N
rows: checks that both give the same float64 array bit for bit, and times both. Also reports
what numba costs a process before it saves anything: `import numba`, the first call's compile,
and loading the compiled function from numba's on-disk cache in a fresh process.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

from generators import intersection
from linebench.samples import RowMaker, RunSpec, row_seed

KERNEL = '''
import numpy as np
from numba import njit


@njit(cache=True)
def gaps(pts, u_all, starts, sizes, reach):
    """generators.intersection._gaps as one loop: the same window of segments per vertex and line,
    the same arithmetic as geometry.point_segment_distance, in the same order."""
    r = reach + 0.1
    n = sizes.shape[0]
    v_total = pts.shape[0]
    out = np.full((n, v_total), np.inf)
    owner = np.empty(v_total, np.int64)
    for j in range(n):
        owner[starts[j]:starts[j] + sizes[j]] = j
    for j in range(n):
        s0 = starts[j]
        last = sizes[j] - 2
        uj = u_all[s0:s0 + sizes[j]]
        for v in range(v_total):
            if owner[v] == j:
                continue
            lo = np.searchsorted(uj, u_all[v] - r, side="left") - 1
            hi = np.searchsorted(uj, u_all[v] + r, side="right")
            lo = min(max(lo, 0), last)
            hi = min(max(hi, 0), last + 1)
            best = np.inf
            px, py = pts[v, 0], pts[v, 1]
            for s in range(lo, hi):
                ax, ay = pts[s0 + s, 0], pts[s0 + s, 1]
                dx, dy = pts[s0 + s + 1, 0] - ax, pts[s0 + s + 1, 1] - ay
                dd = dx * dx + dy * dy
                t = ((px - ax) * dx + (py - ay) * dy) / dd if dd > 0 else 0.0
                t = min(max(t, 0.0), 1.0)
                ex, ey = px - (ax + t * dx), py - (ay + t * dy)
                d = np.sqrt(ex * ex + ey * ey)
                if d < best:
                    best = d
            out[j, v] = best
    return out
'''


def scenes(n: int) -> list[tuple[list[np.ndarray], list[np.ndarray], float]]:
    """(lines, us, min_gap) of the first n intersection scenes, as `_audit_and_finish` sees them."""
    got: list = []
    orig = intersection.IntersectionTask._audit_and_finish

    def spy(self, rng, params, lines, us, pair, t, n_, bends, thickness, curved, theta):
        got.append(([ln.copy() for ln in lines], [u.copy() for u in us], params["knobs"]["min_gap_lw"] * thickness))
        return orig(self, rng, params, lines, us, pair, t, n_, bends, thickness, curved, theta)

    intersection.IntersectionTask._audit_and_finish = spy
    try:
        maker = RowMaker(RunSpec("intersection", n=n))
        for i in range(n):
            maker.task.sample(np.random.default_rng(row_seed(0, "intersection", "train", i)), maker.params[maker.level(i)])
    finally:
        intersection.IntersectionTask._audit_and_finish = orig
    return got


def fresh_process_costs(cache_dir: str) -> tuple[float, float, float]:
    """(import numba, first call with an empty cache, first call with the cache warm) in new
    processes: the first one compiles, two more load the cache (the best of them is reported, and
    the best of the three imports)."""
    probe = textwrap.dedent(f"""
        import sys, time
        t = time.perf_counter(); import numba; t_import = time.perf_counter() - t
        sys.path.insert(0, {cache_dir!r})
        import numpy as np
        import numba_kernel as k
        pts = np.random.default_rng(0).random((20, 2)); u = np.sort(pts[:, 0])
        t = time.perf_counter(); k.gaps(pts, u, np.array([0, 10]), np.array([10, 10]), 2.0); t_call = time.perf_counter() - t
        print(t_import, t_call)
    """)
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() for _ in range(3)]
    return min(float(r[0]) for r in runs), float(runs[0][1]), min(float(r[1]) for r in runs[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="intersection rows whose scenes are measured")
    args = ap.parse_args()
    try:
        import numba
    except ImportError:
        sys.exit("numba is not installed (it is not a linebench dependency): pip install numba")

    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/numba_kernel.py", "w") as f:
            f.write(KERNEL)
        t_import, t_cold, t_warm = fresh_process_costs(d)
        sys.path.insert(0, d)
        import numba_kernel

        data = scenes(args.n)
        packed = []
        for lines, us, gap in data:
            sizes = np.array([len(ln) for ln in lines], dtype=np.int64)
            packed.append((np.concatenate(lines), np.concatenate(us), np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes, gap))
        numba_kernel.gaps(*packed[0])  # compiled (or loaded) outside the timing
        same = sum(np.array_equal(intersection._gaps(lines, us, gap), numba_kernel.gaps(*p)) for (lines, us, gap), p in zip(data, packed))
        best_np = best_nb = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for lines, us, gap in data:
                intersection._gaps(lines, us, gap)
            best_np = min(best_np, time.perf_counter() - t)
            t = time.perf_counter()
            for p in packed:
                numba_kernel.gaps(*p)
            best_nb = min(best_nb, time.perf_counter() - t)
    print(f"numba {numba.__version__}, numpy {np.__version__}; {len(data)} audited intersection scenes (first {args.n} rows)\n")
    print("| | ms |\n|---|---:|")
    print(f"| `_gaps`, numpy (per scene, best of 3) | {1000 * best_np / len(data):.3f} |")
    print(f"| `_gaps`, numba (per scene, best of 3) | {1000 * best_nb / len(data):.3f} |")
    print(f"| `import numba` in a fresh process (best of 3) | {1000 * t_import:.0f} |")
    print(f"| first call, empty cache (compile) | {1000 * t_cold:.0f} |")
    print(f"| first call, warm on-disk cache (best of 2) | {1000 * t_warm:.0f} |")
    print(f"\nSame float64 array, bit for bit: {same} of {len(data)} scenes")


if __name__ == "__main__":
    main()
