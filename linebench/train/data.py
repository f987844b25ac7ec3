"""Rows -> model inputs, with ground-truth maps that provably line up with the model's image tokens.

- `map_profile(processor)`: the map profile of *this* model's processor, with its parameters read
  from the processor's config (LLaVA's resize/crop size and patch, Qwen's min/max pixels; linebench.families);
- `as_example(row)`: a linebench row as a TRL prompt-completion example (the row's question with
  its image as the user turn, the answer as the assistant turn) that keeps the geometry;
- `KLALCollator`: TRL's `DataCollatorForVisionLanguageModeling` (the model's chat template,
  completion-only labels, the processor's image handling), plus `klal_targets`: each sample's map
  computed from its stored geometry for this model's layout, checked against the image tokens the
  processor actually put in `input_ids` (a mismatch stops with one line naming the row).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..grids import Layout, layout as make_layout
from ..maps import attention_map

EXAMPLE_KEYS = ("prompt", "completion", "images")


def map_profile(processor) -> str:
    """The linebench profile string for a loaded processor (its family's, with the parameters read from
    the processor's own config), or a UsageError naming the supported families."""
    from ..families import for_processor

    return for_processor(processor).profile(processor)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, (str, bytes)) else v


def as_example(row: Mapping[str, Any], question_suffix: str = "") -> dict[str, Any]:
    """A linebench row -> {prompt, completion, images, id, geometry, params} (TRL prompt-completion)."""
    for key in ("image", "question", "answer", "geometry"):
        if key not in row:
            raise UsageError(f"the dataset has no {key!r} column: training needs linebench rows (image, question, answer, geometry)")
    return {
        "prompt": [{"role": "user", "content": row["question"] + question_suffix}],
        "completion": [{"role": "assistant", "content": str(row["answer"])}],
        "images": [row["image"].convert("RGB") if hasattr(row["image"], "convert") else row["image"]],
        "id": row.get("id", ""),
        "geometry": row["geometry"],
        "params": row.get("params"),
    }


def examples_transform(question_suffix: str = ""):
    """A batched `datasets` transform turning rows into examples (`ds.with_transform(...)`)."""

    def transform(batch: Mapping[str, list]) -> dict[str, list]:
        n = len(batch["question"])
        rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
        out = [as_example(r, question_suffix) for r in rows]
        return {k: [o[k] for o in out] for k in out[0]} if out else {}

    return transform


def row_map(example: Mapping[str, Any], profile: str, map_params: Mapping[str, float] | None = None) -> np.ndarray:
    """The sample's map for `profile` from its geometry (map parameters: the row's own, or given)."""
    source = {"geometry": _json(example["geometry"]), "params": example.get("params")}
    try:
        return attention_map(source, profile, **dict(map_params or {})).values
    except UsageError as e:
        raise UsageError(f"row {example.get('id', '?')}: {e}") from None


class KLALCollator:
    """TRL's vision-language collator plus each sample's ground-truth maps (`klal_targets`: a list
    per sample of one float32 tensor per image) and row ids (`klal_ids`). Maps come from the stored
    geometry for `profile` (default: from the processor); `maps=False` gives TRL's batches as they
    are (the NTP-only baseline sees exactly the same inputs otherwise)."""

    def __init__(
        self, processor, profile: str | None = None, *, max_length: int | None = None, map_params=None, maps: bool = True,
        pad_to_multiple_of=None, image_token_id: int | None = None,
    ):  # fmt: skip
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        self.processor = processor
        self.profile = profile or map_profile(processor)
        self.map_params = map_params
        self.maps = maps
        self.inner = DataCollatorForVisionLanguageModeling(processor, max_length=max_length, completion_only_loss=True, pad_to_multiple_of=pad_to_multiple_of)
        # the token the model fills with image features: give the model's (`capture.image_token_of(model)`);
        # else the processor's, which for Gemma 3 and Molmo2 is the placeholder it expands away
        cfg_token = image_token_id
        if cfg_token is None:
            from ..families import for_processor

            try:  # a family whose processor names a placeholder says which token the model fills
                own = for_processor(processor).image_token
            except UsageError:  # a processor no family reads, with an explicit profile
                own = ""
            cfg_token = processor.tokenizer.convert_tokens_to_ids(own) if own else getattr(processor, "image_token_id", None)
        if cfg_token is None:
            tok = getattr(processor, "image_token", None)
            cfg_token = processor.tokenizer.convert_tokens_to_ids(tok) if tok else None
        self.image_token_id = cfg_token

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.inner([{k: ex[k] for k in EXAMPLE_KEYS} for ex in examples])
        if not self.maps:
            return batch
        targets = []
        for b, ex in enumerate(examples):
            lay = self.layout(ex)
            values = lay.expand(row_map(ex, self.profile, self.map_params))  # one value per image token: P = 0 at newline tokens
            placed = int((batch["input_ids"][b] == self.image_token_id).sum()) if self.image_token_id is not None else None
            if placed is not None and placed != lay.num_placeholders:
                raise UsageError(
                    f"row {ex.get('id', '?')}: the processor put {placed} image tokens in input_ids, the {self.profile} map has "
                    f"{lay.num_placeholders}; the map profile does not match this processor (or max_length cut the image)"
                )
            targets.append([torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))])
        batch["klal_targets"] = targets
        batch["klal_ids"] = [str(ex.get("id", "")) for ex in examples]
        return batch

    def layout(self, example) -> Layout:
        """The layout of this example's image for the collator's profile (its canvas from the stored geometry)."""
        canvas = _json(example["geometry"])["canvas"]
        return make_layout(self.profile, (int(canvas[0]), int(canvas[1])))
