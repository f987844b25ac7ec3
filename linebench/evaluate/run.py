"""`linebench eval`: run a VLM over a benchmark, stream its answers, score them, report.

`evaluate_folder(EvalOptions(...))` is the command as a function. DATA is a linebench folder or a
Hub id in the user's cache; the model runs through the Hugging Face backend (a local checkpoint:
`AutoModelForImageTextToText` + `AutoProcessor`, batched greedy generation with its chat template,
attention diagnostics with `--attention`) or any OpenAI-compatible server (`--backend openai`).
The run folder holds:

  run.json          what was asked of whom: data, split, rows, model, backend, prompt, settings (not
                    the server's address: the same model on a restarted server is the same run)
  predictions.jsonl one line per answered row (id, prediction, latency, tokens, model), appended as
                    answers arrive: a killed or interrupted run resumes where it stopped and asks no
                    row twice; a row the server gave no answer for is not stored (asked again by a
                    rerun); every line is one `linebench score` accepts
  score.json/.md    `linebench score` of those rows: overall, per split / level / knob, 95% intervals
  attention.json    (--attention) per layer and level: KL(P || Q) and the target/visual ratio
  *.png, report.html the pictures and one self-contained page with all of it

The folder is locked for the run (the lock `linebench generate` takes): a second eval into it stops
with one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..folder import LOCK
from ..writer import locked_output
from ..errors import Interrupted, UsageError
from ..fsio import atomic_write, check_path_text, write_error
from ..models import cached_snapshot, load_processor, resolve_model
from ..score import MAX_LINE, parse_line, storable_prediction

BACKENDS = ("hf", "openai")
RUN_JSON = "run.json"  # what marks an eval folder (the lock file stays beside it: removing it would race)
DEFAULT_SUFFIX = ""  # the row's question is the whole prompt by default: it already says how to answer


@dataclass
class EvalOptions:
    data: str
    model: str
    backend: str | None = None  # default: hf for a local/cached checkpoint or a tiny model, openai with --base-url
    split: str | None = None  # None: test, or the folder's only split when it has one
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
    backoff_s: float = 0.5  # openai: the wait before a row's first retry, doubled for each further one (up to 8 s)
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
        if not (self.retries >= 0 and self.timeout_s > 0 and self.temperature >= 0 and 0 <= self.backoff_s <= 60):
            raise UsageError("--retries must be >= 0, --timeout > 0, --temperature >= 0 and --backoff within 0..60 s")


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
    folder = cached_snapshot(data, "dataset")
    if folder is None:
        raise UsageError(f"{data}: not in your Hugging Face cache (linebench eval never downloads; run `hf download {data} --repo-type dataset`)")
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{data}: the cached snapshot has no manifest.json (not a linebench dataset)")
    return folder


def folder_splits(folder: Path) -> list[str] | None:
    """The split names manifest.json lists (None if it lists none: load_dataset decides)."""
    try:
        splits = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("splits")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(name) for name in splits] if isinstance(splits, dict) and splits else None


def resolve_split(data: str, folder: Path, split: str | None, log: Callable[[str], None], doing: str = "evaluating") -> str:
    """--split, or by default test, or the folder's only split (said in one line)."""
    available = folder_splits(folder)
    if split is None:
        split = "test"
        if available is not None and split not in available and len(available) == 1:
            split = available[0]
            log(f"{data} has one split, {split!r}: {doing} it (--split names another)")
    if available is not None and split not in available:
        raise UsageError(f"{data} has no split {split!r}; it has {', '.join(available)} (choose one with --split)")
    return split


GLOB = "[]*?"  # datasets reads a local path as a pattern: a folder named with these is not found


def load_split(folder: Path, split: str):
    """One split of a folder as a `datasets.Dataset` (as stored: a maps folder's own columns).
    A missing or unreadable shard, or a path datasets would read as a pattern, is one line."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    if any(c in str(Path(folder).resolve()) for c in GLOB):
        raise UsageError(f"{folder}: the datasets library reads a path with {' '.join(GLOB)} in it as a pattern: rename or move the folder")
    try:
        return load_dataset(str(folder), split=split)
    except (ValueError, FileNotFoundError) as e:  # FileNotFoundError: datasets' DataFilesNotFoundError too
        raise UsageError(f"{folder}: {str(e).splitlines()[0][:200]} (run `linebench verify {folder}`)") from None
    except DatasetGenerationError as e:
        why = str(e.__cause__ or e).splitlines()[0][:160]
        raise UsageError(f"{folder}: a shard is unreadable ({why}); run `linebench verify {folder}`") from None


def load_rows(folder: Path, split: str, limit: int | None, decode: bool):
    from datasets import Image

    from ..annotate import as_rows, is_maps_folder

    ds = load_split(folder, split)
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
    """What makes two runs the same evaluation: the data, the rows, the model and how it is asked.
    Not the server's address: the same model served again on another port resumes."""
    ids = [r["id"] for r in rows]
    return {
        "data": opts.data, "split": opts.split, "rows": len(ids), "rows_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "model": opts.model, "backend": opts.backend, "prompt_suffix": opts.prompt_suffix, "system": opts.system,
        "max_new_tokens": opts.max_new_tokens, "temperature": opts.temperature,
        **({} if opts.backend == "openai" else {"dtype": opts.dtype}),
    }  # fmt: skip


