"""The evaluation harness's own cost: `linebench eval --backend openai` against the fake
OpenAI-compatible server of the tests (tests/fake_openai.py, a real HTTP server on 127.0.0.1).

    python benchmarks/eval_harness.py            # 500 rows; ~1 minute on 2 cores

1. Overhead per row: a server that answers at once, concurrency 1: everything around the model
   (reading the rows, the PNG data URL, the HTTP round trip on loopback, parsing, appending to
   predictions.jsonl) per row, from the evaluation loop's own clock (`seconds` / rows), and the
   whole command (loading the folder, scoring, the report) per row. Target: <= 2 ms per row.
   "harness CPU": the CPU time of the evaluating process itself over the whole command, per row
   (the loop's wall time also holds the server's own handling and the loopback, on the same cores).
2. Throughput: a server that takes 200 ms per request, `--concurrency 16`: requests per second
   (16 / 0.2 s = 80 at best). Target: >= 60.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _serve(answers, behaviour, conn) -> None:
    from fake_openai import FakeServer

    server = FakeServer(answers, behaviour).start()
    conn.send(server.url)
    server.thread.join()


def serve(answers, behaviour):
    import multiprocessing as mp

    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve, args=(answers, behaviour, child), daemon=True)
    proc.start()
    return parent.recv(), proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    from datasets import Image, load_dataset

    from fake_openai import Behaviour
    from linebench.dataset import generate
    from linebench.evaluate.run import EvalOptions, evaluate_folder
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    work = Path(tempfile.mkdtemp(prefix="lb-evalbench-"))
    generate(RunSpec("grid_patch", split="test", n=args.n, seed=1, params=ParamSpec((448, 448), "stratified"), maps=()), work / "data", workers=os.cpu_count() or 1)
    ds = load_dataset(str(work / "data"), split="test").cast_column("image", Image(decode=False))
    answers = {hashlib.sha256(r["image"]["bytes"]).hexdigest(): r["answer"] for r in ds}
    print(f"## Evaluation harness — {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {args.n} rows of 448 px (PNG ~{sum(len(r['image']['bytes']) for r in ds) // args.n // 1024} KB)\n")
    print("| case | rows | loop s | ms per row (loop) | whole command s | ms per row (command) | harness CPU ms per row | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, behaviour, conc in (("zero-latency server, concurrency 1", Behaviour(), 1), ("200 ms server, concurrency 16", Behaviour(delay_s=0.2), 16)):
        url, proc = serve(answers, behaviour)  # in its own process: its work is not the harness's
        out = work / f"run-{conc}"
        t0, c0 = time.perf_counter(), time.process_time()
        res = evaluate_folder(EvalOptions(data=str(work / "data"), model="fake", base_url=url, out=str(out), concurrency=conc), log=lambda m: None)
        whole, cpu = time.perf_counter() - t0, time.process_time() - c0  # cpu: this process only (not the server's)
        proc.terminate()
        proc.join()
        assert res["accuracy"] == 1.0
        print(f"| {label} | {args.n} | {res['seconds']:.2f} | {1e3 * res['seconds'] / args.n:.2f} | {whole:.2f} | {1e3 * whole / args.n:.2f} | {1e3 * cpu / args.n:.2f} | {args.n / res['seconds']:.1f} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
