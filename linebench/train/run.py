"""`linebench train`: fine-tune a VLM with L = L_NTP + lambda * L_KLAL (or NTP only), from the tiny
default model on a 2-core CPU to LLaVA-1.5 / Qwen2.5-VL checkpoints on many GPUs.

`train(TrainOptions(...))` is the command as a function: it resolves the model (a tiny default
built locally, a local folder, or a Hub id already in the user's cache: never a download), the data
(a linebench folder, a cached Hub id, or rows generated on the spot), evaluates on held-out rows
before training, trains with `KLALTrainer` (TRL's SFTTrainer), evaluates again (and every
`eval_every` steps), and writes into `out`:

  run.json        the exact command, options and library versions
  metrics.jsonl   one line per logged step (loss, ntp, klal, ...) and per evaluation
  eval.json       the evaluations before and after (accuracy, per level, attention per layer)
  predictions.jsonl  the final evaluation's answer to every held-out row (id, prediction, answer, correct)
  model/          the trained model (safetensors) and its processor
  checkpoints/    TRL's checkpoints (resume: --resume)
  *.png           loss terms over steps, accuracy over steps, attention ratio per layer before/after
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from . import tiny as tiny_models

SUPPORTED = ("llava", "qwen2_5_vl", "qwen2_vl")
LORA_TARGETS = r".*\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"  # never the vision tower


@dataclass
class TrainOptions:
    model: str = "tiny"
    data: str | None = None  # folder or cached Hub id; None: generate (task, n)
    task: str = "grid_patch"
    n: int = 2000
    difficulty: str = "easy"
    canvas: tuple[int, int] | None = None  # generated data; default: the tiny models' 224, else 448
    split: str = "train"
    eval_n: int = 128
    out: str = "runs/train"
    klal: bool = False
    lam: float = 1.0
    layers: str = "all"
    query: str = "answer-content"
    map_params: dict[str, float] = field(default_factory=dict)
    lora: bool = False
    lora_rank: int = 16
    bf16: bool = False
    gradient_checkpointing: bool = False
    learning_rate: float = 1e-3
    batch_size: int = 8
    grad_accum: int = 1
    steps: int = 600
    warmup_ratio: float = 0.05
    seed: int = 0
    eval_every: int = 0  # 0: before and after only
    save_every: int = 200
    max_length: int | None = None
    max_new_tokens: int = 12
    resume: bool = False
    overwrite: bool = False
    workers: int = 2  # for generating data
    backend: str = "auto"

    def check(self) -> None:
        if self.lam < 0:
            raise UsageError(f"--lambda must be >= 0, got {self.lam}")
        for name in ("n", "eval_n", "batch_size", "grad_accum", "steps", "lora_rank", "max_new_tokens", "workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or not math.isfinite(self.learning_rate):
            raise UsageError(f"--lr must be a positive number, got {self.learning_rate}")
        if self.eval_every < 0 or self.save_every < 1:
            raise UsageError("--eval-every must be >= 0 and --save-every >= 1")


# --------------------------------------------------------------------------- model


def resolve_model(name: str) -> Path:
    """A folder holding the checkpoint: a tiny default (built in linebench's cache), a local folder,
    or a Hub id already in the user's cache. Never downloads."""
    if name in tiny_models.TINY:
        return tiny_models.cached(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {name}: the folder has no config.json (not a transformers checkpoint)")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UsageError(f"--model {name}: no such folder, and not a Hub id (ORG/NAME); the tiny defaults are {', '.join(tiny_models.TINY)}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UsageError(
            f"--model {name}: not in your Hugging Face cache (linebench never downloads weights; run `hf download {name}` first)"
        ) from None


def load_model(folder: Path, *, bf16: bool, device: str | None = None):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    cfg = AutoConfig.from_pretrained(folder)
    if cfg.model_type not in SUPPORTED:
        raise UsageError(f"{folder}: model type {cfg.model_type!r} is not supported for training (supported: LLaVA-1.5, Qwen2-VL, Qwen2.5-VL)")
    # a model loaded from a string is float32 unless dtype is given: say it
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    if tiny_models.is_tiny(folder):
        processor = tiny_models.load_processor(folder)
    else:
        try:
            processor = AutoProcessor.from_pretrained(folder)
        except ImportError as e:  # Qwen's video processor wants torchvision; images do not need it
            if cfg.model_type.startswith("qwen2"):
                from transformers import AutoImageProcessor, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(folder)
                processor = tiny_models.qwen_processor_class()(image_processor=AutoImageProcessor.from_pretrained(folder), tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
            else:
                raise UsageError(f"{folder}: cannot load its processor ({e})") from None
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


# --------------------------------------------------------------------------- data


def load_rows(opts: TrainOptions, out: Path, canvas: tuple[int, int], log: Callable[[str], None]):
    """(train dataset, held-out rows) of linebench rows."""
    from datasets import load_dataset

    if opts.data is None:
        from ..dataset import generate
        from ..samples import RunSpec
        from ..tasks import ParamSpec

        folder = out / "data"
        for split, n in ((opts.split, opts.n), ("test", opts.eval_n)):
            target = folder / split
            if not (target / "manifest.json").is_file():
                log(f"generating {n} {opts.task} rows ({opts.difficulty}, {canvas[0]}x{canvas[1]}) for {split}")
                spec = RunSpec(opts.task, split=split, n=n, seed=opts.seed, params=ParamSpec(canvas, opts.difficulty), maps=())
                generate(spec, target, workers=opts.workers, overwrite=True)
        train = load_dataset(str(folder / opts.split), split=opts.split)
        held = load_dataset(str(folder / "test"), split="test")
        return train, [held[i] for i in range(len(held))]
    source = opts.data
    try:
        ds = load_dataset(source)
    except Exception as e:  # a missing folder, or a Hub id that is not cached (offline)
        raise UsageError(f"--data {source}: cannot load it ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if opts.split not in ds:
        raise UsageError(f"--data {source} has no split {opts.split!r} (it has {', '.join(ds)})")
    from ..annotate import as_rows, is_maps_folder

    if is_maps_folder(source):  # real grounding data with maps (`linebench maps`): question and answer from its options
        ds = {k: as_rows(v, source) for k, v in ds.items()}
    train = ds[opts.split]
    for col in ("image", "question", "answer", "geometry"):
        if col not in train.column_names:
            raise UsageError(f"--data {source}: no {col!r} column; training needs linebench rows with stored geometry")
    other = next((s for s in ("validation", "test") if s in ds and s != opts.split), None)
    if other is not None:
        held = ds[other]
    else:  # hold out the last rows of the training split
        k = min(opts.eval_n, len(train) // 5)
        held, train = train.select(range(len(train) - k, len(train))), train.select(range(len(train) - k))
    held = [held[i] for i in range(min(len(held), opts.eval_n))]
    return train, held


# --------------------------------------------------------------------------- outputs


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from .. import __version__

    out = {"linebench": __version__, "python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _prepare_out(out: Path, opts: TrainOptions, command: str) -> None:
    run_file = out / "run.json"
    mine = {k: v for k, v in asdict(opts).items() if k not in ("resume", "overwrite", "workers")}
    if run_file.is_file():
        try:
            theirs = json.loads(run_file.read_text()).get("options", {})
        except ValueError:
            theirs = None
        if opts.resume and theirs == json.loads(json.dumps(mine)):
            return
        if opts.resume:
            raise UsageError(f"--resume: {out} holds a run with other options; rerun with the same options, or --overwrite")
        if not opts.overwrite:
            raise UsageError(f"{out} already holds a run (run.json); pass --resume to continue it or --overwrite to start over")
        import shutil

        shutil.rmtree(out)
    elif opts.resume:
        raise UsageError(f"--resume: {out} holds no run to resume")
    out.mkdir(parents=True, exist_ok=True)
    tmp = run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command, "options": mine, "versions": _versions()}, indent=1, default=str) + "\n")
    os.replace(tmp, run_file)


class _Metrics:
    """metrics.jsonl: appended line by line (a killed run keeps what it logged)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")


# --------------------------------------------------------------------------- the run


def train(opts: TrainOptions, command: str = "linebench train", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `linebench train` (see the module docstring); returns {"before", "after", "out"}."""
    opts.check()
    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig

    from accelerate import PartialState

    from ..evaluate.hf import evaluate

    from ..evaluate.diagnostics import describe, layer_mean
    from .capture import QUERIES, CaptureError, parse_layers
    from .data import KLALCollator, examples_transform, map_profile
    from .trainer import KLALTrainer

    if opts.query not in QUERIES:
        raise UsageError(f"--klal-query must be one of {', '.join(QUERIES)}, got {opts.query!r}")
    # One process, or one of many under accelerate launch / torchrun. Without a GPU, accelerate
    # sees the processes only when told it runs on the CPU (else every rank trains alone).
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    state = PartialState(cpu=multi_cpu)
    main = state.is_main_process
    out = Path(opts.out)
    folder = resolve_model(opts.model) if main else None
    state.wait_for_everyone()
    folder = folder or resolve_model(opts.model)  # built by the main process; the others find it
    if main:
        _prepare_out(out, opts, command)
    state.wait_for_everyone()
    if not main:
        log = _quiet
    is_tiny = tiny_models.is_tiny(folder) is not None
    canvas = opts.canvas or ((tiny_models.CANVAS, tiny_models.CANVAS) if is_tiny else (448, 448))
    model, processor = load_model(folder, bf16=opts.bf16)
    try:
        parse_layers(opts.layers, len(model.get_decoder().layers))
    except CaptureError as e:
        raise UsageError(f"--klal-layers: {e}") from None
    profile = map_profile(processor)
    with state.main_process_first():  # the main process generates the data; the others read it
        train_ds, held = load_rows(opts, out, canvas, log)
    metrics = _Metrics(out / "metrics.jsonl")
    log(f"model {opts.model} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters), maps {profile}, "
        f"{len(train_ds)} training rows, {len(held)} held out; {'NTP + ' + str(opts.lam) + ' x KLAL' if opts.klal else 'NTP only'}")

    collator = KLALCollator(processor, profile, max_length=opts.max_length, map_params=opts.map_params or None, maps=opts.klal)
    # Before training: the first batch's maps against the image tokens the processor put in
    # input_ids (a mismatch stops here, naming the row), for the NTP-only baseline too.
    first = examples_transform()(train_ds[: min(len(train_ds), opts.batch_size)])
    KLALCollator(processor, profile, max_length=opts.max_length, map_params=opts.map_params or None)(
        [{k: v[i] for k, v in first.items()} for i in range(len(first["prompt"]))]
    )

    peft_config = None
    if opts.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=opts.lora_rank, lora_alpha=2 * opts.lora_rank, target_modules=LORA_TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM")
    use_liger = torch.cuda.is_available() and _has("liger_kernel")
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
        max_steps=opts.steps, learning_rate=opts.learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, int(opts.warmup_ratio * opts.steps)),
        logging_steps=max(1, min(10, opts.steps // 20)), save_steps=opts.save_every, save_total_limit=2, seed=opts.seed, data_seed=opts.seed,
        remove_unused_columns=False, report_to="none", bf16=opts.bf16, fp16=False, max_length=opts.max_length,
        gradient_checkpointing=opts.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0, use_liger_kernel=use_liger, disable_tqdm=False, save_only_model=False,
        **({"use_cpu": True} if multi_cpu else {}),  # the Trainer's own accelerate state: the same processes
    )  # fmt: skip

    def run_eval(step: int, label: str) -> dict[str, Any]:
        if not main:  # evaluation and outputs belong to the main process
            return {}
        t0 = time.perf_counter()
        rep = evaluate(model_ref[0], processor, held, task=None, batch_size=max(1, min(16, opts.batch_size * 2)), max_new_tokens=opts.max_new_tokens)
        if label == "after":  # every held-out row's verdict: paired tests of two runs on the same rows need them
            lines = "".join(json.dumps(p) + "\n" for p in rep["predictions"])
            tmp = out / "predictions.jsonl.tmp"
            tmp.write_text(lines)
            os.replace(tmp, out / "predictions.jsonl")
        rep = {k: v for k, v in rep.items() if k != "predictions"} | {"step": step, "label": label, "seconds": round(time.perf_counter() - t0, 2)}
        metrics.write({"eval": rep})
        log(f"eval ({label}, step {step}): {describe(rep['diagnostics'])}; mean over layers: attention on the image "
            f"{layer_mean(rep, 'visual_share'):.3f}, ratio (target / visual) {layer_mean(rep, 'ratio'):.3f}, KL {layer_mean(rep, 'kl'):.3f}")
        return rep

    class Recorder(TrainerCallback):
        def on_log(self, args_, state_, control, logs=None, **kw):
            if logs and main:
                metrics.write({"step": state_.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})

        def on_step_end(self, args_, state_, control, **kw):
            if opts.eval_every and state_.global_step % opts.eval_every == 0 and state_.global_step < opts.steps:
                evals.append(run_eval(state_.global_step, "during"))

    model_ref = [model]
    evals: list[dict[str, Any]] = []
    last = _last_checkpoint(out / "checkpoints") if opts.resume else None
    before = run_eval(0, "before") if last is None else _read_eval(out, "before")
    trainer = KLALTrainer(
        model=model, args=args, train_dataset=train_ds.with_transform(examples_transform()), data_collator=collator, processing_class=processor,
        peft_config=peft_config, callbacks=[Recorder()], klal=opts.klal, klal_lambda=opts.lam, klal_layers=opts.layers, klal_query=opts.query,
        klal_backend=opts.backend,
    )  # fmt: skip
    model_ref[0] = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    try:
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    except torch.cuda.OutOfMemoryError:
        raise UsageError("out of memory: lower --batch-size (raise --grad-accum to keep the batch), or use --gradient-checkpointing, --lora or --bf16") from None
    after = run_eval(opts.steps, "after")
    state.wait_for_everyone()
    if not main:
        return {"before": before, "after": after, "out": str(out)}
    final = trainer.model.merge_and_unload() if opts.lora and hasattr(trainer.model, "merge_and_unload") else trainer.model
    final.save_pretrained(out / "model", safe_serialization=True)
    processor.save_pretrained(out / "model")
    summary = {"before": before, "during": evals, "after": after, "train": {k: v for k, v in result.metrics.items()}, "profile": profile}
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    os.replace(tmp, out / "eval.json")
    try:
        from .plots import plot_run

        plot_run(out)
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
    return {"before": before, "after": after, "out": str(out)}


def _quiet(message: str) -> None:
    pass


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _last_checkpoint(folder: Path) -> Path | None:
    steps = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    return steps[-1][1] if steps else None


def _read_eval(out: Path, label: str) -> dict[str, Any]:
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []:
        rec = json.loads(line)
        if rec.get("eval", {}).get("label") == label:
            return rec["eval"]
    return {}
