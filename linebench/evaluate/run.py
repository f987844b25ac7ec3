"""`linebench eval`: run a VLM over a benchmark, stream its answers, score them, report.

`evaluate_folder(EvalOptions(...))` is the command as a function. DATA is a linebench folder or a
Hub id in the user's cache; the model runs through the Hugging Face backend (a local checkpoint:
`AutoModelForImageTextToText` + `AutoProcessor`, batched greedy generation with its chat template,
attention diagnostics with `--attention`) or any OpenAI-compatible server (`--backend openai`).
The run folder holds:

  run.json          what was asked of whom: data, split, rows, model, backend, prompt, settings
  predictions.jsonl one line per answered row (id, prediction, latency, tokens, model), appended as
                    answers arrive: a killed run resumes where it stopped and asks no row twice
  score.json/.md    `linebench score` of those rows: overall, per split / level / knob, 95% intervals
  attention.json    (--attention) per layer and level: KL(P || Q) and the target/visual ratio
  *.png, report.html the pictures and one self-contained page with all of it
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError

BACKENDS = ("hf", "openai")
DEFAULT_SUFFIX = ""  # the row's question is the whole prompt by default: it already says how to answer


@dataclass
class EvalOptions:
    data: str
    model: str
    backend: str | None = None  # default: hf for a local/cached checkpoint or a tiny model, openai with --base-url
    split: str = "test"
    limit: int | None = None
    out: str | None = None
    batch_size: int = 8
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16
    device: str = "auto"  # auto, cpu, cuda, cuda:N, or "device_map" for device_map="auto"
    max_new_tokens: int = 32
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    temperature: float = 0.0
    timeout_s: float = 60.0
    retries: int = 5
    prompt_suffix: str = DEFAULT_SUFFIX
    system: str | None = None
    attention: bool = False
    overlays: int = 6
    force: bool = False

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}")
        for name in ("batch_size", "max_new_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UsageError(f"--dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.retries < 0 or self.timeout_s <= 0 or self.temperature < 0:
            raise UsageError("--retries must be >= 0, --timeout > 0 and --temperature >= 0")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip("/")).strip("-")[-60:] or "model"


def resolve_data(data: str) -> Path:
    """A linebench folder: the path itself, or a dataset Hub id from the user's cache (no download)."""
    path = Path(data).expanduser()
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise UsageError(f"{data}: not a linebench folder (no manifest.json)")
        return path
    if data.count("/") != 1 or path.exists():
        raise UsageError(f"{data}: no such folder, and not a dataset Hub id (ORG/NAME)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(data, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UsageError(f"{data}: not in your Hugging Face cache (linebench eval never downloads; run `hf download {data} --repo-type dataset`)") from None
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{data}: the cached snapshot has no manifest.json (not a linebench dataset)")
    return folder


def load_rows(folder: Path, split: str, limit: int | None, decode: bool):
    from datasets import Image, load_dataset

    from ..annotate import as_rows, is_maps_folder

    try:
        ds = load_dataset(str(folder), split=split)
    except ValueError as e:
        raise UsageError(f"{folder}: {str(e).splitlines()[0][:200]}") from None
    if is_maps_folder(folder):  # real grounding data with maps (`linebench maps`): question, answer, task from its options
        ds = as_rows(ds, folder)
    for col in ("id", "image", "question", "answer"):
        if col not in ds.column_names:
            raise UsageError(f"{folder}: split {split!r} has no {col!r} column (a linebench dataset has id, image, question, answer)")
    if not decode:
        ds = ds.cast_column("image", Image(decode=False))
    n = len(ds) if limit is None else min(limit, len(ds))
    return [ds[i] for i in range(n)]


def _identity(opts: EvalOptions, folder: Path, rows) -> dict[str, Any]:
    ids = [r["id"] for r in rows]
    return {
        "data": opts.data, "split": opts.split, "rows": len(ids), "rows_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "model": opts.model, "backend": opts.backend, "prompt_suffix": opts.prompt_suffix, "system": opts.system,
        "max_new_tokens": opts.max_new_tokens, "temperature": opts.temperature,
        **({"base_url": opts.base_url} if opts.backend == "openai" else {"dtype": opts.dtype}),
    }  # fmt: skip


def _prepare(out: Path, identity: dict[str, Any], force: bool) -> None:
    run = out / "run.json"
    if run.is_file():
        try:
            theirs = json.loads(run.read_text()).get("identity")
        except ValueError:
            theirs = None
        if theirs == identity:
            return  # the same run: resume
        if not force:
            diff = sorted(k for k in identity if (theirs or {}).get(k) != identity[k])
            raise UsageError(f"{out} holds another evaluation (different {', '.join(diff) or 'settings'}); choose another --out or pass --force")
        for f in out.iterdir():
            if f.is_file():
                f.unlink()
    elif out.exists() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out} is not empty and holds no linebench evaluation; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(run, {"identity": identity, "linebench": _version()})


