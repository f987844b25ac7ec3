"""`linebench train`: fine-tune a VLM with L = L_NTP + lambda * L_KLAL (or NTP only), from the tiny
default model on a 2-core CPU to LLaVA-1.5 / Qwen2.5-VL checkpoints on many GPUs.

`train(TrainOptions(...))` is the command as a function: it resolves the model (a tiny default
built locally, a local folder, or a Hub id already in the user's cache: never a download), the data
(a linebench folder, a cached Hub id, or rows generated on the spot), evaluates on held-out rows
before training, trains with `KLALTrainer` (TRL's SFTTrainer), evaluates again (and every
`eval_every` steps), and writes its folder (linebench.train.outputs: run.json, metrics.jsonl, eval.json,
predictions.jsonl, model/, checkpoints/, plots).

The options are `train.options.TrainOptions`, the model's checks and loading `train.model`. The
folder discipline is the data commands' (linebench.writer.locked_output): every option, the
model folder and the data are checked before anything is written; the folder is locked for the
run; a run that fails or is interrupted takes back everything it wrote unless a complete checkpoint
exists (then `--resume` goes on from it). `--resume` continues from the newest *complete*
checkpoint (trainer_state.json and weights that load; unfinished or damaged ones are removed,
saying so), drops the log lines after it, and ends in the state an uninterrupted run ends in.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from ..errors import Interrupted, LinebenchError, UsageError
from ..fsio import atomic_write, why
from ..models import resolve_model
from . import tiny as tiny_models
from .model import check_model, load_model, lora_targets
from .options import TrainOptions
from .outputs import RUN_FILE, Metrics, check_out, checkpoint_step, kept, start, take_back, whole_run_loss

__all__ = ["TrainOptions", "train", "load_rows", "check_data"]


# --------------------------------------------------------------------------- data


def _specs(opts: TrainOptions, canvas: tuple[int, int]):
    from ..samples import RunSpec
    from ..tasks import ParamSpec

    return [RunSpec(opts.task, split=split, n=n, seed=opts.seed, params=ParamSpec(canvas, opts.difficulty), maps=())
            for split, n in ((opts.split, opts.n), ("test", opts.eval_n))]  # fmt: skip


def check_data(opts: TrainOptions, canvas: tuple[int, int]):
    """Before any work: --data loaded and checked -> (train dataset, held-out rows); for generated
    data, the task, level, canvas and sizes checked as `generate` would (nothing drawn) -> None."""
    if opts.data is None:
        from ..dataset import preflight

        for spec in _specs(opts, canvas):
            preflight([spec])
        return None
    return load_rows(opts, Path(opts.out), canvas, _quiet)


def load_rows(opts: TrainOptions, out: Path, canvas: tuple[int, int], log: Callable[[str], None]):
    """(train dataset, held-out rows) of linebench rows."""
    from datasets import load_dataset

    if opts.data is None:
        from ..dataset import generate

        folder = out / "data"
        for spec in _specs(opts, canvas):
            target = folder / spec.split
            if not (target / "manifest.json").is_file():
                log(f"generating {spec.n} {opts.task} rows ({opts.difficulty}, {canvas[0]}x{canvas[1]}) for {spec.split}")
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
        if len(held) == 0:
            raise UsageError(f"--data {source}: its {other} split (the held-out rows) is empty")
    else:  # hold out the last rows of the training split (at least one)
        if len(train) < 2:
            raise UsageError(f"--data {source}: its {opts.split} split has {len(train)} row(s) and no validation or test split; "
                             "training needs at least 2 (one is held out for evaluation)")  # fmt: skip
        k = max(1, min(opts.eval_n, len(train) // 5))
        held, train = train.select(range(len(train) - k, len(train))), train.select(range(len(train) - k))
    if len(train) == 0:
        raise UsageError(f"--data {source}: its {opts.split} split is empty")
    held = [held[i] for i in range(min(len(held), opts.eval_n))]
    return train, held


# --------------------------------------------------------------------------- the run


def train(opts: TrainOptions, command: str = "linebench train", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `linebench train` (see the module docstring); returns {"before", "after", "out"}."""
    opts.check()
    import torch
    from accelerate import PartialState

    from ..writer import locked_output
    from .capture import QUERIES

    if opts.query not in QUERIES:
        raise UsageError(f"--klal-query must be one of {', '.join(QUERIES)}, got {opts.query!r}")
    # One process, or one of many under accelerate launch / torchrun. Without a GPU, accelerate
    # sees the processes only when told it runs on the CPU (else every rank trains alone).
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    state = PartialState(cpu=multi_cpu)
    main = state.is_main_process
    out = Path(opts.out)
    with ExitStack() as stack:
        if main:  # the folder is checked, then locked (created if need be) before anything else
            check_out(out, opts)
            stack.enter_context(locked_output(out, markers=(RUN_FILE,)))
            mode = check_out(out, opts)  # again, now that no other run can write there
        folder = resolve_model(opts.model) if main else None
        state.wait_for_everyone()
        folder = folder or resolve_model(opts.model)  # built by the main process; the others find it
        check_model(opts.model, folder, opts.layers)
        is_tiny = tiny_models.is_tiny(folder) is not None
        canvas = opts.canvas or ((tiny_models.CANVAS, tiny_models.CANVAS) if is_tiny else (448, 448))
        data = check_data(opts, canvas)  # every option, the model and the data are checked: now the work
        if not main:
            return _run(opts, state, main, out, folder, canvas, data, _quiet, None)
        fresh = mode != "resume"
        try:
            last = start(out, opts, command, mode, log)  # run.json written, or the resume's checkpoint chosen and its log trimmed
        except OSError as e:
            if fresh:
                take_back(out)
            raise UsageError(f"cannot write {e.filename or out}: {why(e)}") from None
        try:
            return _run(opts, state, main, out, folder, canvas, data, log, last)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through the CLI
            raise Interrupted(f"interrupted; {kept(out, fresh)}", getattr(e, "exit_code", 130)) from None
        except LinebenchError as e:
            e.args = (f"{e.args[0] if e.args else e}; {kept(out, fresh)}", *e.args[1:])
            raise
        except OSError as e:  # a full disk, a folder made read-only under the run
            raise UsageError(f"{why(e)} ({e.filename or out}); {kept(out, fresh)}") from None
        except BaseException:
            kept(out, fresh)  # a bug: its traceback, and the folder as the principles say
            raise


