"""Generate a linebench release on a Ray cluster: one Ray task per part, then one merge.

    pip install 'ray[default]' linebench
    python docs/ray_generate.py --spec tracing --parts 16 --shared /mnt/shared/tracing

Every part writes its own folder under --shared (a file system every node sees); the merge reads
them and writes the release, byte-identical to `linebench generate --spec tracing` on one machine
(docs/scale-out.md). A sample depends only on (seed, task, split, index), so where and when each
part runs does not matter; a part that fails is run again with resume=True.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ray

from linebench.dataset import generate, merge
from linebench.release import load_release


@ray.remote(num_cpus=4)
def make_part(spec: str, k: int, n: int, folder: str, workers: int) -> str:
    rel = load_release(spec)
    out = Path(folder)
    resume = (out / ".linebench-run.json").exists()  # a retried task finishes what the last try left
    generate(rel.run_specs(), out, workers=workers, shard_size=rel.shard_size, command=rel.command, part=(k, n), resume=resume)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="tracing")
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4, help="processes per part (match num_cpus above)")
    ap.add_argument("--shared", required=True, help="a folder every node can read and write")
    args = ap.parse_args()
    ray.init()
    base = Path(args.shared)
    folders = ray.get([make_part.options(max_retries=3).remote(args.spec, k, args.parts, str(base / f"part-{k}"), args.workers)
                       for k in range(args.parts)])
    result = merge([Path(f) for f in folders], base / "release")
    print(f"wrote {result.rows} rows in {result.shards} shards to {result.out}")


if __name__ == "__main__":
    main()
