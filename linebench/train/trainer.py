"""`KLALTrainer`: TRL's `SFTTrainer` with the KL attention loss added to its loss.

    trainer = KLALTrainer(model=model, args=SFTConfig(..., remove_unused_columns=False),
                          train_dataset=ds.with_transform(examples_transform()),
                          data_collator=KLALCollator(processor), processing_class=processor)
    trainer.train()

One training step, in one place (`compute_loss`): the collator's maps are popped from the batch,
the capture is armed with them, TRL computes its next-token loss with the model's own forward (its
SDPA attention runs as usual; on the supervised layers the capture hands the query rows and keys to
the fused op), and `lambda * KLAL` is added, divided by the gradient-accumulation steps exactly as
TRL divides its own auxiliary (MoE router) loss when the token count spans the accumulated batch.
Everything else (collation, LoRA, bf16, accumulation, checkpoints and resume, logging, DDP / FSDP2 /
DeepSpeed through accelerate) is TRL's and transformers'.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from ..errors import UsageError
from .capture import DEFAULT_QUERY, CaptureError, KLALCapture, format_token_ids


class KLALTrainer(SFTTrainer):
    """SFTTrainer + KLAL. Extra keyword arguments:

    klal: add the loss (False: the NTP-only baseline; the op is never called);
    klal_lambda: its weight (default 1.0); klal_layers / klal_query / klal_backend: KLALCapture's
    `layers`, `query`, `backend`."""

    def __init__(self, *args, klal: bool = True, klal_lambda: float = 1.0, klal_layers: Any = "all", klal_query: str = DEFAULT_QUERY, klal_backend: str = "auto", **kwargs):
        if klal_lambda < 0:
            raise UsageError(f"klal_lambda must be >= 0, got {klal_lambda}")
        args_ = kwargs.get("args") if "args" in kwargs else (args[1] if len(args) > 1 else None)
        if args_ is not None and getattr(args_, "remove_unused_columns", False):
            raise UsageError("KLALTrainer needs remove_unused_columns=False (the collator reads the rows' geometry)")
        super().__init__(*args, **kwargs)
        self.add_callback(_TokenCount(self))
        self.klal_lambda = float(klal_lambda)
        self.capture = None
        if klal:
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            tok = getattr(self.processing_class, "tokenizer", self.processing_class)
            self.capture = KLALCapture(base, layers=klal_layers, query=klal_query, backend=klal_backend, special_ids=tok.all_special_ids,
                                       format_ids=format_token_ids(tok))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume: transformers saves VLM checkpoints under their legacy key names
        (`language_model.model.*` for LLaVA) and Trainer reloads them without the key mapping, so
        every weight would be reported missing and the run would go on from its initial weights.
        Full models are reloaded through `from_pretrained`, which maps the keys; adapters (PEFT),
        FSDP and DeepSpeed checkpoints take Trainer's own path."""
        import os

        model = model if model is not None else self.model
        plain = not hasattr(model, "get_base_model") and not self.is_fsdp_enabled and not self.is_deepspeed_enabled
        if not plain or not os.path.isfile(os.path.join(resume_from_checkpoint, "config.json")):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        loaded = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if missing or unexpected:
            raise UsageError(f"{resume_from_checkpoint}: the checkpoint does not fit the model ({len(missing)} missing, {len(unexpected)} unexpected weights)")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = inputs.pop("klal_targets", None)
        inputs.pop("klal_ids", None)
        if self.capture is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if targets is None:
            raise CaptureError("the batch has no klal_targets: use linebench.train.KLALCollator (or klal=False)")
        mode = "train" if self.model.training else "eval"
        # batch -> forward (TRL's NTP, the capture computing KLAL inside) -> NTP + lambda * KLAL
        with self.capture.batch(inputs["input_ids"], inputs["labels"], targets):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            klal = self.capture.loss  # of the first forward (TRL's loss); an outputs-only re-run does not record
        ntp, outputs = result if return_outputs else (result, None)
        klal = klal.to(ntp.device)
        # TRL's NTP is a sum over the accumulated batch's tokens; KLAL is this micro-batch's mean:
        # divide it by the accumulation steps, as TRL does its router aux loss
        steps = self.current_gradient_accumulation_steps if (num_items_in_batch is not None and mode == "train") else 1
        loss = ntp + self.klal_lambda * klal / steps
        logged = self.accelerator.gather_for_metrics(torch.stack([ntp.detach() * steps, klal.detach()]).float()[None])
        self._metrics[mode]["ntp"].append(logged[:, 0].mean().item())
        self._metrics[mode]["klal"].append(logged[:, 1].mean().item())
        self._metrics[mode]["klal_lambda"].append(self.klal_lambda)
        self._metrics[mode]["klal_layers"].append(self.capture.supervised_layers)  # layers in this step's KLAL mean
        return (loss, outputs) if return_outputs else loss


def resumed_tokens(state, args) -> int:
    """The tokens trained on before `state.global_step`: TRL's count as logged at that step (the
    checkpoint's state holds the log), else transformers' own count when it keeps one, else the last
    logged count (exact only when checkpoints fall on logged steps)."""
    if state.global_step == 0:
        return 0
    history = [h for h in state.log_history if "num_tokens" in h]
    at_step = [h["num_tokens"] for h in history if h.get("step") == state.global_step]
    if at_step:
        return int(at_step[-1])
    if getattr(args, "include_num_input_tokens_seen", "no") == "non_padding":
        return int(state.num_input_tokens_seen)
    return int(history[-1]["num_tokens"]) if history else 0


class _TokenCount(TrainerCallback):
    """TRL keeps its `num_tokens` count on the trainer, not in the Trainer state that a checkpoint
    saves, so a resumed run would count again from zero: at the start of training take it back
    from the (restored) state."""

    def __init__(self, trainer):
        import weakref

        self.trainer = weakref.ref(trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer()
        if trainer is not None and hasattr(trainer, "_total_train_tokens"):
            trainer._total_train_tokens = resumed_tokens(state, args)
