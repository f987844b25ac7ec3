"""`linebench train`: fine-tune a VLM with NTP + lambda * KLAL."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.text import Text

from .base import app, err_console, friendly, out_console, out_path, parse_canvas
from .options import ALL_CORES, MapFloor, MapNeighbour, MapRadius, MapTarget, Workers


@app.command()
@friendly
def train(
    model: str = typer.Option("tiny", "--model", "-m", help="tiny (a small random-init LLaVA, built locally), tiny-<family> (e.g. tiny-qwen3-vl, tiny-gemma-3), a checkpoint folder, or a Hub id already in your cache (never downloaded); `linebench models` lists the families."),
    data: Optional[str] = typer.Option(None, "--data", help="A linebench folder or a cached Hub id (linebench/tracing). Default: generate --n rows of --task."),
    task: str = typer.Option("grid_patch", "--task", "-t", help="Task to generate when --data is not given."),
    n: int = typer.Option(2000, "--n", "-n", help="Rows to generate when --data is not given."),
    difficulty: str = typer.Option("easy", "--difficulty", "-d", help="Level of the generated rows."),
    canvas: Optional[str] = typer.Option(None, "--canvas", help="Canvas of the generated rows (default: 224 for the tiny models, else 448)."),
    split: str = typer.Option("train", "--split", help="Split of --data to train on (held out: validation or test if there, else its last rows)."),
    eval_n: int = typer.Option(128, "--eval-n", help="Held-out rows evaluated before, during and after training."),
    out_text: str = typer.Option("runs/train", "--out", "-o", help="Run folder: metrics, plots, checkpoints, the trained model."),
    klal: bool = typer.Option(False, "--klal/--no-klal", help="Add lambda * KLAL to the next-token loss (without it: the NTP-only baseline, same data, order and seed)."),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of KLAL."),
    layers: str = typer.Option("all", "--klal-layers", help="Supervised decoder layers: all, last:K or i,j,..."),
    query: str = typer.Option("answer-content", "--klal-query", help="Which query attends: answer-content (the queries that produce the answer's letters and digits, never a format token such as ')'), last-answer, answer-start, all-answer, at-last-label (docs/klal.md)."),
    map_target: MapTarget = 0.80,
    map_neighbour: MapNeighbour = 0.15,
    map_floor: MapFloor = 0.05,
    map_radius: MapRadius = 1,
    lora: bool = typer.Option(False, "--lora/--full", help="LoRA on the language model's linear layers (never the vision tower), or full fine-tuning (default)."),
    lora_rank: int = typer.Option(16, "--lora-rank", help="LoRA rank."),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 weights and autocast (GPUs)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Non-reentrant activation checkpointing."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine schedule; 1e-3 suits the tiny models, ~1e-5 full fine-tuning of 7B models)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Per-device batch size."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Gradient accumulation steps."),
    steps: int = typer.Option(600, "--steps", help="Optimizer steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the model's data order and initialisation."),
    eval_every: int = typer.Option(0, "--eval-every", help="Also evaluate every this many steps (0: before and after only)."),
    save_every: int = typer.Option(200, "--save-every", help="Checkpoint every this many steps (for --resume)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Truncate sequences (default: never; a cut image is refused)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest complete checkpoint (same options; damaged or unfinished checkpoints are removed, saying so)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    workers: Workers = ALL_CORES,
    backend: str = typer.Option("auto", "--klal-backend", help="The KLAL op: auto (Triton kernels on CUDA), triton, torch."),
) -> None:
    """Fine-tune a VLM with L = L_NTP + lambda * L_KLAL (docs/training.md). With no options: the tiny
    default model on 2,000 generated grid-patch rows, on the CPU, in a few minutes."""
    from ..train.run import TrainOptions, train as run_train

    out = out_path(out_text)
    opts = TrainOptions(
        model=model, data=data, task=task, n=n, difficulty=difficulty, canvas=parse_canvas(canvas) if canvas else None, split=split,
        eval_n=eval_n, out=str(out), klal=klal, lam=lam, layers=layers, query=query,
        map_params=dict(target=map_target, neighbour=map_neighbour, floor=map_floor, radius=map_radius), lora=lora, lora_rank=lora_rank,
        bf16=bf16, gradient_checkpointing=gradient_checkpointing, learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum,
        steps=steps, seed=seed, eval_every=eval_every, save_every=save_every, max_length=max_length, resume=resume,
        overwrite=overwrite, workers=workers, backend=backend,
    )  # fmt: skip
    command = "linebench " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("linebench") else "linebench train"
    result = run_train(opts, command=command, log=lambda m: err_console.print(Text(m), soft_wrap=True))
    from ..evaluate.diagnostics import layer_mean

    b, a = result["before"], result["after"]
    out_console.print(Text(f"accuracy {b.get('accuracy', float('nan')):.3f} -> {a['accuracy']:.3f} on {a['rows']} held-out rows; "
                           f"attention ratio (target / visual, mean over layers) {layer_mean(b, 'ratio'):.3f} -> {layer_mean(a, 'ratio'):.3f}; "
                           f"KL {layer_mean(b, 'kl'):.3f} -> {layer_mean(a, 'kl'):.3f}"), soft_wrap=True)
    if a.get("diagnostics", {}).get("rows"):
        from ..evaluate.diagnostics import describe

        out_console.print(Text(f"after: {describe(a['diagnostics'])}"), soft_wrap=True)
    out_console.print(Text(f"wrote {result['out']}: metrics.jsonl, eval.json, loss.png, accuracy.png, attention.png, model/"), soft_wrap=True)
