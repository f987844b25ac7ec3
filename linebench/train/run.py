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

The folder discipline is the data commands' (linebench.dataset.locked_output): every option, the
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
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import Interrupted, LinebenchError, UsageError
from ..fsio import atomic_write, check_path_text, why
from ..models import resolve_model
from . import tiny as tiny_models

SUPPORTED = ("llava", "qwen2_5_vl", "qwen2_vl")
LORA_TARGETS = r".*\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"  # never the vision tower
RUN_FILE = "run.json"
FINAL = ("model", "eval.json", "predictions.jsonl", "loss.png", "accuracy.png", "attention.png")  # written once training is done
OWNED = (RUN_FILE, "data", "metrics.jsonl", "checkpoints", *FINAL)  # all a run writes (and takes back, or --overwrite replaces)
UNCOMPARED = ("out", "resume", "overwrite", "workers")  # options a resume may change: they do not change the run


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
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite exclude each other")
        check_path_text(self.out, "--out")
        from ..maps import MapParams

        unknown = sorted(set(self.map_params) - set(MapParams.__dataclass_fields__))
        if unknown:
            raise UsageError(f"unknown map parameter {unknown[0]!r} (map parameters: target, neighbour, floor, radius)")
        radius = self.map_params.get("radius", 1)
        if isinstance(radius, bool) or int(radius) != radius:
            raise UsageError(f"--map-radius must be a whole number of tokens, got {radius!r}")
        MapParams(**self.map_params)  # the masses: each >= 0, summing to 1
        if self.data is None and self.split == "test":
            raise UsageError("--split test: generated data holds its test split out for evaluation; train on train, validation or ood")


# --------------------------------------------------------------------------- model


def weights_problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder's weights (None: every weights file is there and its
    header and length are whole), without loading them: safetensors files are opened (a truncated
    file fails), torch files must be whole zip archives."""
    folder = Path(folder)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                files = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                return f"{index} is damaged ({type(e).__name__})"
            break
    else:
        files = [n for n in ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin") if (folder / n).is_file()][:1]
    if not files:
        return "it has no weights (model.safetensors or pytorch_model.bin)"
    for name in files:
        problem = _file_problem(folder / name)
        if problem:
            return problem
    return None


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "np"):
                pass
        except Exception as e:  # SafetensorError: a truncated or overwritten file
            return f"{path.name} is damaged ({str(e).splitlines()[0][:120]})"
        return None
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: a cut one has no directory at its end
        return f"{path.name} is damaged (not a whole torch file)"
    return None


def check_model(name: str, folder: Path, layers: str) -> None:
    """Before any work: the model folder's config is JSON of a supported model, its weights are
    whole, and --klal-layers fits its layer count."""
    from .capture import CaptureError, parse_layers

    cfg_file = Path(folder) / "config.json"
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--model {name}: {cfg_file} is not valid JSON ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type not in SUPPORTED:
        raise UsageError(f"{folder}: model type {model_type!r} is not supported for training (supported: LLaVA-1.5, Qwen2-VL, Qwen2.5-VL)")
    problem = weights_problem(folder)
    if problem:
        raise UsageError(f"--model {name}: {problem}")
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(folder)
        count = cfg.get_text_config().num_hidden_layers
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"--model {name}: cannot read its config ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    try:
        parse_layers(layers, count)
    except CaptureError as e:
        raise UsageError(f"--klal-layers: {e}") from None


def load_model(folder: Path, *, bf16: bool, device: str | None = None):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    cfg = AutoConfig.from_pretrained(folder)
    if cfg.model_type not in SUPPORTED:
        raise UsageError(f"{folder}: model type {cfg.model_type!r} is not supported for training (supported: LLaVA-1.5, Qwen2-VL, Qwen2.5-VL)")
    # a model loaded from a string is float32 unless dtype is given: say it
    dtype = torch.bfloat16 if bf16 else torch.float32
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    except (OSError, ValueError) as e:  # weights that do not fit the config, a file that changed since it was checked
        raise UsageError(f"{folder}: cannot load the model ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    try:
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
    except (OSError, ValueError, TypeError) as e:  # no tokenizer, a damaged tokenizer or processor file
        raise UsageError(f"{folder}: cannot load its processor ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


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


# --------------------------------------------------------------------------- outputs


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from ..version import __version__

    out = {"linebench": __version__, "python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


FLAGS = {"learning_rate": "--lr", "lam": "--lambda", "layers": "--klal-layers", "query": "--klal-query", "backend": "--klal-backend",
         "map_params": "--map-target/--map-neighbour/--map-floor/--map-radius", "klal": "--klal/--no-klal", "lora": "--lora/--full"}


def _local_path(value: str | None) -> str | None:
    """A path as an absolute, resolved one when it names something on disk (else as given: a Hub id)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def _run_options(opts: TrainOptions) -> dict[str, Any]:
    """The options run.json records, local paths resolved (a resume may spell them differently)."""
    mine = {k: v for k, v in asdict(opts).items() if k not in ("resume", "overwrite", "workers")}
    mine["out"] = str(Path(opts.out).expanduser().resolve())
    mine["data"] = _local_path(opts.data)
    mine["model"] = opts.model if opts.model in tiny_models.TINY else _local_path(opts.model)
    return json.loads(json.dumps(mine, default=str))