def _prepare(out: Path, identity: dict[str, Any], force: bool) -> None:
    """Start or resume the run in `out` (created and locked by the caller)."""
    run = out / RUN_JSON
    if run.is_file():
        try:
            theirs = json.loads(run.read_text(encoding="utf-8")).get("identity")
        except (ValueError, AttributeError):
            theirs = None
        if isinstance(theirs, dict):
            theirs = {k: v for k, v in theirs.items() if k != "base_url"}  # runs made before the address left the identity
        if theirs == identity:
            return  # the same run: resume
        if not force:
            diff = sorted(k for k in identity if (theirs or {}).get(k) != identity[k])
            raise UsageError(f"{out} holds another evaluation (different {', '.join(diff) or 'settings'}); choose another --out or pass --force")
        for f in out.iterdir():
            if f.is_file() and f.name != LOCK:
                f.unlink()
    elif any(f.name != LOCK for f in out.iterdir()):
        if not force:
            raise UsageError(f"{out} is not empty and holds no linebench evaluation; choose another --out or pass --force")
    _write_json(run, {"identity": identity, "linebench": _version()})


def _version() -> str:
    from ..version import __version__

    return __version__


def _write_json(path: Path, obj: Any) -> None:
    try:
        atomic_write(path, json.dumps(obj, indent=1, default=float) + "\n")
    except OSError as e:
        raise write_error(path, e) from None


def answered(path: Path) -> set[str]:
    """Ids already in predictions.jsonl, in lines `linebench score` accepts; a line cut by a kill is
    dropped (the file truncated to the last complete line), so the row is asked again and nothing
    half-written stays."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    done = set()
    for line in data[:end].split(b"\n"):
        rec = parse_line(line if len(line) <= MAX_LINE else None)
        if isinstance(rec, dict):
            done.add(rec["id"])
    return done


class _Writer:
    """predictions.jsonl, appended a line per answer and flushed at once (a killed process loses at
    most the line being written). The text is kept as `linebench score` reads it
    (score.storable_prediction), and every line is checked with score's own parse_line."""

    def __init__(self, path: Path):
        self.path = path
        self.written = 0
        try:
            self.fh = open(path, "ab")
        except OSError as e:
            raise write_error(path, e) from None

    def write(self, record: dict[str, Any]) -> None:
        record = {**record, "prediction": storable_prediction(str(record["prediction"]))}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        if len(line) > MAX_LINE or not isinstance(parse_line(line), dict):  # pragma: no cover - a bug, not an input
            raise UsageError(f"internal error: a line for {record['id']} that linebench score would not accept")
        try:
            self.fh.write(line)
            self.fh.flush()
        except OSError as e:
            raise write_error(self.path, e) from None
        self.written += 1

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError:  # a full disk at the last flush: the lines before it are on disk
            pass


def _load_hf(opts: EvalOptions):
    import torch
    from transformers import AutoModelForImageTextToText

    folder = resolve_model(opts.model)

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
    return model, load_processor(folder)


