"""Evaluating a Hugging Face VLM on linebench rows: greedy answers scored with linebench's parsers,
and attention diagnostics from the model's real forward pass (SDPA kept; the capture hands the
query rows and keys over, no eager attention, no attention matrix).

    from linebench.evaluate import evaluate
    report = evaluate(model, processor, rows, task="grid_patch")   # rows: linebench rows (dicts)
    report["accuracy"], report["layers"][0]["kl"], report["layers"][0]["ratio"]

Attention metrics per layer, for the query that produces the answer's last token, on the prompt
followed by the gold answer (teacher forcing: the same query KLAL trains), with the row's map at
this model's layout: `kl` = KL(P || Q), and `ratio` = the paper's Figure 4 ratio, the mean attention
on target tokens over the mean attention on all visual tokens (1 = no preference; N / |targets| at
most). Q is the head mean of the attention renormalised over the image's tokens.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..answers import is_correct
from ..maps import target_tokens
from ..train.data import KLALCollator, as_example, map_profile

__all__ = ["evaluate", "generate", "attention_metrics"]


def _chunks(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def generate(model, processor, rows: Sequence[Mapping[str, Any]], *, batch_size: int = 8, max_new_tokens: int = 16, question_suffix: str = "") -> list[str]:
    """Greedy answers (decoded, special tokens dropped), batched with left padding."""
    import torch

    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        for chunk in _chunks(list(rows), batch_size):
            examples = [as_example(r, question_suffix) for r in chunk]
            messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex["prompt"][0]["content"]}]}] for ex in examples]
            texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
            inputs = processor(images=[ex["images"] for ex in examples], text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = ids[:, inputs["input_ids"].shape[1] :]
            out += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    finally:
        tok.padding_side = side
    return out


def attention_metrics(model, processor, rows: Sequence[Mapping[str, Any]], *, profile: str | None = None, layers="all", batch_size: int = 8) -> dict[str, Any]:
    """Per layer, the mean over rows of KL(P || Q) and of the target/visual attention ratio."""
    import torch

    from ..train.capture import KLALCapture, capture_of

    profile = profile or map_profile(processor)
    collator = KLALCollator(processor, profile)
    device = next(model.parameters()).device
    own = capture_of(model)
    cap = own or KLALCapture(model, layers="all", backend="torch", special_ids=processor.tokenizer.all_special_ids)
    kl: dict[int, list[float]] = {}
    ratio: dict[int, list[float]] = {}
    was_training = model.training
    model.eval()
    try:
        with cap.measuring(layers):
            for chunk in _chunks(list(rows), batch_size):
                examples = [as_example(r) for r in chunk]
                batch = collator(examples)
                targets = batch.pop("klal_targets")
                batch.pop("klal_ids")
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                with torch.no_grad(), cap.batch(batch["input_ids"], batch["labels"], targets):
                    model(**batch)
                for layer, q in cap.attention.items():
                    q = q.float().cpu().numpy()
                    for r, (b, _, _) in enumerate(cap.rows):
                        p = targets[b][0].numpy().astype(np.float64)
                        n = p.size
                        qa = np.clip(q[r, :n].astype(np.float64), 1e-30, None)
                        nz = p > 0
                        kl.setdefault(layer, []).append(float((p[nz] * (np.log(p[nz]) - np.log(qa[nz]))).sum()))
                        mask = target_tokens({"geometry": examples[b]["geometry"]}, profile)
                        ratio.setdefault(layer, []).append(float(qa[mask].mean() / qa.mean()) if mask.any() else math.nan)
    finally:
        if own is None:
            cap.remove()
        model.train(was_training)
    return {
        "profile": profile,
        "rows": len(rows),
        "layers": [
            {"layer": layer, "kl": float(np.mean(kl[layer])), "ratio": float(np.nanmean(ratio[layer]))} for layer in sorted(kl)
        ],
    }


def evaluate(model, processor, rows: Sequence[Mapping[str, Any]], *, task: str | None = None, batch_size: int = 8, max_new_tokens: int = 16, attention: bool = True, layers="all", question_suffix: str = "") -> dict[str, Any]:
    """Accuracy (overall and per level) of greedy answers, the predictions, and attention metrics."""
    from ..tasks import get_task

    rows = list(rows)
    preds = generate(model, processor, rows, batch_size=batch_size, max_new_tokens=max_new_tokens, question_suffix=question_suffix)
    kinds = {}
    correct = []
    for r, pred in zip(rows, preds):
        name = task or r.get("task")
        kind = kinds.setdefault(name, getattr(get_task(name), "answer_kind", "number") if name else "number")
        correct.append(bool(is_correct(kind, pred, str(r["answer"]))))
    levels: dict[str, list[bool]] = {}
    for r, ok in zip(rows, correct):
        levels.setdefault(str(r.get("difficulty", "all")), []).append(ok)
    report: dict[str, Any] = {
        "rows": len(rows),
        "accuracy": float(np.mean(correct)) if correct else math.nan,
        "by_level": {lv: float(np.mean(v)) for lv, v in sorted(levels.items())},
        "predictions": [{"id": r.get("id", ""), "prediction": p, "answer": str(r["answer"]), "correct": ok} for r, p, ok in zip(rows, preds, correct)],
    }
    if attention:
        report.update(attention_metrics(model, processor, rows, layers=layers, batch_size=batch_size))
    return report

