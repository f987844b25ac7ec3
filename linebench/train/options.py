"""`TrainOptions`: every option of `linebench train`, and the checks that need nothing but them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UsageError
from ..fsio import check_path_text


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
