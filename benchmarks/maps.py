"""How long does a map take per sample and profile? Prints the markdown table in docs/benchmarks.md.

    python benchmarks/maps.py --n 200 [--canvas 448]

For each task, `--n` rows are generated once (seed 1, mixed levels, no stored maps); then every
profile's map is computed for every row with `linebench.attention_map` (from the stored geometry,
as `map_transform` does), one process. Reported: milliseconds per sample (mean), tokens.
"""

from __future__ import annotations

import argparse
import platform
import time

import linebench
from linebench.grids import layout, profile_names
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="rows per task")
    ap.add_argument("--canvas", type=int, default=448, help="square canvas side, px")
    args = ap.parse_args()
    canvas = (args.canvas, args.canvas)
    tasks = ["tracing", "intersection", "grid_patch"]
    rows = {}
    for t in tasks:
        maker = RowMaker(RunSpec(t, n=args.n, seed=1, params=ParamSpec(canvas, "mixed", {}), maps=()))
        rows[t] = [maker(i) for i in range(args.n)]
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, linebench {linebench.__version__}, "
          f"canvas {canvas[0]}x{canvas[1]}, {args.n} rows per task, one process\n")
    print("| profile | tokens | " + " | ".join(f"{t} ms/sample" for t in tasks) + " |")
    print("|---|--:|" + "--:|" * len(tasks))
    for name in profile_names():
        cells = []
        for t in tasks:
            t0 = time.perf_counter()
            for r in rows[t]:
                linebench.attention_map(r, name)
            cells.append(f"{(time.perf_counter() - t0) / len(rows[t]) * 1000:.2f}")
        print(f"| `{name}` | {layout(name, canvas).num_tokens} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