def evaluate_folder(opts: EvalOptions, progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `linebench eval` (see the module docstring); returns the summary printed by the CLI, with
    `failed`: id -> why, for the rows the server gave no answer for (not stored; a rerun asks them)."""
    opts.check()
    if opts.backend is None:
        opts.backend = "openai" if opts.base_url else "hf"
    if opts.backend == "openai" and not opts.base_url:
        raise UsageError("--backend openai needs --base-url (e.g. http://localhost:8000/v1 for vLLM)")
    if opts.backend == "hf" and opts.base_url:
        raise UsageError("--base-url is for --backend openai")
    if opts.attention and opts.backend != "hf":
        raise UsageError("--attention needs the model's forward pass: --backend hf")
    if opts.out is not None and not str(opts.out).strip():
        raise UsageError("--out is empty: name a folder")
    folder = resolve_data(opts.data)
    opts.split = resolve_split(opts.data, folder, opts.split, log)
    out = Path(opts.out) if opts.out else Path("runs") / "eval" / f"{_slug(opts.model)}--{_slug(opts.data)}--{opts.split}"
    check_path_text(out, "--out")
    with locked_output(out, markers=(RUN_JSON,)):  # before any work: a second eval into the folder stops here, with one line
        return _evaluate(opts, folder, out, progress, log)


def _evaluate(opts: EvalOptions, folder: Path, out: Path, progress, log) -> dict[str, Any]:
    rows = load_rows(folder, opts.split, opts.limit, decode=opts.backend == "hf")
    backend = hf = None
    if opts.backend == "openai":  # checks the key before anything is written
        from .openai_backend import OpenAIBackend, OpenAISettings

        backend = OpenAIBackend(OpenAISettings(
            model=opts.model, base_url=opts.base_url, api_key_env=opts.api_key_env, temperature=opts.temperature,
            max_tokens=opts.max_new_tokens, timeout_s=opts.timeout_s, retries=opts.retries, system=opts.system, backoff_s=opts.backoff_s,
        ))  # fmt: skip
    else:
        hf = _load_hf(opts)
    _prepare(out, _identity(opts, folder, rows), opts.force)
    preds_path = out / "predictions.jsonl"
    try:
        done = answered(preds_path)
    except OSError as e:
        raise write_error(preds_path, e) from None
    todo = [r for r in rows if r["id"] not in done]
    if done:
        log(f"resuming {out}: {len(done)} of {len(rows)} rows already answered")
    settings = {"backend": opts.backend, "model": opts.model, "temperature": opts.temperature, "max_new_tokens": opts.max_new_tokens}
    writer = _Writer(preds_path)
    failed: dict[str, str] = {}
    before = len(rows) - len(todo)

    def advance(failures: int = 0) -> None:  # rows done by this run: answered, or (openai) given up on
        if progress:
            progress(before + writer.written + failures, len(rows))

    advance()
    t0 = time.perf_counter()
    try:
        if backend is not None:
            from .openai_backend import ask_rows, row_png

            def store(row_id: str, text: str, meta: dict[str, Any]) -> None:
                writer.write({"id": row_id, "prediction": text, **meta, **settings})
                advance(len(failed))

            jobs = [(r["id"], r["question"] + opts.prompt_suffix, row_png(r)) for r in todo]
            ask_rows(backend, jobs, opts.concurrency, store, failed, on_failure=lambda: advance(len(failed)))
        else:
            from .hf import generate_batches

            model, processor = hf
            for chunk, answers, metas in generate_batches(
                model, processor, todo, batch_size=opts.batch_size, max_new_tokens=opts.max_new_tokens, question_suffix=opts.prompt_suffix, system=opts.system,
            ):  # fmt: skip
                for r, a, meta in zip(chunk, answers, metas):
                    writer.write({"id": r["id"], "prediction": a, **meta, **settings})
                advance()
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: what came back is on disk; requests in flight are not waited for
        stored = before + writer.written
        raise Interrupted(
            f"interrupted: {stored} of {len(rows)} rows are answered and stored in {preds_path}; "
            f"run the same command again to ask the other {len(rows) - stored}", getattr(e, "exit_code", 130),
        ) from None  # fmt: skip
    finally:
        writer.close()
    elapsed = time.perf_counter() - t0
    if before + writer.written == 0:
        raise UsageError(f"no row got an answer: {failure_line(failed, len(rows))}")
    from ..fsio import write_outputs
    from ..score import score

    report = score(folder, preds_path, only_ids={r["id"] for r in rows})
    write_outputs({out / "score.json": report.to_json(), out / "score.md": report.to_markdown()})
    preds, correct = _judged(rows, preds_path)
    from .report import write_gallery, write_report

    try:
        write_gallery(out, rows, preds, correct)
        attention = _attention(hf, rows, out, opts, preds, correct) if opts.attention else None
        write_report(out)
    except OSError as e:  # a full disk or a file in the way: one line (the answers are on disk)
        raise write_error(e.filename or out, e, "; the answers are kept: run the same command again to write the report") from None
    return {"out": str(out), "rows": len(rows), "asked": len(todo), "seconds": elapsed, "accuracy": report.overall.accuracy,
            "scored": report.scored, "unparseable": report.unparseable, "failed": failed, "attention": attention}  # fmt: skip


def failure_line(failed: dict[str, str], rows: int) -> str:
    """One line on the rows without an answer: how many, why (counted), the first ids, what to do."""
    reasons = Counter(why.rsplit(", after ", 1)[0] for why in failed.values())
    why = "; ".join(f"{reason} x{n}" for reason, n in reasons.most_common(4)) + ("; ..." if len(reasons) > 4 else "")
    first = ", ".join(list(failed)[:3]) + (", ..." if len(failed) > 3 else "")
    return (f"{len(failed)} of {rows} rows got no answer from the server ({why}; {first}); nothing is stored for them: "
            "run the same command again to ask them again")  # fmt: skip


def _judged(rows, preds_path: Path) -> tuple[dict[str, str], dict[str, bool]]:
    """Each row's prediction, as `linebench score` reads the file (the last line of an id counts),
    and whether it is right (linebench's parsers; unparseable = wrong)."""
    from ..score import read_predictions, row_correct

    preds = {k: str(v) for k, v in read_predictions(preds_path).by_id.items()}
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