def _differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The options that change the run and differ (paths compared resolved; out, resume, overwrite and
    workers never count)."""
    theirs = dict(theirs)
    for key in ("data", "model"):
        if isinstance(theirs.get(key), str) and not (key == "model" and theirs[key] in tiny_models.TINY):
            theirs[key] = _local_path(theirs[key])
    diff = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in UNCOMPARED and mine.get(key) != theirs.get(key):
            diff.append(f"{FLAGS.get(key, '--' + key.replace('_', '-'))} {json.dumps(mine.get(key))} here, {json.dumps(theirs.get(key))} in run.json")
    return diff


def _check_out(out: Path, opts: TrainOptions) -> str:
    """What to do with --out, without touching it: 'fresh', 'overwrite' or 'resume' (or one line
    saying why not)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    run_file = out / RUN_FILE
    dataset = next((n for n in ("manifest.json", ".linebench-run.json") if os.path.lexists(out / n)), None)
    if dataset:  # --overwrite would remove its data/
        raise UsageError(f"--out {out} is a linebench dataset folder (it has {dataset}), not a train run; choose another --out")
    if not os.path.lexists(run_file):
        if opts.resume:
            raise UsageError(f"--resume: {out} holds no run to resume")
        stray = [name for name in OWNED if os.path.lexists(out / name)]
        if stray and not opts.overwrite:
            raise UsageError(f"{out} holds {stray[0]} but no {RUN_FILE} (not a linebench train run); choose another --out, or --overwrite to replace it")
        return "overwrite" if stray else "fresh"
    if opts.overwrite:
        return "overwrite"
    if not opts.resume:
        raise UsageError(f"{out} already holds a run ({RUN_FILE}); pass --resume to continue it or --overwrite to start over")
    try:
        theirs = json.loads(run_file.read_text(encoding="utf-8"))["options"]
        if not isinstance(theirs, dict):
            raise TypeError("options is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: {run_file} is damaged ({type(e).__name__}), so the run cannot be resumed; --overwrite starts it over") from None
    diff = _differences(_run_options(opts), theirs)
    if diff:
        raise UsageError(f"--resume: {out} holds a run with other options ({'; '.join(diff)}); rerun with the same options, or --overwrite")
    return "resume"


def _take_back(out: Path) -> None:
    """Remove everything a run writes in `out` (and nothing else)."""
    for name in OWNED:
        _remove(out / name)
    for tmp in out.glob(".*.tmp"):
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:  # already gone
            pass