def _run(opts: TrainOptions, state, main: bool, out: Path, folder: Path, canvas, data, log, last: Path | None) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig

    from ..evaluate.diagnostics import describe, layer_mean
    from ..evaluate.hf import evaluate
    from .capture import image_token_of
    from .data import KLALCollator, examples_transform, map_profile
    from .trainer import KLALTrainer

    state.wait_for_everyone()
    if opts.resume and not main:  # the main process removed the damaged ones
        found = get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").is_dir() else None
        last = Path(found) if found else None
    model, processor = load_model(folder, bf16=opts.bf16)
    profile = map_profile(processor)
    if data is None:
        with state.main_process_first():  # the main process generates the data; the others read it
            data = load_rows(opts, out, canvas, log)
    train_ds, held = data
    metrics = Metrics(out / "metrics.jsonl")
    log(f"model {opts.model} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters), maps {profile}, "
        f"{len(train_ds)} training rows, {len(held)} held out; {'NTP + ' + str(opts.lam) + ' x KLAL' if opts.klal else 'NTP only'}")

    image_token = image_token_of(model)
    collator = KLALCollator(processor, profile, max_length=opts.max_length, map_params=opts.map_params or None, maps=opts.klal, image_token_id=image_token)
    # Before training: the first batch's maps against the image tokens the processor put in
    # input_ids (a mismatch stops here, naming the row), for the NTP-only baseline too.
    first = examples_transform()(train_ds[: min(len(train_ds), opts.batch_size)])
    KLALCollator(processor, profile, max_length=opts.max_length, map_params=opts.map_params or None, image_token_id=image_token)(
        [{k: v[i] for k, v in first.items()} for i in range(len(first["prompt"]))]
    )

    peft_config = None
    if opts.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=opts.lora_rank, lora_alpha=2 * opts.lora_rank, target_modules=lora_targets(model), lora_dropout=0.0, task_type="CAUSAL_LM")
    use_liger = torch.cuda.is_available() and _has("liger_kernel")
    # every checkpoint (and the last step) falls on a logged step, so a resumed run's log, token
    # count and loss summary continue exactly where the checkpoint's left off
    logging_steps = math.gcd(max(1, min(10, opts.steps // 20)), opts.save_every, opts.steps)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
        max_steps=opts.steps, learning_rate=opts.learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, int(opts.warmup_ratio * opts.steps)),
        logging_steps=logging_steps, save_steps=opts.save_every, save_total_limit=2, seed=opts.seed, data_seed=opts.seed,
        remove_unused_columns=False, report_to="none", bf16=opts.bf16, fp16=False, max_length=opts.max_length,
        gradient_checkpointing=opts.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0, use_liger_kernel=use_liger, disable_tqdm=False, save_only_model=False,
        **({"use_cpu": True} if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() else {}),  # the Trainer's own accelerate state: the same processes
    )  # fmt: skip

    def run_eval(step: int, label: str) -> dict[str, Any]:
        if not main:  # evaluation and outputs belong to the main process
            return {}
        t0 = time.perf_counter()
        rep = evaluate(model_ref[0], processor, held, task=None, batch_size=max(1, min(16, opts.batch_size * 2)), max_new_tokens=opts.max_new_tokens)
        if label == "after":  # every held-out row's verdict: paired tests of two runs on the same rows need them
            atomic_write(out / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in rep["predictions"]), sync=False)
        rep = {k: v for k, v in rep.items() if k != "predictions"} | {"step": step, "label": label, "seconds": round(time.perf_counter() - t0, 2)}
        log(f"eval ({label}, step {step}): {describe(rep['diagnostics'])}; mean over layers: attention on the image "
            f"{layer_mean(rep, 'visual_share'):.3f}, ratio (target / visual) {layer_mean(rep, 'ratio'):.3f}, KL {layer_mean(rep, 'kl'):.3f}")
        return rep

    class Recorder(TrainerCallback):
        def on_log(self, args_, state_, control, logs=None, **kw):
            if logs and main:
                record = {"step": state_.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
                if "train_loss" in record:  # the whole run's, also after a resume (transformers': this call's steps only)
                    record["train_loss"] = whole_run_loss(state_.log_history)
                metrics.write(record)

        def on_step_end(self, args_, state_, control, **kw):
            if opts.eval_every and state_.global_step % opts.eval_every == 0 and state_.global_step < opts.steps and main:
                metrics.write({"eval": run_eval(state_.global_step, "during")})

    model_ref = [model]
    if main:
        before = next(iter(metrics.evals("before")), None) if last is not None else None
        if before is None:  # a fresh run, or a resume from step 0 (or one whose log lost it): the initial weights
            before = run_eval(0, "before")
            metrics.put_first({"eval": before}) if last is not None else metrics.write({"eval": before})
    trainer = KLALTrainer(
        model=model, args=args, train_dataset=train_ds.with_transform(examples_transform()), data_collator=collator, processing_class=processor,
        peft_config=peft_config, callbacks=[Recorder()], klal=opts.klal, klal_lambda=opts.lam, klal_layers=opts.layers, klal_query=opts.query,
        klal_backend=opts.backend,
    )  # fmt: skip
    model_ref[0] = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    if trainer.capture is not None and trainer.capture.left_out:
        log("KLAL leaves out " + "; ".join(f"layer {i}: {why}" for i, why in sorted(trainer.capture.left_out.items())))
    try:
        if last is not None and checkpoint_step(last) >= opts.steps:
            result_metrics = _finished_training(trainer, last, metrics if main else None)
        else:
            result_metrics = trainer.train(resume_from_checkpoint=str(last) if last else None).metrics
    except torch.cuda.OutOfMemoryError:
        raise UsageError("out of memory: lower --batch-size (raise --grad-accum to keep the batch), or use --gradient-checkpointing, --lora or --bf16") from None
    after = run_eval(opts.steps, "after")
    state.wait_for_everyone()
    if not main:
        return {"before": {}, "after": after, "out": str(out)}
    metrics.write({"eval": after})
    final = trainer.model.merge_and_unload() if opts.lora and hasattr(trainer.model, "merge_and_unload") else trainer.model
    final.save_pretrained(out / "model", safe_serialization=True)
    processor.save_pretrained(out / "model")
    train_summary = {**result_metrics, "train_loss": whole_run_loss(trainer.state.log_history)}
    summary = {"before": before, "during": metrics.evals("during"), "after": after, "train": train_summary, "profile": profile}
    if trainer.capture is not None:  # the layers KLAL supervised, and those it could not (and why)
        summary["klal_layers"] = {"supervised": [i for i in trainer.capture.layers if i not in trainer.capture.left_out],
                                  "left_out": {str(i): why for i, why in sorted(trainer.capture.left_out.items())}}
    atomic_write(out / "eval.json", json.dumps(summary, indent=1, default=float) + "\n")
    try:
        from .plots import plot_run

        plot_run(out)
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
    return {"before": before, "after": after, "out": str(out)}


def _finished_training(trainer, last: Path, metrics: Metrics | None) -> dict[str, Any]:
    """A resume from the checkpoint of the last step: training is done (transformers would train one
    step more from it). Its weights and Trainer state are loaded, and the end-of-training line
    logged as train() logs it (no time spent)."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(str(last))
    trainer.state = TrainerState.load_from_json(str(last / "trainer_state.json"))
    out = {"train_runtime": 0.0, "train_samples_per_second": 0.0, "train_steps_per_second": 0.0, "total_flos": trainer.state.total_flos,
           "train_loss": whole_run_loss(trainer.state.log_history), "epoch": trainer.state.epoch}  # fmt: skip
    if metrics is not None:
        metrics.write({"step": trainer.state.global_step, **out})
    return out


def _quiet(message: str) -> None:
    pass


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
