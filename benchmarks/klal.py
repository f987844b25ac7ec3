"""KLAL speed and memory: the op alone, and a training step of a 7B-shaped decoder stack.

    python benchmarks/klal.py                 # on a CUDA GPU: the tables of docs/benchmarks.md
    python benchmarks/klal.py --cpu           # small shapes on CPU (the torch reference path)

1. The op, forward + backward, bf16: the fused Triton kernels vs the PyTorch reference (eager) vs
   `torch.compile` of the reference, and the bytes-moved floor: the visual keys read three times
   and their gradient written once (q, the target and dq are negligible beside them), timed at the
   bandwidth a device-to-device copy reaches on the same GPU. The kernels read the keys four times
   (one pass each: lse, log Q, the column sums, the gradients) and write dk once. First at the
   issue-13 target shape (Qwen2.5-VL-7B, 64 rows over 8 samples: the atomic path, relaxed vs
   acq_rel adds, the deterministic path; dynamic resolution, one call vs a call per image size).
2. A training step (forward + backward, batch 1) of a Llama-2-7B-shaped decoder stack (hidden 4096,
   32 heads, MLP 11008; `--layers` of them; random bf16 weights) with a 576-token image span:
   NTP only with SDPA; NTP + KLAL via the capture and the fused op (all layers supervised); NTP +
   KLAL from eager attention with `output_attentions=True` (what a straightforward version does).
Each time is the median of `--repeats` runs after warm-up; peak memory is torch's
max_memory_allocated over one step.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from linebench.klal import klal_loss, klal_reference  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak(fn, device):
    if device.type != "cuda":
        return None  # torch reports peak memory on CUDA only
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def copy_bandwidth(device) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    x = torch.empty(2**28, dtype=torch.uint8, device=device)  # 256 MiB
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), device, 20)
    return 2 * x.numel() / t


def op_table(device, dtype, shapes, repeats, compiled=True):
    bw = copy_bandwidth(device)
    print(f"\n### The op alone (forward + backward, {str(dtype).replace('torch.', '')}); copy bandwidth {bw / 1e9:,.0f} GB/s\n")
    print("| B | H | H_kv | N | D | fused ms | reference ms | compiled ms | floor ms | fused / floor | reference / fused |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref_compiled = torch.compile(klal_reference) if compiled else None
    for b, h, hkv, n, d in shapes:
        torch.manual_seed(0)
        q = torch.randn(b, h, d, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(b, hkv, n, d, device=device, dtype=dtype, requires_grad=True)
        p = torch.rand(b, n, device=device)
        p = p / p.sum(1, keepdim=True)

        def step(fn):
            return lambda: torch.autograd.grad(fn(q, k, p), (q, k))

        fused = timed(step(lambda *a: klal_loss(*a, backend="triton")), device, repeats)
        ref = timed(step(klal_reference), device, repeats)
        comp = timed(step(ref_compiled), device, repeats) if compiled else float("nan")
        floor = 4 * k.numel() * k.element_size() / bw  # the keys read three times and their gradient written once
        print(f"| {b} | {h} | {hkv} | {n} | {d} | {fused * 1e3:.3f} | {ref * 1e3:.3f} | {comp * 1e3:.3f} | {floor * 1e3:.3f} | {fused / floor:.2f} | {ref / fused:.1f} |")


def _rows(device, dtype, rows, samples, heads, kv, n, d, lengths=None):
    """q [R, H, D], keys [samples, H_kv, N, D], targets [R, N] (zero past each row's length)."""
    torch.manual_seed(0)
    q = torch.randn(rows, heads, d, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(samples, kv, n, d, device=device, dtype=dtype, requires_grad=True)
    p = torch.rand(rows, n, device=device)
    if lengths is not None:
        p = p * (torch.arange(n, device=device)[None, :] < lengths[:, None])
    return q, k, p / p.sum(1, keepdim=True), torch.arange(rows, device=device) % samples


def target_table(device, dtype, repeats, shape=(28, 4, 1024, 128, 64, 8)):
    """The issue-13 target shape (Qwen2.5-VL-7B: H 28 / H_kv 4, D 128, N 1024, 64 rows over 8
    samples): the atomic path with relaxed and with acq_rel adds, the deterministic path, one row
    per sample, and dynamic resolution (rows of different N in one call vs one call per N)."""
    import linebench.klal as K

    bw = copy_bandwidth(device)
    heads, kv, n, d, rows, samples = shape
    print(f"\n### The op at a Qwen2.5-VL-7B shape ({str(dtype).replace('torch.', '')}, H {heads}/{kv}, D {d}); copy bandwidth {bw / 1e9:,.0f} GB/s\n")
    print("The floor reads the keys three times and writes their gradient once at that bandwidth (the target's definition); the kernels read them four times (one pass each) and write once.\n")
    print("| case | rows | samples | N | fused ms | reference ms | floor ms | fused / floor | reference / fused |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")

    def run(label, q, k, p, bidx, lengths=None, per_n=False):
        if per_n:  # one call per image size, as before batching rows of different N
            groups = [(lengths == v).nonzero().flatten() for v in lengths.unique()]

            def fused_fn():
                total = sum(klal_loss(q[g], k, p[g][:, : int(lengths[g][0])], batch_index=bidx[g], offsets=torch.zeros_like(g), backend="triton", reduction="sum") for g in groups)
                return torch.autograd.grad(total, (q, k))
        else:
            def fused_fn():
                loss = klal_loss(q, k, p, batch_index=bidx, offsets=torch.zeros_like(bidx), lengths=lengths, backend="triton",
                                 shared_samples=bool(len(bidx.unique()) < len(bidx)), check_indices=False, reduction="sum")  # fmt: skip
                return torch.autograd.grad(loss, (q, k))

        def ref_fn():
            return torch.autograd.grad(klal_reference(q, k, p, batch_index=bidx, offsets=torch.zeros_like(bidx), lengths=lengths, reduction="sum"), (q, k))

        fused, ref = timed(fused_fn, device, repeats), timed(ref_fn, device, repeats)
        floor = 4 * k.numel() * k.element_size() / bw  # 3 reads + 1 write of the keys
        nn = "various" if lengths is not None else str(k.shape[2])
        print(f"| {label} | {q.shape[0]} | {k.shape[0]} | {nn} | {fused * 1e3:.3f} | {ref * 1e3:.3f} | {floor * 1e3:.3f} | {fused / floor:.2f} | {ref / fused:.1f} |")

    q, k, p, bidx = _rows(device, dtype, rows, samples, heads, kv, n, d)
    per = f"{rows // samples} rows per sample"
    run(f"{per}, relaxed atomics", q, k, p, bidx)
    K.ATOMIC_SEM = "acq_rel"
    run(f"{per}, acq_rel atomics", q, k, p, bidx)
    K.ATOMIC_SEM = "relaxed"
    torch.use_deterministic_algorithms(True)
    run(f"{per}, deterministic", q, k, p, bidx)
    torch.use_deterministic_algorithms(False)
    q, k, p, bidx = _rows(device, dtype, rows, rows, heads, kv, n, d)
    run("one row per sample (no atomics)", q, k, p, bidx)
    lengths = torch.tensor([576, 1024, 784, 1024, 400, 896, 1024, 676] * (rows // 8), device=device) * n // 1024
    q, k, p, bidx = _rows(device, dtype, rows, rows, heads, kv, n, d, lengths)
    run("dynamic resolution, one call", q, k, p, bidx, lengths)
    run("dynamic resolution, a call per N", q, k, p, bidx, lengths, per_n=True)


def step_table(device, dtype, hidden, heads, mlp, layers, lengths, repeats, image=576):
    from transformers import LlamaConfig, LlamaForCausalLM

    from linebench.train import KLALCapture

    print(f"\n### Training step: {layers} decoder layers, hidden {hidden}, {heads} heads, MLP {mlp}, {str(dtype).replace('torch.', '')}, batch 1, image {image} tokens\n")
    print("| seq | NTP (SDPA) ms | + KLAL capture ms | + KLAL eager ms | NTP GiB | + capture GiB | + eager GiB | capture time / NTP | capture mem / NTP | eager / capture time | eager / capture mem |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, max_position_embeddings=8192, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype)
    start = 5
    for length in lengths:
        ids = torch.randint(3, 32000, (1, length), device=device)
        labels = torch.full_like(ids, -100)
        labels[0, -8:] = ids[0, -8:]
        target = torch.rand(image, device=device)
        target = [target / target.sum()]
        spans = [[(start, image)]]

        def ntp():
            model(input_ids=ids, labels=labels).loss.backward()

        def eager():
            out = model(input_ids=ids, labels=labels, output_attentions=True)
            kl = []
            for attn in out.attentions:
                a = attn[0, :, length - 1, start : start + image].float()
                a = (a / a.sum(-1, keepdim=True)).mean(0)
                kl.append((target[0] * (target[0].log() - a.log())).sum())
            (out.loss + torch.stack(kl).mean()).backward()

        model.set_attn_implementation("sdpa")
        t_ntp, m_ntp = timed(ntp, device, repeats), peak(ntp, device)
        cap = KLALCapture(model, layers="all", backend="auto")

        def capture():
            with cap.batch(ids, labels, target, visual_spans=spans):
                out = model(input_ids=ids, labels=labels)
            (out.loss + cap.loss).backward()

        t_cap, m_cap = timed(capture, device, repeats), peak(capture, device)
        cap.remove()
        model.set_attn_implementation("eager")
        t_eag, m_eag = timed(eager, device, repeats), peak(eager, device)
        model.set_attn_implementation("sdpa")
        model.zero_grad(set_to_none=True)
        mem = [f"{m:.2f}" if m is not None else "—" for m in (m_ntp, m_cap, m_eag)]
        ratios = [f"{m_cap / m_ntp:.3f}", f"{m_eag / m_cap:.2f}"] if m_ntp is not None else ["—", "—"]
        print(
            f"| {length} | {t_ntp * 1e3:.1f} | {t_cap * 1e3:.1f} | {t_eag * 1e3:.1f} | {' | '.join(mem)} | "
            f"{t_cap / t_ntp:.3f} | {ratios[0]} | {t_eag / t_cap:.2f} | {ratios[1]} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="small shapes on CPU (no Triton: the reference op)")
    ap.add_argument("--layers", type=int, default=4, help="decoder layers in the training-step benchmark")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile of the reference")
    ap.add_argument("--part", choices=["op", "step", "both"], default="both")
    args = ap.parse_args()
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"## KLAL benchmarks — {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
    if device.type == "cuda":
        shapes = [(16, 32, hkv, n, 128) for hkv in (8, 32) for n in (576, 1024, 4096)]
        if args.part in ("op", "both"):
            target_table(device, torch.bfloat16, args.repeats)
            op_table(device, torch.bfloat16, shapes, args.repeats, compiled=not args.no_compile)
        if args.part in ("step", "both"):
            step_table(device, torch.bfloat16, 4096, 32, 11008, args.layers, (700, 2048, 4096), args.repeats)
    else:
        # No fused kernels on CPU (the Triton interpreter is for tests, not speed): the capture runs the
        # torch reference op, which still never forms the [L, L] attention matrix.
        step_table(device, torch.float32, 256, 8, 688, 2, (700, 2048), args.repeats, image=576)


if __name__ == "__main__":
    main()
