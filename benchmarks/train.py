"""Training speed and memory: the tiny default run end to end, KLAL on vs off per step, and (on a GPU)
a Qwen2.5-VL-7B-shaped stack with NTP only, NTP + KLAL by capture, and NTP + KLAL from eager
attention with output_attentions=True.

    python benchmarks/train.py                 # CPU: the tiny default run, and per-step time on vs off
    python benchmarks/train.py --gpu           # CUDA: the 7B-shaped table (random init, bf16)

1. `linebench train --klal` with its defaults, as a subprocess in a fresh folder (the tiny model
   cached beforehand, as after a first run): wall time and peak RSS of the process tree.
2. The tiny default model, one training step (batch 8, the default rows), timed over `--steps`
   steps after warm-up with `klal=False` and `klal=True` (same batches): median ms per step.
3. GPU: a Qwen2.5-VL text stack at full width (hidden 3584, 28 heads / 4 KV heads, MLP 18944),
   `--layers` decoder layers, random bf16 weights, one sequence of `--seq` tokens holding an image
   span of 1,024 tokens, batch 1, AdamW step included: NTP only (SDPA); + KLAL via the capture (all
   layers); + KLAL from eager attention (output_attentions=True). Median step time and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and its children, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def default_run() -> tuple[float, int]:
    from linebench.train import tiny

    tiny.cached("tiny")
    work = Path(tempfile.mkdtemp(prefix="lb-train-"))
    exe = shutil.which("linebench") or str(Path(sys.executable).with_name("linebench"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, "train", "--klal", "--out", str(work / "run")], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"linebench train failed ({proc.returncode})")
    shutil.rmtree(work, ignore_errors=True)
    return wall, peak


def per_step(steps: int) -> dict[str, float]:
    """ms per training step of the tiny default model, KLAL off and on, on the same batches."""
    import torch
    from transformers import AutoModelForImageTextToText

    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec
    from linebench.train import KLALCollator, examples_transform, tiny
    from linebench.train.capture import KLALCapture, format_token_ids

    folder = tiny.cached("tiny")
    data = Path(tempfile.mkdtemp(prefix="lb-rows-"))
    generate(RunSpec("grid_patch", n=8 * (steps + 3), seed=0, params=ParamSpec((224, 224), "easy"), maps=()), data / "rows")
    from datasets import load_dataset

    ds = load_dataset(str(data / "rows"), split="train").with_transform(examples_transform())
    proc = tiny.load_processor(folder)
    coll = KLALCollator(proc)
    batches = [coll([ds[i * 8 + j] for j in range(8)]) for i in range(steps + 3)]
    out = {}
    for arm in ("off", "on"):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_pretrained(folder)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        cap = KLALCapture(model, special_ids=proc.tokenizer.all_special_ids, format_ids=format_token_ids(proc.tokenizer)) if arm == "on" else None
        times = []
        for i, b in enumerate(batches):
            b = dict(b)
            targets = b.pop("klal_targets")
            b.pop("klal_ids")
            t0 = time.perf_counter()
            if cap is None:
                loss = model(**b).loss
            else:
                with cap.batch(b["input_ids"], b["labels"], targets):
                    loss = model(**b).loss
                loss = loss + cap.loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[arm] = 1e3 * statistics.median(times)
    shutil.rmtree(data, ignore_errors=True)
    return out


def gpu_table(layers: int, seq: int, repeats: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from linebench.train.capture import KLALCapture

    dev = torch.device("cuda")
    cfg = Qwen2Config(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=layers, num_attention_heads=28,
        num_key_value_heads=4, max_position_embeddings=32768, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(device=dev, dtype=torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    image, start = 1024, 16
    ids = torch.randint(3, 150000, (1, seq), device=dev)
    labels = torch.full_like(ids, -100)
    labels[0, -4:] = ids[0, -4:]
    p = torch.rand(image, device=dev)
    target = [p / p.sum()]

    def step(kind):
        if kind == "ntp":
            loss = model(input_ids=ids, labels=labels).loss
        elif kind == "capture":
            with cap.batch(ids, labels, target, visual_spans=[[(start, image)]]):
                loss = model(input_ids=ids, labels=labels).loss
            loss = loss + cap.loss
        else:
            out = model(input_ids=ids, labels=labels, output_attentions=True)
            kl = []
            for a in out.attentions:
                q = a[0, :, seq - 5, start : start + image].float()
                q = (q / q.sum(-1, keepdim=True)).mean(0)
                kl.append((target[0] * (target[0].log() - q.log())).sum())
            loss = out.loss + torch.stack(kl).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    rows = {}
    cap = None
    for kind in ("ntp", "capture", "eager"):
        model.set_attn_implementation("eager" if kind == "eager" else "sdpa")
        if kind == "capture":
            cap = KLALCapture(model, layers="all")
        for _ in range(3):
            step(kind)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(kind)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        rows[kind] = (1e3 * statistics.median(times), torch.cuda.max_memory_allocated() / 2**30)
        if kind == "capture":
            cap.remove()
    print(f"\n### Training step on {torch.cuda.get_device_name()}: Qwen2.5-VL-7B width, {layers} layers, bf16, sequence {seq}, image 1,024 tokens, AdamW\n")
    print("| | ms per step | peak GiB | time / NTP | memory / NTP |")
    print("|---|---:|---:|---:|---:|")
    for kind, label in (("ntp", "NTP (SDPA)"), ("capture", "+ KLAL, capture + fused op"), ("eager", "+ KLAL, eager attentions")):
        t, m = rows[kind]
        print(f"| {label} | {t:.1f} | {m:.2f} | {t / rows['ntp'][0]:.3f} | {m / rows['ntp'][1]:.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", action="store_true", help="the 7B-shaped table (CUDA)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per arm (per-step table)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1300)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-default-run", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"## Training benchmarks — {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}")
    if args.gpu:
        gpu_table(args.layers, args.seq, args.repeats)
        return 0
    if not args.skip_default_run:
        wall, rss = default_run()
        print(f"\n`linebench train --klal` (defaults; tiny model already cached): {wall:.0f} s wall, peak RSS {rss / 2**20:,.0f} MB\n")
    ms = per_step(args.steps)
    print("| tiny default model, batch 8 | ms per step (median of {}) |".format(args.steps))
    print("|---|---:|")
    print(f"| NTP only | {ms['off']:.1f} |")
    print(f"| NTP + KLAL (capture, all 4 layers; the reference op on CPU) | {ms['on']:.1f} |")
    print(f"| KLAL on / off | {ms['on'] / ms['off']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
