"""The Hugging Face backend: greedy answers scored with linebench's parsers,
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

from ..maps import target_tokens
from ..train.data import KLALCollator, as_example, map_profile

__all__ = ["evaluate", "generate", "attention_metrics"]


def _chunks(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def generate_batches(model, processor, rows: Sequence[Mapping[str, Any]], *, batch_size: int = 8, max_new_tokens: int = 16, question_suffix: str = "", system: str | None = None):
    """Yields (rows, answers, meta) per batch: greedy answers (special tokens dropped), batched with
    left padding through the model's chat template; meta per row: latency (the batch's, shared) and
    token counts."""
    import time

    import torch

    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    device = next(model.parameters()).device
    was_training = model.training  # evaluation during training: no dropout, and inference-mode inputs (Molmo2 refuses others)
    model.eval()
    try:
        for chunk in _chunks(list(rows), batch_size):
            t0 = time.perf_counter()
            examples = [as_example(r, question_suffix) for r in chunk]
            messages = [
                ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else [])
                + [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex["prompt"][0]["content"]}]}]
                for ex in examples
            ]
            if getattr(processor, "chat_template", None) or getattr(tok, "chat_template", None):
                texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
            else:  # PaliGemma: the processor puts the image tokens before the prompt itself
                texts = [ex["prompt"][0]["content"] for ex in examples]
            inputs = processor(images=[ex["images"] for ex in examples], text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = ids[:, inputs["input_ids"].shape[1] :]
            answers = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
            latency = (time.perf_counter() - t0) / len(chunk)
            prompt_tokens = inputs["attention_mask"].sum(-1).tolist()
            done = (new != tok.pad_token_id).sum(-1).tolist()
            meta = [{"latency_s": round(latency, 4), "prompt_tokens": int(p), "completion_tokens": int(c)} for p, c in zip(prompt_tokens, done)]
            yield chunk, answers, meta
    finally:
        tok.padding_side = side
        model.train(was_training)


def generate(model, processor, rows: Sequence[Mapping[str, Any]], *, batch_size: int = 8, max_new_tokens: int = 16, question_suffix: str = "") -> list[str]:
    """Greedy answers (decoded, special tokens dropped), batched with left padding."""
    return [a for _, answers, _ in generate_batches(model, processor, rows, batch_size=batch_size, max_new_tokens=max_new_tokens, question_suffix=question_suffix) for a in answers]


def attention_metrics(
    model, processor, rows: Sequence[Mapping[str, Any]], *, profile: str | None = None, layers="all", batch_size: int = 8,
    keep: set[str] | None = None,
) -> dict[str, Any]:
    """Per layer, the mean over rows of KL(P || Q) and of the target/visual attention ratio; each
    row's values too (`rows_detail`), and for the row ids in `keep` the attention itself
    (`attention[id]`: Q averaged over the layers, in token order) for pictures."""
    import torch

    from ..train.capture import KLALCapture, capture_of, format_token_ids, image_token_of

    profile = profile or map_profile(processor)
    collator = KLALCollator(processor, profile, image_token_id=image_token_of(model))
    device = next(model.parameters()).device
    own = capture_of(model)
    cap = own or KLALCapture(model, layers="all", backend="torch", special_ids=processor.tokenizer.all_special_ids,
                             format_ids=format_token_ids(processor.tokenizer))
    kl: dict[int, list[float]] = {}
    ratio: dict[int, list[float]] = {}
    share: dict[int, list[float]] = {}  # attention on the image before renormalisation
    detail: list[dict[str, Any]] = []
    kept: dict[str, np.ndarray] = {}
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
                per_row = {b: {"id": examples[b].get("id", ""), "difficulty": chunk[b].get("difficulty"), "kl": [], "ratio": []} for b in range(len(chunk))}
                mean_q: dict[int, np.ndarray] = {}
                for layer in sorted(cap.attention):
                    q = cap.attention[layer].float().cpu().numpy()
                    share.setdefault(layer, []).extend(cap.visual_share[layer].float().cpu().tolist())
                    for r, (b, _, _) in enumerate(cap.rows):
                        p = targets[b][0].numpy().astype(np.float64)
                        n = p.size
                        qa = np.clip(q[r, :n].astype(np.float64), 1e-30, None)
                        nz = p > 0
                        k_ = float((p[nz] * (np.log(p[nz]) - np.log(qa[nz]))).sum())
                        lay = collator.layout(examples[b])
                        qv = qa[lay.placeholder_index() >= 0]  # the map's tokens (LLaVA-NeXT's newline tokens left out)
                        mask = target_tokens({"geometry": examples[b]["geometry"]}, lay)
                        r_ = float(qv[mask].mean() / qv.mean()) if mask.any() else math.nan
                        kl.setdefault(layer, []).append(k_)
                        ratio.setdefault(layer, []).append(r_)
                        per_row[b]["kl"].append(k_)
                        per_row[b]["ratio"].append(r_)
                        mean_q[b] = mean_q.get(b, 0) + qv / len(cap.attention)
                detail += per_row.values()
                for b, q in mean_q.items():
                    if keep and examples[b].get("id") in keep:
                        kept[examples[b]["id"]] = q.astype(np.float32)
    finally:
        if own is None:
            cap.remove()
        model.train(was_training)
    return {
        "profile": profile,
        "rows": len(rows),
        "layers": [
            {"layer": layer, "kl": float(np.mean(kl[layer])), "ratio": float(np.nanmean(ratio[layer])),
             "visual_share": float(np.mean(share[layer]))} for layer in sorted(kl)
        ],
        "rows_detail": detail,
        "attention": kept,
    }


def evaluate(model, processor, rows: Sequence[Mapping[str, Any]], *, task: str | None = None, batch_size: int = 8, max_new_tokens: int = 16, attention: bool = True, layers="all", question_suffix: str = "") -> dict[str, Any]:
    """Accuracy (overall and per level) of greedy answers, the predictions, and attention metrics."""

    rows = list(rows)
    preds = generate(model, processor, rows, batch_size=batch_size, max_new_tokens=max_new_tokens, question_suffix=question_suffix)
    from ..score import row_correct

    correct = [bool(row_correct(r, pred, task)) for r, pred in zip(rows, preds)]
    levels: dict[str, list[bool]] = {}
    for r, ok in zip(rows, correct):
        levels.setdefault(str(r.get("difficulty", "all")), []).append(ok)
    report: dict[str, Any] = {
        "rows": len(rows),
        "accuracy": float(np.mean(correct)) if correct else math.nan,
        "by_level": {lv: float(np.mean(v)) for lv, v in sorted(levels.items())},
        "predictions": [{"id": r.get("id", ""), "prediction": p, "answer": str(r["answer"]), "correct": ok} for r, p, ok in zip(rows, preds, correct)],
        "diagnostics": _diagnostics(rows, preds, correct, task),
    }
    if attention:
        att = attention_metrics(model, processor, rows, layers=layers, batch_size=batch_size)
        report.update({k: v for k, v in att.items() if k not in ("rows_detail", "attention")})
    return report


def _diagnostics(rows, preds, correct, task: str | None) -> dict[str, Any]:
    """Baselines on the same rows, balanced accuracy, distinct predictions, confusion (diagnostics.py)."""
    from ..answers import canonical
    from ..tasks import get_task
    from .diagnostics import chance, diagnose

    name = task or (rows[0].get("task") if rows else None) or ""
    if not rows or name.startswith("grounding-"):
        return diagnose([], [], [])
    kind = getattr(get_task(name), "answer_kind", "number") if name else "number"  # as row_correct scores them
    answers = [canonical(kind, str(r["answer"])) or str(r["answer"]) for r in rows]
    predicted = [canonical(kind, p) for p in preds]
    return diagnose(answers, predicted, correct, [chance(name, r) for r in rows])

