"""`linebench eval`: run a VLM over a benchmark and score it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from ..errors import UsageError
from .base import app, err_console, fail, friendly, lazy_progress, out_console, out_path


@app.command(name="eval")
@friendly
def eval_(
    data: Optional[str] = typer.Argument(None, help="A linebench folder, or a dataset Hub id in your cache (linebench/tracing)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="hf: a checkpoint folder, a cached Hub id or tiny; openai: the served model's name."),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf (default for a local or cached checkpoint) or openai (default with --base-url)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: test, or the folder's only split).", show_default=False),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N rows only."),
    out_text: Optional[str] = typer.Option(None, "--out", "-o", help="Run folder (default runs/eval/<model>--<data>--<split>); locked while the run lasts."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="hf: rows per generate() call."),
    dtype: str = typer.Option("auto", "--dtype", help="hf: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16."),
    device: str = typer.Option("auto", "--device", help="hf: auto, cpu, cuda, cuda:N, or device_map (device_map='auto' across GPUs)."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer generated."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: the server, e.g. http://localhost:8000/v1 (vLLM, SGLang, llama.cpp server, hosted APIs)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai: the environment variable holding the API key (the key itself is never printed or written)."),
    concurrency: int = typer.Option(8, "--concurrency", help="openai: requests in flight."),
    temperature: float = typer.Option(0.0, "--temperature", help="openai: sampling temperature (0: greedy, comparable across models)."),
    timeout: float = typer.Option(60.0, "--timeout", help="openai: seconds per request before it is retried."),
    retries: int = typer.Option(5, "--retries", help="openai: retries of a row on 429, 5xx, timeouts, dropped connections and replies without an answer (exponential backoff, Retry-After honoured); then the row is reported as failed and a rerun asks it again."),
    backoff: float = typer.Option(0.5, "--backoff", help="openai: seconds before a row's first retry, doubled for each further one (up to 8 s)."),
    prompt_suffix: str = typer.Option("", "--prompt-suffix", help="Text appended to every question (default none: the questions say how to answer)."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for every request."),
    attention: bool = typer.Option(False, "--attention", help="hf: attention diagnostics per layer and level, and overlays (image | attention | ground truth)."),
    force: bool = typer.Option(False, "--force", help="Reuse an --out folder that holds another evaluation."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="Put these eval folders side by side (no model run): --compare DIR --compare DIR ..."),
) -> None:
    """Run a VLM over a benchmark and score it: local HF checkpoints (with attention diagnostics) or
    any OpenAI-compatible server; predictions stream to disk and a killed run resumes (docs/eval.md)."""
    if compare:
        from ..evaluate.report import compare as run_compare

        target = out_path(out_text) or Path("runs") / "compare"
        path = run_compare([str(d) for d in compare], target)
        out_console.print(Text(path.read_text()), soft_wrap=True)
        out_console.print(Text(f"wrote {target}: compare.md, compare.png, compare.html"), soft_wrap=True)
        return
    if data is None or model is None:
        raise UsageError("linebench eval needs DATA and --model (or --compare DIR ...)")
    from ..evaluate.run import EvalOptions, evaluate_folder, failure_line

    out = out_path(out_text)
    opts = EvalOptions(
        data=data, model=model, backend=backend, split=split, limit=limit, out=str(out) if out else None, batch_size=batch_size,
        dtype=dtype, device=device, max_new_tokens=max_new_tokens, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
        temperature=temperature, timeout_s=timeout, retries=retries, backoff_s=backoff, prompt_suffix=prompt_suffix, system=system,
        attention=attention, force=force,
    )  # fmt: skip
    with lazy_progress(f"{model}") as report:
        res = evaluate_folder(opts, progress=report, log=lambda m: err_console.print(Text(m), soft_wrap=True))
    acc = res["accuracy"]
    out_console.print(Text(f"accuracy {100 * acc:.1f}% on {res['scored']} of {res['rows']} rows ({res['asked']} asked now, {res['unparseable']} unparseable)"), soft_wrap=True)
    if res["attention"]:
        layers = res["attention"]["layers"]
        ratios = ", ".join(f"{r['ratio']:.2f}" for r in layers)
        out_console.print(Text(f"attention ratio (target / visual) per layer: {ratios}"), soft_wrap=True)
    out_console.print(Text(f"wrote {res['out']}: predictions.jsonl, score.json, score.md, report.html"), soft_wrap=True)
    if res["failed"]:  # the run is incomplete: exit 1 (2 is for bad input)
        fail(failure_line(res["failed"], res["rows"]), 1)
