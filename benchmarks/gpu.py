"""Issue 29's GPU check in one script: the CUDA tests, the KLAL op at 7B shapes, and one training step
of four VLMs at their real sizes (random init, built from configs: no weights). One table out.

    python benchmarks/gpu.py --out docs/gpu-table.md      # one H100/H200: <= 8 minutes
    python benchmarks/gpu.py --dry-run --out /tmp/t.md    # CPU, tiny shapes, well under a minute

1. tests: `pytest` on the tests that run the compiled kernels and bf16 on a GPU (TEST_FILES,
   TEST_SELECT), as a subprocess; its summary line goes in the table.
2. op: KLAL forward + backward at 7B shapes (OP_SHAPES), from the same leaf tensors: the model's
   queries Q [B, H, L, D] and keys K [B, H_kv, L, D], L = image tokens + text tokens, `rows` query
   rows over B samples. Arms: the fused Triton op (`klal_loss(backend="triton")`, on the selected
   query rows and a strided view of the visual keys); the PyTorch reference (`backend="torch"`);
   eager attention, which materialises softmax(QK^T) [B, H, L, L] (what `output_attentions` costs)
   and reads the rows' image columns from it. Time is the median of `--repeats` runs; memory is
   the peak allocated above what was allocated before the call (torch.cuda.max_memory_allocated).
3. step: one training step (forward, backward, AdamW) of each model in MODELS at its real size,
   bf16, random init from its config, LoRA (r 16, the language model's projections, as `linebench
   train --lora`) where full fine-tuning does not fit one 80 GB card (mode in MODELS; a full run
   that runs out of memory is retried with LoRA, and says so); a random batch of BATCH samples,
   one image each at the size in MODELS, a 4-token answer. Arms: NTP (SDPA); NTP + KLAL by
   KLALCapture on every decoder layer (the fused op on the GPU; query "all-answer": the 4 queries
   producing the answer); NTP + KLAL from eager attention with `output_attentions=True` (eager on
   the language model only, the vision tower stays SDPA; the same rows and layers). The learning
   rate is 0, so every arm sees the same weights and the two KLAL values in the notes must agree
   (bf16 noise apart). Time: the median of `--repeats` steps after one warm-up step; peak memory is
   the whole step's (weights, gradients and optimizer states included).

Time: the tests get at most TEST_TIMEOUT_S; a model not started `--budget` seconds after the start
is skipped (its rows say so), which keeps the whole run within 8 minutes on one H100/H200.

`--dry-run` runs every code path on CPU in float32: the same model classes with scaled-down configs
(`dry` in each MODELS entry), tiny op shapes with the Triton backend in its interpreter
(TRITON_INTERPRET=1; the capture runs the reference op there, as "auto" does on CPU), and pytest on
the same files with the same selection narrowed to one quick test. Its numbers mean nothing;
tests/test_gpu_script.py runs it so the script cannot rot. Every row is written to --out as soon as
it is measured (a run cut short keeps what it measured); the exit status is 1 if any row failed.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------- what runs

# 1. The tests that run the compiled kernels (and bf16, added on a GPU) when CUDA is present: every
# KLAL op test; the capture against eager attention, with images of several sizes or in several runs,
# gradient checkpointing and the reference backend; the tiny trainer overfitting one batch.
TEST_FILES = ("tests/test_klal.py", "tests/test_capture.py", "tests/test_train.py")
TEST_SELECT = (
    "test_klal or (test_capture and (equals_eager or qwen2_5_vl or several_runs or checkpointing or torch_backend "
    "or different_sizes or llama_text_model)) or (test_train and overfitting)"
)
DRY_TEST = "test_reference_matches_the_definition_written_out"  # the dry run runs this one (in test_klal.py)
TEST_TIMEOUT_S = 200

# 2. The op. (label, samples B, rows R, heads H, kv heads, head dim D, image tokens N, text tokens T):
# the image starts after 16 text tokens; each sample's rows are queries among the T - 16 after it.
OP_SHAPES = [
    ("Qwen2.5-VL-7B, 8 rows per sample (issue 13's target)", 8, 64, 28, 4, 128, 1024, 64),
    ("Qwen2.5-VL-7B, 1 row per sample, 448 px", 8, 8, 28, 4, 128, 256, 64),
    ("Qwen3-VL-8B, 1152x1152", 8, 64, 32, 8, 128, 1296, 64),
    ("LLaVA-1.5-7B (MHA)", 8, 16, 32, 32, 128, 576, 64),
    ("Gemma-3-4B (head dim 256)", 8, 32, 8, 4, 256, 256, 64),
]
DRY_OP = (2, 4, 4, 2, 16, 24, 20)  # (B, R, H, H_kv, D, N, T) for every label in a dry run (Gemma's D: 32)

# 3. The training step: real configs (the released checkpoints' config.json values), one image per
# sample at `image` px (Qwen: a common size for their dynamic resolution), BATCH samples.
BATCH, ANSWER, BEFORE, AFTER = 2, 4, 8, 24  # samples; answer tokens; text tokens before / after the image
TEXT_IDS = (1000, 30000)  # random text tokens come from here: never a special token
# The dry run's models: the same classes, every size scaled down, a vocabulary of 320 (DRY_TEXT_IDS
# for text, the special tokens above them).
DRY_TEXT_IDS = (10, 290)
DRY_QWEN_IDS = dict(image_token_id=300, video_token_id=301, vision_start_token_id=302, vision_end_token_id=303)
LORA_RANK = 16

MODELS = {
    # llava-hf/llava-1.5-7b-hf: Vicuna-7B (Llama-2-7B shape) + CLIP ViT-L/14 at 336 px: 576 image tokens
    "LLaVA-1.5-7B": dict(
        cls="LlavaForConditionalGeneration", config="LlavaConfig", kind="llava", image=336, mode="lora",
        cfg=dict(
            text_config=dict(
                model_type="llama", vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                bos_token_id=1, eos_token_id=2, pad_token_id=32001,
            ),
            vision_config=dict(
                model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
            ),
            image_token_index=32000, image_seq_length=576, vision_feature_layer=-2, vision_feature_select_strategy="default",
            projector_hidden_act="gelu",
        ),
        dry=dict(
            text_config=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, pad_token_id=301),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, projection_dim=32),
            image_token_index=300, image_seq_length=16, image=56,
        ),
    ),
    # Qwen/Qwen2.5-VL-7B-Instruct: 14 px patches merged 2x2; 896x896 -> 1,024 image tokens
    "Qwen2.5-VL-7B": dict(
        cls="Qwen2_5_VLForConditionalGeneration", config="Qwen2_5_VLConfig", kind="qwen", image=896, mode="lora",
        cfg=dict(
            text_config=dict(
                vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151645,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            ),
            vision_config=dict(
                depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                tokens_per_second=2, hidden_act="silu",
            ),
            image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
            tie_word_embeddings=False,
        ),
        dry=dict(
            text_config=dict(
                vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                bos_token_id=298, eos_token_id=299, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 2, 2]},
            ),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1]),
            **DRY_QWEN_IDS, image=112,
        ),
    ),
    # Qwen/Qwen3-VL-8B-Instruct: 16 px patches merged 2x2; 1024x1024 -> 1,024 image tokens; deepstack
    "Qwen3-VL-8B": dict(
        cls="Qwen3VLForConditionalGeneration", config="Qwen3VLConfig", kind="qwen", image=1024, mode="lora",
        cfg=dict(
            text_config=dict(
                vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6, bos_token_id=151643,
                eos_token_id=151645, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
            ),
            vision_config=dict(
                depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096, patch_size=16,
                spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
                hidden_act="gelu_pytorch_tanh",
            ),
            image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
            tie_word_embeddings=False,
        ),
        dry=dict(
            text_config=dict(
                vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=16, bos_token_id=298, eos_token_id=299,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True},
            ),
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, num_position_embeddings=64,
                deepstack_visual_indexes=[0],
            ),
            **DRY_QWEN_IDS, image=128,
        ),
    ),
    # google/gemma-3-4b-it: SigLIP at 896 px pooled to 256 image tokens; 5 sliding-window layers (1,024) per global one
    "Gemma-3-4B": dict(
        cls="Gemma3ForConditionalGeneration", config="Gemma3Config", kind="gemma3", image=896, mode="full",
        cfg=dict(
            text_config=dict(
                vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024, max_position_embeddings=131072,
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                },
            ),
            vision_config=dict(
                hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=896,
                patch_size=14, vision_use_head=False,
            ),
            mm_tokens_per_image=256, boi_token_index=255999, eoi_token_index=256000, image_token_index=262144,
        ),
        dry=dict(
            text_config=dict(
                vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=16, query_pre_attn_scalar=16, layer_types=["sliding_attention", "full_attention"],
            ),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56),
            mm_tokens_per_image=4, boi_token_index=300, eoi_token_index=301, image_token_index=302, image=56,
        ),
    ),
}
# Full fine-tuning in bf16 with AdamW keeps weights, gradients and two optimizer states: 8 bytes a
# parameter before activations (16 with fp32 master weights and states, as most trainers keep them):
# 56-70 GB for the 7-8B models, beyond one 80 GB card once activations come; 35 GB for Gemma-3-4B.

COLUMNS = ("part", "case", "arm", "ms", "peak GiB", "time / base", "memory / base", "notes")
ARMS_OP = ("fused (triton)", "reference (torch)", "eager attention [B,H,L,L]")
ARMS_STEP = ("NTP (SDPA)", "NTP + KLAL (capture, all layers)", "NTP + KLAL (eager output_attentions)")


# ----------------------------------------------------------------------------------------------- the table


class Table:
    """The one table: rows appended as they are measured, the file rewritten after each."""

    def __init__(self, header: str, out: Path | None):
        self.header, self.out, self.rows, self.failed = header, out, [], False

    def add(self, part, case, arm, ms=None, gib=None, base=None, notes="", ratios=True):
        """base: (ms, GiB) of the row the ratios are taken against (None: this row is the base)."""
        ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "—"  # noqa: E731
        time_r = ratio(ms, base[0]) if base else ("1.00" if ms is not None and ratios else "—")
        mem_r = ratio(gib, base[1]) if base else ("1.00" if gib is not None and ratios else "—")
        row = (part, case, arm, f"{ms:.1f}" if ms is not None else "—", f"{gib:.2f}" if gib is not None else "—", time_r, mem_r, notes)
        self.rows.append(row)
        self.failed |= notes.startswith(("error", "failed"))
        print("| " + " | ".join(row) + " |", file=sys.stderr, flush=True)
        self.write()

    def text(self) -> str:
        numeric = ("ms", "peak GiB", "time / base", "memory / base")
        lines = [self.header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in COLUMNS) + "|"]
        lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def write(self):
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(self.text())


def header(device, dry: bool) -> str:
    import torch
    import transformers

    def version(name):
        try:
            return importlib.import_module(name).__version__
        except Exception:  # not installed
            return "absent"

    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        name = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    what = "DRY RUN (tiny shapes on CPU, float32: the numbers mean nothing)" if dry else "bf16"
    return (
        f"GPU benchmarks (issue 29), {what}. Device: {name}. torch {torch.__version__}, transformers {transformers.__version__}, "
        f"triton {version('triton')}, peft {version('peft')}; linebench {commit or 'unknown commit'}; "
        f"{datetime.date.today().isoformat()}, `python benchmarks/gpu.py{' --dry-run' if dry else ''}`. "
        "Ratios against the fused op (op rows) and NTP (step rows); peak GiB: an op call's above what was allocated before it, "
        "a training step's whole (weights, gradients and optimizer states included)."
    )


# ----------------------------------------------------------------------------------------------- 1. tests


def pytest_run(args: list[str], timeout: float) -> tuple[int | None, str, float]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, time.perf_counter() - t0


def summary(output: str) -> str:
    """pytest's last summary line ("12 passed, 3 skipped in 4.5s") and the first failures' names."""
    lines = [ln.strip("= ") for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error|skipped|deselected|tests? collected)|no tests ran", ln)]
    failed = [ln.split()[1].split("::")[-1] for ln in output.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    return (lines[-1] if lines else "no summary") + (f"; failed: {', '.join(failed[:4])}" if failed else "")


def tests_part(table: Table, dry: bool, budget_s: float) -> None:
    select = ["-k", TEST_SELECT, *TEST_FILES]
    case = "CUDA subset: " + ", ".join(Path(f).name for f in TEST_FILES) + " (-k in TEST_SELECT)"
    if dry:  # the same files collected with the same selection, narrowed to one quick test
        select = ["-k", f"({TEST_SELECT}) and {DRY_TEST}", *TEST_FILES]
        case += f", narrowed to {DRY_TEST} (dry run)"
    rc, out, wall = pytest_run(["-q", "-rfE", *select], min(TEST_TIMEOUT_S, budget_s))
    note = summary(out) if rc == 0 else (f"failed: timed out after {wall:.0f} s" if rc is None else f"failed: {summary(out)}")
    table.add("tests", case, "pytest", wall * 1e3, notes=note, ratios=False)


# ----------------------------------------------------------------------------------------------- 2. the op


def op_inputs(device, dtype, b, rows, h, hkv, d, n, t):
    """Leaf Q [B, H, L, D] and K [B, H_kv, L, D] (L = n + t; the image at 16..16+n), the target P [R, n]
    and each row's sample and query position (distinct queries after the image)."""
    import torch

    torch.manual_seed(0)
    before = min(16, t // 2)
    length = n + t
    q = torch.randn(b, h, length, d, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(b, hkv, length, d, device=device, dtype=dtype, requires_grad=True)
    p = torch.rand(rows, n, device=device) + 0.01
    p = p / p.sum(1, keepdim=True)
    bidx = torch.arange(rows, device=device) % b
    qpos = before + n + (torch.arange(rows, device=device) // b) % (t - before)
    return q, k, p, bidx, qpos, before


def op_loss(arm, q, k, p, bidx, qpos, off):
    """KLAL of the rows by one arm; every arm returns the mean over rows (fp32)."""
    import torch

    from linebench.klal import klal_loss

    rows, n = p.shape
    if arm != ARMS_OP[2]:
        backend = "triton" if arm == ARMS_OP[0] else "torch"
        return klal_loss(q[bidx, :, qpos], k, p, offsets=torch.full_like(bidx, off), batch_index=bidx, backend=backend,
                         shared_samples=rows > q.shape[0], check_indices=False)  # fmt: skip
    # eager: the whole attention matrix, softmax in fp32 cast back to the input dtype, as
    # transformers' eager attention does before returning it with output_attentions=True
    b, h, length, d = q.shape
    keys = k.repeat_interleave(h // k.shape[1], dim=1)
    scores = (q @ keys.transpose(-1, -2)) * d**-0.5
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    attn = torch.softmax(scores.masked_fill(causal, float("-inf")).float(), dim=-1).to(q.dtype)  # [B, H, L, L]
    a = attn[bidx, :, qpos, off : off + n].float()  # [R, H, n]
    qmap = (a / a.sum(-1, keepdim=True)).mean(1)
    return (p * (p.log() - qmap.clamp_min(torch.finfo(torch.float32).tiny).log())).sum(-1).mean()


def op_part(table: Table, device, dtype, dry: bool, repeats: int) -> None:
    import torch

    bench = bench_klal()
    for label, *shape in OP_SHAPES:
        b, rows, h, hkv, d, n, t = DRY_OP if dry else shape
        if dry and shape[4] > 128:
            d = 2 * d  # keep Gemma's wider head in the dry run
        case = f"{label}: B {b}, rows {rows}, H {h}/{hkv}, D {d}, N {n}, L {n + t}"
        base = None
        for arm in ARMS_OP:
            try:
                q, k, p, bidx, qpos, off = op_inputs(device, dtype, b, rows, h, hkv, d, n, t)

                last = []

                def step():
                    loss = op_loss(arm, q, k, p, bidx, qpos, off)
                    last[:] = [loss.detach()]
                    return torch.autograd.grad(loss, (q, k))

                ms = bench.timed(step, device, repeats, warmup=0 if dry else 3) * 1e3
                gib = bench.peak(step, device)
                table.add("op", case, arm, ms, gib, base, f"loss {float(last[0]):.5f}")
                base = base or (ms, gib)
            except Exception as e:  # noqa: BLE001 (out of memory, a kernel that does not compile: the row says so)
                table.add("op", case, arm, notes=f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
            finally:
                q = k = None
                free(device)


def bench_klal():
    """benchmarks/klal.py's timing helpers (timed, peak)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module("klal")


def free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- 3. the step


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) and key.endswith("_config") else value
    return out


def build(spec: dict, dry: bool, device, dtype):
    """The model at its real size (or the dry run's scaled config), random init, on `device`."""
    import torch
    import transformers

    cfg_dict = merged(spec["cfg"], {k: v for k, v in spec["dry"].items() if k != "image"}) if dry else spec["cfg"]
    cfg = getattr(transformers, spec["config"])(**cfg_dict)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: a 7B model in seconds, not minutes on the host
        model = getattr(transformers, spec["cls"])._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    return model.train(), cfg


def batch_for(spec: dict, cfg, side: int, device, dtype, text_ids=TEXT_IDS) -> tuple[dict, int, int]:
    """(model inputs, first image token, image tokens): BATCH samples of random text around one
    image at `side` px, the last ANSWER tokens labelled."""
    import torch

    kind, vision = spec["kind"], cfg.vision_config
    gen = torch.Generator().manual_seed(0)
    text = lambda k: torch.randint(*text_ids, (BATCH, k), generator=gen)  # noqa: E731
    col = lambda v: torch.full((BATCH, 1), v)  # noqa: E731
    extra = {}
    if kind == "llava":
        n = (side // vision.patch_size) ** 2
        parts = [col(cfg.text_config.bos_token_id), text(BEFORE - 1), col(cfg.image_token_index).repeat(1, n)]
        extra["pixel_values"] = torch.randn(BATCH, 3, side, side, generator=gen)
    elif kind == "qwen":
        grid = side // vision.patch_size
        n = grid * grid // vision.spatial_merge_size**2
        parts = [text(BEFORE - 1), col(cfg.vision_start_token_id), col(cfg.image_token_id).repeat(1, n), col(cfg.vision_end_token_id)]
        patch = 3 * vision.temporal_patch_size * vision.patch_size**2
        extra["pixel_values"] = torch.randn(BATCH * grid * grid, patch, generator=gen)
        extra["image_grid_thw"] = torch.tensor([[1, grid, grid]] * BATCH)
    elif kind == "gemma3":
        n = cfg.mm_tokens_per_image
        parts = [col(cfg.text_config.bos_token_id), text(BEFORE - 2), col(cfg.boi_token_index), col(cfg.image_token_index).repeat(1, n), col(cfg.eoi_token_index)]
        extra["pixel_values"] = torch.randn(BATCH, 3, side, side, generator=gen)
    else:
        raise ValueError(kind)
    ids = torch.cat(parts + [text(AFTER), text(ANSWER)], dim=1)
    image_id = cfg.image_token_index if kind in ("llava", "gemma3") else cfg.image_token_id
    start = int((ids[0] == image_id).nonzero()[0])
    if kind == "qwen":
        extra["mm_token_type_ids"] = (ids == image_id).int()  # what the processor returns: mRoPE needs it
    if kind == "gemma3":
        extra["token_type_ids"] = (ids == image_id).long()  # bidirectional attention among image tokens
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER:] = ids[:, -ANSWER:]
    inputs = dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids), **extra)
    inputs = {k: v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}
    return inputs, start, n


def count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def eager_klal(attentions, target, start, n, answer_len=ANSWER):
    """KLAL from `output_attentions`: the queries producing the answer tokens (all-answer), each
    layer's head mean renormalised over the image; mean over rows, then layers (as the capture)."""
    import torch

    length = attentions[0].shape[-1]
    qpos = torch.arange(length - answer_len - 1, length - 1, device=target.device)
    per_layer = []
    for attn in attentions:
        a = attn[:, :, qpos, start : start + n].float()  # [B, H, rows, n]
        qmap = (a / a.sum(-1, keepdim=True)).mean(1)  # [B, rows, n]
        p = target[:, None, :]
        per_layer.append((p * (p.log() - qmap.clamp_min(torch.finfo(torch.float32).tiny).log())).sum(-1).mean())
    return torch.stack(per_layer).mean()


def step_part(table: Table, device, dtype, dry: bool, repeats: int, deadline: float, models: list[str]) -> None:
    for name in models:
        spec = MODELS[name]
        if time.perf_counter() > deadline:
            for arm in ARMS_STEP:
                table.add("step", name, arm, notes="failed: skipped, past the time budget (--budget)")
            continue
        mode = spec["mode"]
        oom = step_model(table, name, spec, mode, device, dtype, dry, repeats)
        if oom and mode == "full":  # retried outside the handler, so the failed run's tensors are freed
            free(device)
            step_model(table, name, spec, "lora", device, dtype, dry, repeats, note="full fine-tuning ran out of memory; ")
        free(device)


def step_model(table, name, spec, mode, device, dtype, dry, repeats, note="") -> bool:
    """The three arms of one model; True when it ran out of memory (nothing added then, in full mode)."""
    import torch

    from linebench.train.capture import KLALCapture

    bench = bench_klal()
    model = opt = cap = None
    try:
        model, cfg = build(spec, dry, device, dtype)
        total = sum(p.numel() for p in model.parameters())
        if mode == "lora":
            from peft import LoraConfig, get_peft_model

            from linebench.train.model import lora_targets

            # injected in place: `model` itself now runs the adapters, its base weights frozen
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=lora_targets(model), lora_dropout=0.0))
        params = [p for p in model.parameters() if p.requires_grad]
        trained = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=0.0, fused=device.type == "cuda")  # lr 0: every arm sees the same weights
        side = spec["dry"]["image"] if dry else spec["image"]
        inputs, start, n = batch_for(spec, cfg, side, device, dtype, DRY_TEXT_IDS if dry else TEXT_IDS)
        g = torch.Generator().manual_seed(1)
        target = torch.rand(BATCH, n, generator=g) + 0.01
        target = (target / target.sum(1, keepdim=True)).to(device)
        layers = cfg.text_config.num_hidden_layers
        how = f"LoRA r{LORA_RANK}, {count(trained)} trained" if mode == "lora" else "full"
        case = (f"{name}: {count(total)} params, {how}; batch {BATCH} x 1 image {side}x{side} ({n} tokens), "
                f"{inputs['input_ids'].shape[1]} tokens, {layers} layers")  # fmt: skip
        values = {}

        def run(arm):
            if arm == ARMS_STEP[0]:
                loss = model(**inputs).loss
            elif arm == ARMS_STEP[1]:
                with cap.batch(inputs["input_ids"], inputs["labels"], list(target)):
                    out = model(**inputs)
                loss = out.loss + cap.loss
                values[arm] = float(cap.loss.detach())
            else:
                out = model(**inputs, output_attentions=True)
                klal = eager_klal(out.attentions, target, start, n)
                loss = out.loss + klal
                values[arm] = float(klal.detach())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        base = None
        for arm in ARMS_STEP:
            if arm == ARMS_STEP[1]:
                cap = KLALCapture(model, layers="all", query="all-answer", special_ids=(), backend="auto")
            if arm == ARMS_STEP[2]:
                cap.remove()
                model.set_attn_implementation({"text_config": "eager"})
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # eager's output_attentions notes, peft's target notes
                ms = bench.timed(lambda: run(arm), device, repeats, warmup=1) * 1e3
            gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            notes = note + (f"KLAL {values[arm]:.5f}" if arm in values else "")
            if arm == ARMS_STEP[1] and cap.left_out:
                notes += f"; layers left out: {sorted(cap.left_out)}"
            table.add("step", case, arm, ms, gib, base, notes)
            base = base or (ms, gib)
        return False
    except Exception as e:  # noqa: BLE001
        import torch

        if isinstance(e, torch.OutOfMemoryError) and mode == "full":
            return True
        table.add("step", name, f"({mode})", notes=f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        return False
    finally:
        if cap is not None:
            cap.remove()
        del model, opt, cap


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    ap.add_argument("--dry-run", action="store_true", help="every code path on CPU at tiny shapes (float32)")
    ap.add_argument("--parts", default="tests,op,step", help="comma-separated: tests, op, step")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per arm (default 10 for the op, 3 for a step; 1 in a dry run)")
    ap.add_argument("--budget", type=float, default=400.0, help="seconds: models not started by then are skipped (the whole run stays under 8 minutes)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = (parts - {"tests", "op", "step"}) or {m for m in models if m not in MODELS}
    if bad:
        ap.error(f"unknown part or model: {', '.join(sorted(bad))}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; say so to the libraries
    if args.dry_run:
        # the kernels run in Triton's interpreter on CPU: set before anything imports triton
        os.environ["TRITON_INTERPRET"] = "1"
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device (or --dry-run on CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    table = Table(header(device, args.dry_run), args.out)
    if "tests" in parts:
        tests_part(table, args.dry_run, max(60.0, args.budget / 2))
    if "op" in parts:
        op_part(table, device, dtype, args.dry_run, args.repeats or (1 if args.dry_run else 10))
    if "step" in parts:
        step_part(table, device, dtype, args.dry_run, args.repeats or (1 if args.dry_run else 3), start + args.budget, models)
    print(table.text())
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