def checkpoint_problem(ckpt: Path) -> str | None:
    """What makes a checkpoint unusable for a resume (None: it is complete). transformers writes
    trainer_state.json last, after the weights, optimizer, scheduler and RNG states; the weights
    must load and every torch file be whole."""
    state_file = ckpt / "trainer_state.json"
    if not state_file.is_file():
        return "unfinished (no trainer_state.json)"
    try:
        int(json.loads(state_file.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its trainer_state.json is damaged"
    problem = weights_problem(ckpt)
    if problem:
        return problem
    names = [c.name for c in ckpt.iterdir()]
    if not any(n.startswith(("optimizer", "global_step")) for n in names):
        return "no optimizer state"
    for name in sorted(names):
        if name.endswith((".pt", ".pth")):
            problem = _file_problem(ckpt / name)
            if problem:
                return problem
    return None


def _checkpoints(folder: Path) -> list[Path]:
    """transformers' checkpoint-N folders, oldest first."""
    from transformers.trainer_utils import sort_checkpoints

    return [Path(p) for p in sort_checkpoints(str(folder))] if folder.is_dir() else []


def complete_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder` (nothing is changed)."""
    return next((c for c in reversed(_checkpoints(folder)) if checkpoint_problem(c) is None), None)


def _resume_point(folder: Path, log: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from: the newest complete one. Unfinished or damaged ones are
    removed, each said in one line, so the Trainer (get_last_checkpoint, rotation) sees only good ones."""
    from transformers.trainer_utils import get_last_checkpoint

    for ckpt in reversed(_checkpoints(folder)):
        problem = checkpoint_problem(ckpt)
        if problem:
            log(f"--resume: removed {ckpt} ({problem})")
            shutil.rmtree(ckpt)
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        log(f"--resume: no complete checkpoint in {folder}: training from step 0 again (the same run)")
        return None
    log(f"--resume: going on from {last}")
    return Path(last)


def _start(out: Path, opts: TrainOptions, command: str, mode: str, log: Callable[[str], None]) -> Path | None:
    """Under the lock: set the folder up for the run -> the checkpoint to resume from (or None)."""
    if mode == "overwrite":
        _take_back(out)
    if mode != "resume":
        atomic_write(out / RUN_FILE, json.dumps({"command": command, "options": _run_options(opts), "versions": _versions()}, indent=1, default=str) + "\n")
        return None
    metrics = _Metrics(out / "metrics.jsonl")
    rows = metrics.read(log)  # a log damaged before its last line stops here, with nothing changed
    last = _resume_point(out / "checkpoints", log)
    for name in FINAL:  # a resumed run writes them again at its end
        _remove(out / name)
    for tmp in out.glob(".*.tmp"):
        _remove(tmp)
    metrics.keep_until(_checkpoint_step(last), rows)
    return last


def _checkpoint_step(ckpt: Path | None) -> int | None:
    if ckpt is None:
        return None
    return int(json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def _kept(out: Path, fresh: bool) -> str:
    """After a failure: keep a resumable run (a complete checkpoint), else take back what this run wrote."""
    ckpt = complete_checkpoint(out / "checkpoints")
    if ckpt is not None:
        return f"{ckpt.name} is kept: run the same command with --resume to go on from it"
    if fresh:
        _take_back(out)
        return f"nothing was kept in {out}"
    return f"no checkpoint yet: run the same command with --resume to train {out} from step 0"


class _Metrics:
    """metrics.jsonl: appended line by line (a killed run keeps what it logged)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    def read(self, log: Callable[[str], None] = print) -> list[tuple[str, dict[str, Any]]]:
        """(line, record) of every line; a half-written last line (a run killed while writing it) is
        left out, said in one line; a damaged line before it is one line and exit 2."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UsageError(f"cannot read {self.path}: {why(e)}") from None
        lines = text.split("\n")
        rows = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                if i == len(lines) - 1:  # no newline after it: cut off mid-write
                    log(f"--resume: dropped the half-written last line of {self.path}")
                    continue
                raise UsageError(f"{self.path}: line {i + 1} is damaged (not a JSON object), so the run's log cannot be continued; --overwrite starts it over") from None
            rows.append((line, rec))
        return rows

    def keep_until(self, step: int | None, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """For a resume from the checkpoint of `step` (None: from step 0): of the log's `rows` (read()),
        keep the evaluation before training and the lines of steps up to the checkpoint's, drop the
        rest (they are logged again)."""
        kept = []
        for line, rec in rows:
            ev = rec.get("eval")
            if isinstance(ev, dict):
                keep = step is not None and (ev.get("label") == "before" or (ev.get("label") == "during" and _int(ev.get("step")) <= step))
            else:
                keep = step is not None and _int(rec.get("step")) <= step and "train_runtime" not in rec  # the end-of-training summary is written again
            if keep:
                kept.append(line + "\n")
        atomic_write(self.path, "".join(kept))

    def evals(self, label: str) -> list[dict[str, Any]]:
        return [r["eval"] for _, r in self.read(_quiet) if isinstance(r.get("eval"), dict) and r["eval"].get("label") == label]

    def put_first(self, record: dict[str, Any]) -> None:
        rest = [line + "\n" for line, _ in self.read(_quiet)]
        atomic_write(self.path, json.dumps(record, default=float) + "\n" + "".join(rest))


def _int(value: Any) -> float:
    return value if isinstance(value, int) else math.inf


def whole_run_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every step of the run, from the Trainer's log history (which a
    resume restores from the checkpoint): each logged loss weighted by the steps it covers. The same
    for a resumed and an uninterrupted run (transformers' own train_loss covers one train() call)."""
    total, last = 0.0, 0
    for h in history:
        if "loss" in h and isinstance(h.get("step"), int) and h["step"] > last:
            total += h["loss"] * (h["step"] - last)
            last = h["step"]
    return total / last if last else None


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
            _check_out(out, opts)
            stack.enter_context(locked_output(out, markers=(RUN_FILE,)))
            mode = _check_out(out, opts)  # again, now that no other run can write there
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
            last = _start(out, opts, command, mode, log)  # run.json written, or the resume's checkpoint chosen and its log trimmed
        except OSError as e:
            if fresh:
                _take_back(out)
            raise UsageError(f"cannot write {e.filename or out}: {why(e)}") from None
        try:
            return _run(opts, state, main, out, folder, canvas, data, log, last)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through the CLI
            raise Interrupted(f"interrupted; {_kept(out, fresh)}", getattr(e, "exit_code", 130)) from None
        except LinebenchError as e:
            e.args = (f"{e.args[0] if e.args else e}; {_kept(out, fresh)}", *e.args[1:])
            raise
        except OSError as e:  # a full disk, a folder made read-only under the run
            raise UsageError(f"{why(e)} ({e.filename or out}); {_kept(out, fresh)}") from None
        except BaseException:
            _kept(out, fresh)  # a bug: its traceback, and the folder as the principles say
            raise


def _run(opts: TrainOptions, state, main: bool, out: Path, folder: Path, canvas, data, log, last: Path | None) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig

    from ..evaluate.diagnostics import describe, layer_mean
    from ..evaluate.hf import evaluate
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
    try:
        if last is not None and _checkpoint_step(last) >= opts.steps:
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
    atomic_write(out / "eval.json", json.dumps(summary, indent=1, default=float) + "\n")
    try:
        from .plots import plot_run

        plot_run(out)
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
    return {"before": before, "after": after, "out": str(out)}


def _finished_training(trainer, last: Path, metrics: _Metrics | None) -> dict[str, Any]:
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