def _version() -> str:
    from .. import __version__

    return __version__


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def answered(path: Path) -> set[str]:
    """Ids already in predictions.jsonl; a line cut by a kill is dropped (the file truncated to the
    last complete line), so the row is asked again and nothing half-written stays."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    done = set()
    for line in data[:end].splitlines():
        try:
            done.add(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            continue
    return done


class _Writer:
    def __init__(self, path: Path):
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.fh.flush()  # a killed process loses at most the line being written

    def close(self) -> None:
        self.fh.close()


def _load_hf(opts: EvalOptions):
    import torch

    from ..train import tiny
    from ..train.run import resolve_model

    folder = resolve_model(opts.model)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(opts.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if opts.device == "device_map":
        kwargs["device_map"] = "auto"
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    except ValueError as e:
        raise UsageError(f"--model {opts.model}: not a vision-language model transformers can load ({str(e).splitlines()[0][:160]})") from None
    if opts.device != "device_map":
        device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device)
    model.eval()
    processor = tiny.load_processor(folder) if tiny.is_tiny(folder) else AutoProcessor.from_pretrained(folder)
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def evaluate_folder(opts: EvalOptions, progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `linebench eval` (see the module docstring); returns the summary printed by the CLI."""
    opts.check()
    if opts.backend is None:
        opts.backend = "openai" if opts.base_url else "hf"
    if opts.backend == "openai" and not opts.base_url:
        raise UsageError("--backend openai needs --base-url (e.g. http://localhost:8000/v1 for vLLM)")
    if opts.backend == "hf" and opts.base_url:
        raise UsageError("--base-url is for --backend openai")
    if opts.attention and opts.backend != "hf":
        raise UsageError("--attention needs the model's forward pass: --backend hf")
    folder = resolve_data(opts.data)
    rows = load_rows(folder, opts.split, opts.limit, decode=opts.backend == "hf")
    out = Path(opts.out) if opts.out else Path("runs") / "eval" / f"{_slug(opts.model)}--{_slug(opts.data)}--{opts.split}"
    backend = None
    if opts.backend == "openai":  # checks the key before anything is written
        from .openai_backend import OpenAIBackend, OpenAISettings

        backend = OpenAIBackend(OpenAISettings(
            model=opts.model, base_url=opts.base_url, api_key_env=opts.api_key_env, temperature=opts.temperature,
            max_tokens=opts.max_new_tokens, timeout_s=opts.timeout_s, retries=opts.retries, system=opts.system,
        ))  # fmt: skip
        hf = None
    else:
        hf = _load_hf(opts)
    identity = _identity(opts, folder, rows)
    _prepare(out, identity, opts.force)
    preds_path = out / "predictions.jsonl"
    done = answered(preds_path)
    todo = [r for r in rows if r["id"] not in done]
    if done:
        log(f"resuming {out}: {len(done)} of {len(rows)} rows already answered")
    writer = _Writer(preds_path)
    settings = {"backend": opts.backend, "model": opts.model, "temperature": opts.temperature, "max_new_tokens": opts.max_new_tokens}
    count = len(rows) - len(todo)
    if progress:
        progress(count, len(rows))
    t0 = time.perf_counter()
    try:
        if backend is not None:
            from .openai_backend import row_png

            prompts = {r["id"]: r["question"] + opts.prompt_suffix for r in todo}
            with ThreadPoolExecutor(max_workers=opts.concurrency) as pool:
                futures = {pool.submit(backend.ask, prompts[r["id"]], row_png(r)): r["id"] for r in todo}
                try:
                    for fut in as_completed(futures):
                        text, meta = fut.result()
                        writer.write({"id": futures[fut], "prediction": text, **meta, **settings})
                        count += 1
                        if progress:
                            progress(count, len(rows))
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        else:
            from .hf import generate_batches

            model, processor = hf
            for chunk, answers, metas in generate_batches(
                model, processor, todo, batch_size=opts.batch_size, max_new_tokens=opts.max_new_tokens, question_suffix=opts.prompt_suffix, system=opts.system,
            ):  # fmt: skip
                for r, a, meta in zip(chunk, answers, metas):
                    writer.write({"id": r["id"], "prediction": a, **meta, **settings})
                count += len(chunk)
                if progress:
                    progress(count, len(rows))
    finally:
        writer.close()
    elapsed = time.perf_counter() - t0
    from ..fsio import write_outputs
    from ..score import score

    report = score(folder, preds_path, only_ids={r["id"] for r in rows})
    write_outputs({out / "score.json": report.to_json(), out / "score.md": report.to_markdown()})
    preds, correct = _judged(rows, preds_path)
    from .report import write_gallery, write_report

    write_gallery(out, rows, preds, correct)
    attention = _attention(hf, rows, out, opts, preds, correct) if opts.attention else None
    write_report(out)
    return {"out": str(out), "rows": len(rows), "asked": len(todo), "seconds": elapsed, "accuracy": report.overall.accuracy,
            "unparseable": report.unparseable, "attention": attention}  # fmt: skip


