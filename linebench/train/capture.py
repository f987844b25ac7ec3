"""KLAL inside an ordinary forward pass of a Hugging Face model.

`KLALCapture(model)` registers a linebench attention function through transformers'
`AttentionInterface` (and `AttentionMaskInterface`) and gives it to the model's text decoder. The
function calls the base implementation (SDPA by default, or flash) for the model's output; on the
layers selected for supervision it also hands the selected query rows and a view of the visual
keys (post-RoPE, exactly as attention sees them) to `linebench.klal.klal_loss`. The vision tower
keeps its own implementation.

    cap = KLALCapture(model, layers="all", query="last-answer")
    with cap.batch(input_ids, labels, targets):        # targets: one P row per image
        out = model(input_ids=input_ids, pixel_values=..., labels=labels)
    loss = out.loss + lam * cap.loss                   # cap.loss: mean over the selected layers

Rows. Image tokens are the runs of `image_token_id` in `input_ids` (LLaVA, Qwen2.5-VL: from the
model's config), or spans given explicitly (`visual_spans`, for any Llama-family text model).
Answer tokens are the positions whose `labels` are not -100 (labels aligned with input_ids, as
HF models take them). Each (sample, image, query position) is one row of the op: one map per
image, each renormalised over that image's tokens (not a joint map over several images). A sample's
loss is the mean over its rows; the batch's, the mean over samples; KLAL, the mean over layers.

Gradient checkpointing (non-reentrant) re-runs each layer's forward during the backward; the
attention function then recomputes its KLAL term (so the op's saved tensors exist again) without
recording it a second time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..errors import LinebenchError
from ..klal import klal_loss

IMPL = "linebench_klal"
QUERIES = ("last-answer", "answer-start", "all-answer")
IGNORE_INDEX = -100


class CaptureError(LinebenchError, ValueError):
    """A batch or a model the capture cannot supervise (no image tokens, no answer, bad layers)."""


def _attention(module, query, key, value, attention_mask, **kwargs):
    from transformers import AttentionInterface

    capture = getattr(module, "_linebench_capture", None)
    base = capture.base if capture is not None else "sdpa"
    out = AttentionInterface._global_mapping[base](module, query, key, value, attention_mask, **kwargs)
    if capture is not None:
        capture._layer(module, query, key, kwargs.get("scaling"))
    return out


def register(base: str = "sdpa") -> None:
    """Register the linebench attention with transformers, with the mask format of `base` (the
    implementation that computes the model's output); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPL, _attention)
    AttentionMaskInterface.register(IMPL, AttentionMaskInterface._global_mapping.get(base, sdpa_mask))


def parse_layers(spec: str | Sequence[int], count: int) -> list[int]:
    """'all', 'last:K', '0,5,-1' or a list of ints (negative counts from the end) -> layer indices."""
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return list(range(count))
        if text.startswith("last:"):
            try:
                k = int(text[5:])
            except ValueError:
                raise CaptureError(f"layers: last:K takes an integer K, got {spec!r}") from None
            if not 1 <= k <= count:
                raise CaptureError(f"layers: last:K needs 1 <= K <= {count} (the model's layers), got {k}")
            return list(range(count - k, count))
        try:
            spec = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise CaptureError(f"layers takes all, last:K or a comma-separated list of indices, got {spec!r}") from None
    layers = sorted({i % count if -count <= i < count else _bad_layer(i, count) for i in spec})
    if not layers:
        raise CaptureError("layers selects no layer")
    return layers


def _bad_layer(i: int, count: int) -> int:
    raise CaptureError(f"layer {i} is out of range: the model has {count} layers (0..{count - 1}, or -1..-{count})")


@dataclass
class _Group:
    """Rows of one visual-token count N (the op takes one N per call)."""

    query_pos: torch.Tensor  # [R] position of the query token in the sequence
    batch_index: torch.Tensor  # [R] sample
    offsets: torch.Tensor  # [R] first token of the row's image
    target: torch.Tensor  # [R, N]
    weight: torch.Tensor  # [R] 1 / (rows of the sample) / (samples)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    idx = mask.nonzero().flatten().tolist()
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


class KLALCapture:
    """Computes KLAL during the model's own forward pass (see the module docstring).

    layers: "all", "last:K", "0,5,-1" or a list of decoder layer indices.
    query: "last-answer" (the paper's choice), "answer-start" or "all-answer".
    base: the attention implementation that computes the model's output ("sdpa", "flash_attention_2").
    backend: the op's backend ("auto", "triton", "torch")."""

    def __init__(self, model, layers: str | Sequence[int] = "all", query: str = "last-answer", base: str = "sdpa", backend: str = "auto"):
        from transformers import AttentionInterface

        if query not in QUERIES:
            raise CaptureError(f"query must be one of {', '.join(QUERIES)}, got {query!r}")
        if base == IMPL or base not in AttentionInterface._global_mapping:
            raise CaptureError(f"base must be a registered attention implementation (sdpa, flash_attention_2, ...), got {base!r}")
        register(base)
        self.model, self.query, self.base, self.backend = model, query, base, backend
        decoder = model.get_decoder()
        blocks = getattr(decoder, "layers", None)
        if blocks is None:
            raise CaptureError(f"{type(model).__name__}: its decoder has no `layers`; not a Llama-family decoder")
        self.layers = parse_layers(layers, len(blocks))
        self.modules = [blocks[i].self_attn for i in self.layers]
        self._selected = {id(m) for m in self.modules}
        self._all = [block.self_attn for block in blocks]
        for module in self._all:  # every decoder layer runs `base` through the linebench function
            module._linebench_capture = self
        text_key = next((k for k in getattr(model.config, "sub_configs", {}) if k == "text_config"), None)
        model.set_attn_implementation({text_key: IMPL} if text_key else IMPL)
        self.image_token_id = getattr(model.config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(model.config, "image_token_index", None)
        self._groups: list[_Group] = []
        self._losses: dict[int, torch.Tensor] = {}
        self.recomputed = 0  # layers re-run by gradient checkpointing during backward

    def remove(self) -> None:
        """Stop supervising: the decoder goes back to the base implementation."""
        for module in self._all:
            module._linebench_capture = None
        text_key = "text_config" if "text_config" in getattr(self.model.config, "sub_configs", {}) else None
        self.model.set_attn_implementation({text_key: self.base} if text_key else self.base)

    # ------------------------------------------------------------------ batches
    @contextlib.contextmanager
    def batch(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        targets,
        visual_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> Iterator["KLALCapture"]:
        """Supervise the next forward pass. `targets[b]`: the P row of sample b's image ([N]), or a
        list of rows, one per image in order; a tensor [B, N] for one image per sample.
        `visual_spans[b]`: (start, length) of each image in sample b, when the model has no image
        token (a text model fed visual embeddings)."""
        self._groups = self._rows(input_ids, labels, targets, visual_spans)
        self._losses = {}
        yield self

    @property
    def loss(self) -> torch.Tensor:
        """KLAL of the last forward pass inside `batch`: the mean over the selected layers."""
        if not self._groups:  # a batch without images
            return torch.zeros(())
        missing = [layer for layer, m in zip(self.layers, self.modules) if id(m) not in self._losses]
        if missing:
            raise CaptureError(f"no KLAL recorded for layer(s) {missing}: run the model's forward inside `with capture.batch(...)`")
        return torch.stack([self._losses[id(m)] for m in self.modules]).mean()

    def _rows(self, input_ids, labels, targets, visual_spans) -> list[_Group]:
        if input_ids.dim() != 2 or labels.shape != input_ids.shape:
            raise CaptureError(f"input_ids and labels must both be [batch, seq], got {tuple(input_ids.shape)} and {tuple(labels.shape)}")
        batch = input_ids.shape[0]
        if len(targets) != batch:
            raise CaptureError(f"{len(targets)} target(s) for a batch of {batch}")
        rows: dict[int, list[tuple[int, int, int, torch.Tensor]]] = {}
        per_sample = []
        for b in range(batch):
            if visual_spans is not None:
                spans = [tuple(s) for s in visual_spans[b]]
            elif self.image_token_id is None:
                raise CaptureError("the model's config names no image_token_id: pass visual_spans")
            else:
                spans = _runs(input_ids[b] == self.image_token_id)
            maps = targets[b]
            maps = [maps] if isinstance(maps, torch.Tensor) and maps.dim() == 1 else list(maps)
            if len(maps) != len(spans):
                raise CaptureError(f"sample {b} has {len(spans)} image(s) in its tokens but {len(maps)} target map(s)")
            answer = (labels[b] != IGNORE_INDEX).nonzero().flatten()
            if answer.numel() == 0:
                raise CaptureError(f"sample {b} has no answer tokens (every label is {IGNORE_INDEX})")
            if self.query == "last-answer":
                queries = [int(answer[-1])]
            elif self.query == "answer-start":
                queries = [int(answer[0])]
            else:
                queries = answer.tolist()
            mine = []
            for (start, length), p in zip(spans, maps):
                if p.numel() != length:
                    raise CaptureError(f"sample {b}: an image has {length} tokens but its target map has {p.numel()} values")
                if any(qp < start + length for qp in queries):
                    raise CaptureError(f"sample {b}: a query token precedes its image (causal attention cannot see it)")
                mine += [(qp, b, start, p.reshape(-1)) for qp in queries]
            per_sample.append(mine)
        supervised = sum(1 for mine in per_sample if mine)  # samples without an image add nothing
        for mine in per_sample:
            for row in mine:
                rows.setdefault(row[3].numel(), []).append((*row[:3], row[3], 1.0 / len(mine) / supervised))
        device = input_ids.device
        groups = []
        for n, items in rows.items():
            qp, bi, off, ps, w = zip(*items)
            groups.append(
                _Group(
                    torch.tensor(qp, device=device),
                    torch.tensor(bi, device=device),
                    torch.tensor(off, device=device),
                    torch.stack([p.to(device=device, dtype=torch.float32) for p in ps]),
                    torch.tensor(w, device=device, dtype=torch.float32),
                )
            )
        return groups

    # ------------------------------------------------------------------ per layer
    def _layer(self, module, query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> None:
        if not self._groups or id(module) not in self._selected:
            return
        total = query.new_zeros((), dtype=torch.float32)
        for g in self._groups:
            q = query[g.batch_index, :, g.query_pos]  # [R, H, D]
            per_row = klal_loss(q, key, g.target, scale=scaling, reduction="none", offsets=g.offsets, batch_index=g.batch_index, backend=self.backend)
            total = total + (per_row * g.weight).sum()
        if torch._C._current_graph_task_id() == -1:
            self._losses[id(module)] = total
        else:  # a checkpoint's recomputation during backward: the op ran again for its saved tensors
            self.recomputed += 1