def _judged(rows, preds_path: Path) -> tuple[dict[str, str], dict[str, bool]]:
    """Each row's prediction and whether it is right (linebench's parsers; unparseable = wrong)."""
    from ..score import row_correct

    preds: dict[str, str] = {}
    for line in preds_path.read_text().splitlines():
        rec = json.loads(line)
        preds.setdefault(rec["id"], str(rec["prediction"]))
    correct = {}
    for r in rows:
        if r["id"] in preds:
            correct[r["id"]] = bool(row_correct(r, preds[r["id"]]))
    return preds, correct


def _attention(hf, rows, out: Path, opts: EvalOptions, preds: dict[str, str], correct: dict[str, bool]) -> dict[str, Any]:
    """attention.json (per layer and level) and the overlay pictures of a few correct and wrong rows."""
    import numpy as np

    from .hf import attention_metrics

    model, processor = hf
    right = [r["id"] for r in rows if correct.get(r["id"])]
    wrong = [r["id"] for r in rows if not correct.get(r["id"])]
    keep = set(right[: opts.overlays // 2] + wrong[: opts.overlays - min(len(right), opts.overlays // 2)])
    att = attention_metrics(model, processor, rows, batch_size=opts.batch_size, keep=keep)
    by_level: dict[str, dict[str, list[float]]] = {}
    for d in att["rows_detail"]:
        lv = by_level.setdefault(str(d.get("difficulty")), {"kl": [], "ratio": []})
        lv["kl"].append(d["kl"])
        lv["ratio"].append(d["ratio"])
    layers = [a["layer"] for a in att["layers"]]
    result = {
        "profile": att["profile"],
        "query": "last-answer (the query that produces the answer's last token, on the prompt + the gold answer)",
        "layers": att["layers"],
        "by_level": {
            lv: [{"layer": layer, "kl": float(np.mean([v[i] for v in d["kl"]])), "ratio": float(np.nanmean([v[i] for v in d["ratio"]]))} for i, layer in enumerate(layers)]
            for lv, d in sorted(by_level.items())
        },
    }
    _write_json(out / "attention.json", result)
    from .report import attention_plots, overlays

    attention_plots(result, out)
    by_id = {r["id"]: r for r in rows}
    overlays([(by_id[i], att["attention"][i], i in right, preds.get(i, "")) for i in att["attention"]], att["profile"], out)
    return result
