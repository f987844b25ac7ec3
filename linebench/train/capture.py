"""KLAL inside an ordinary forward pass of a Hugging Face model.

`KLALCapture(model)` registers a linebench attention function through transformers'
`AttentionInterface` (and `AttentionMaskInterface`) and gives it to the model's text decoder. The
function calls the base implementation (SDPA by default, or flash) for the model's output; on the
layers selected for supervision it also hands the selected query rows and a view of the visual
keys (post-RoPE, exactly as attention sees them) to `linebench.klal.klal_loss`. The vision tower
keeps its own implementation.

    cap = KLALCapture(model, layers="all", format_ids=format_token_ids(tokenizer))
    with cap.batch(input_ids, labels, targets):        # targets: one P row per image
        out = model(input_ids=input_ids, pixel_values=..., labels=labels)
    loss = out.loss + lam * cap.loss                   # cap.loss: mean over the selected layers

Rows. Image tokens are the runs of `image_token_id` in `input_ids` (LLaVA, Qwen2.5-VL: from the
model's config), or spans given explicitly (`visual_spans`, for any Llama-family text model).
Answer tokens are the positions whose `labels` are not -100 (labels aligned with input_ids, as HF
models take them), less the special tokens (EOS, end of turn: `special_ids`). Which query attends
(`query`): in a causal LM the token at position t is produced by the query at t - 1, so
"answer-content" (the default) supervises the query at p - 1 for every answer token p that carries
content (a letter or digit: for "(3, 5)" the "3" and the "5", produced by the queries at "(" and
","; never a format token such as ")", whose query learns nothing about the picture; `format_ids`
says which tokens those are); "last-answer" takes the query that produces the last answer token
(for "(3, 5)", ")"); the older "at-last-label" the query at the last labelled position itself
(which, for a one-token answer, predicts what follows it, often end of turn). docs/klal.md draws it.
Each (sample, image, query position) is one row of the op: one map per
image, each renormalised over that image's tokens (not a joint map over several images). A sample's
loss is the mean over its rows; the batch's, the mean over samples; KLAL, the mean over layers.

Gradient checkpointing (non-reentrant) re-runs each layer's forward during the backward; the
attention function then recomputes its KLAL term (so the op's saved tensors exist again) without
recording it a second time. Reentrant checkpointing runs the forward without autograd, so KLAL's
gradient would be lost: it is refused (CaptureError). So are flash attention as the base (transformers
picks its flash kernel by the implementation's name, which the capture replaces) and packed
batches (several samples in one row), whose queries and images the capture cannot pair.

All index bookkeeping happens on the host, once per batch: the op is called once per layer for all
rows (rows of different image sizes padded to the longest, with a length each), with no device sync.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass
from typing import Collection, Iterator, Sequence

import torch

from ..errors import LinebenchError
from ..klal import klal_loss, visual_attention

IMPL = "linebench_klal"
# Query positions, for answer tokens p_0 < ... < p_last (labels != -100, special tokens left out):
#   answer-content p - 1 for every answer token p with content (not in format_ids; if none has,
#                  the last answer token): the queries that produce the answer itself (default)
#   last-answer   p_last - 1     the query that produces the last answer token
#   answer-start  p_0 - 1        the query that produces the first (the generation prompt's last token)
#   all-answer    p_i - 1, all i the queries that produce each answer token
#   at-last-label the last position whose label is not -100, special or not (the earlier default)
QUERIES = ("answer-content", "last-answer", "answer-start", "all-answer", "at-last-label")
DEFAULT_QUERY = "answer-content"
BASES = ("sdpa", "eager")  # flash: see the module docstring
IGNORE_INDEX = -100


class CaptureError(LinebenchError, ValueError):
    """A batch or a model the capture cannot supervise (no image tokens, no answer, bad layers)."""


def _attention(module, query, key, value, attention_mask, **kwargs):
    from transformers import AttentionInterface

    # The module holds a weak reference to its capture and the base's name: a deep copy of the
    # model shares the reference but not the module identities, so it runs the base, unsupervised.
    ref = getattr(module, "_linebench_capture", None)
    capture = ref() if ref is not None else None
    base = getattr(module, "_linebench_base", "sdpa")
    out = AttentionInterface._global_mapping[base](module, query, key, value, attention_mask, **kwargs)
    if capture is not None:
        capture._layer(module, query, key, kwargs, attention_mask)
    return out


def image_token_of(model) -> int | None:
    """The token the model fills with image features, from its config (a model or a config;
    `image_token_id`, or the older `image_token_index`): not always the processor's `image_token_id`,
    which for Gemma 3 and Molmo2 is the placeholder the processor expands into the image's tokens."""
    config = getattr(model, "config", model)
    token = getattr(config, "image_token_id", None)
    return getattr(config, "image_token_index", None) if token is None else token


def capture_of(model) -> "KLALCapture | None":
    """The live capture installed on `model`'s decoder, if any."""
    try:
        blocks = model.get_decoder().layers
    except AttributeError:
        return None
    first = next((m for m in map(_attention_of, blocks) if m is not None), None)
    ref = getattr(first, "_linebench_capture", None)
    cap = ref() if ref is not None else None
    return cap if cap is not None and cap.model is model else None


def register(base: str = "sdpa") -> None:
    """Register the linebench attention with transformers, with the mask format of `base` (the
    implementation that computes the model's output); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPL, _attention)
    AttentionMaskInterface.register(IMPL, AttentionMaskInterface._global_mapping.get(base, sdpa_mask))


def _eos_ids(model) -> set[int]:
    """The model's end-of-sequence ids (text config and generation config), as a set."""
    ids: set[int] = set()
    for src in (model.config.get_text_config(), getattr(model, "generation_config", None)):
        v = getattr(src, "eos_token_id", None) if src is not None else None
        ids.update([v] if isinstance(v, int) else list(v or []))
    return ids


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
    """Every row of a batch (one call of the op per layer)."""

    query_pos: torch.Tensor  # [R] position of the query token in the sequence
    batch_index: torch.Tensor  # [R] sample
    offsets: torch.Tensor  # [R] first token of the row's image
    lengths: torch.Tensor  # [R] tokens of the row's image
    target: torch.Tensor  # [R, N_max], zero past each row's length
    weight: torch.Tensor  # [R] 1 / (rows of the sample) / (samples)
    shared: bool  # several rows read one sample's keys
    # images whose tokens lie in several runs (tiles with text between them: Idefics3, SmolVLM):
    # their keys are gathered into one contiguous run per image before the op
    positions: torch.Tensor | None = None  # [I, N_max] each image's token positions (0 past its length)
    image_batch: torch.Tensor | None = None  # [I] the image's sample
    row_image: torch.Tensor | None = None  # [R] the row's image
    farthest: int = 0  # the largest distance from a query to its image's first token (sliding windows), on the host

    def keys(self, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keys, offsets, batch index) for the op: the model's keys [B, Hkv, L, D] as they are, or
        [I, Hkv, N_max, D] with each image's tokens gathered (offset 0, indexed by image)."""
        if self.positions is None:
            return key, self.offsets, self.batch_index
        gathered = key[self.image_batch[:, None], :, self.positions].permute(0, 2, 1, 3)  # [I, N_max, Hkv, D] -> [I, Hkv, N_max, D]
        return gathered, torch.zeros_like(self.offsets), self.row_image

    def image_mask(self, length: int) -> torch.Tensor:
        """[R, L] which of the L key positions are the row's image tokens."""
        j = torch.arange(length, device=self.offsets.device)
        if self.positions is None:
            return (j[None, :] >= self.offsets[:, None]) & (j[None, :] < (self.offsets + self.lengths)[:, None])
        pos = self.positions[self.row_image]  # [R, N_max]
        valid = torch.arange(pos.shape[1], device=pos.device)[None, :] < self.lengths[:, None]
        pos = torch.where(valid, pos, length)  # padding goes to a spare column, dropped below
        mask = torch.zeros(pos.shape[0], length + 1, dtype=torch.bool, device=pos.device)
        return mask.scatter_(1, pos, True)[:, :length]


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


def _attention_of(block):
    """A decoder layer's softmax attention module (None for a linear-attention layer, e.g. Qwen3.5's
    Gated DeltaNet layers between its full-attention ones)."""
    return getattr(block, "self_attn", None)


def _as_runs(span) -> list[tuple[int, int]]:
    """One image's `visual_spans` entry: (start, length), or a list of them (an image in several runs)."""
    if len(span) == 2 and all(isinstance(v, int) or (isinstance(v, torch.Tensor) and v.dim() == 0) for v in span):
        return [(int(span[0]), int(span[1]))]
    return [(int(s), int(n)) for s, n in span]


def _images(runs: list[tuple[int, int]], sizes: list[int]) -> list[list[tuple[int, int]]]:
    """The runs of image tokens grouped into images: one run each when the counts agree, else
    consecutive runs joined until each image has as many tokens as its map (tiles with text between
    them, as Idefics3 and SmolVLM place them). When they cannot be grouped: one run per image (the
    caller then says what does not match)."""
    if len(runs) == len(sizes):
        return [[r] for r in runs]
    images, i = [], 0
    for size in sizes:
        image, total = [], 0
        while i < len(runs) and total < size:
            image.append(runs[i])
            total += runs[i][1]
            i += 1
        if total != size:
            return [[r] for r in runs]
        images.append(image)
    return images if i == len(runs) else [[r] for r in runs]


def _visual_share(q: torch.Tensor, key: torch.Tensor, g: "_Group", scale, attention_mask) -> torch.Tensor:
    """[R] (fp32, no gradient): the share of each query row's attention over every key it sees
    (causal, padding masked; head mean) that lands on its image's tokens. KLAL's Q is renormalised
    over the image, so this is what says whether the query looks at the image at all."""
    with torch.no_grad():
        rows, heads, dim = q.shape
        k = key[g.batch_index].float()  # [R, Hkv, L, D]
        k = k.repeat_interleave(heads // k.shape[1], dim=1)  # [R, H, L, D] (GQA: head h reads h // group)
        scores = torch.einsum("rhd,rhld->rhl", q.float(), k) * (dim**-0.5 if scale is None else float(scale))  # [R, H, L]
        j = torch.arange(k.shape[2], device=q.device)
        seen = j[None, :] <= g.query_pos[:, None]  # [R, L] causal
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
            row = attention_mask[g.batch_index, 0, g.query_pos, : k.shape[2]]  # [R, L]
            seen = seen & (row if row.dtype == torch.bool else row > torch.finfo(row.dtype).min / 2)
        attn = scores.masked_fill(~seen[:, None, :], float("-inf")).softmax(-1)  # [R, H, L]
        image = g.image_mask(k.shape[2])  # [R, L]
        return (attn * image[:, None, :]).sum(-1).mean(-1)


def format_token_ids(tokenizer) -> frozenset[int]:
    """The ids of the tokens that carry no content: their text has no letter or digit ("(", ",",
    ")", spaces, byte fragments). "answer-content" leaves out the queries that produce them."""
    n = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    return frozenset(i for i, t in enumerate(texts) if not any(ch.isalnum() for ch in t))


class KLALCapture:
    """Computes KLAL during the model's own forward pass (see the module docstring).

    layers: "all", "last:K", "0,5,-1" or a list of decoder layer indices.
    query: "answer-content" (the queries producing the answer's content tokens), "last-answer",
        "answer-start", "all-answer" or "at-last-label" (see QUERIES).
    format_ids: token ids that carry no content (`format_token_ids(tokenizer)`: no letter or
        digit, such as "(", ",", ")"); "answer-content" skips their queries. Without them every
        answer token counts as content (then "answer-content" is "all-answer").
    special_ids: token ids that are never answer tokens for the query choice (EOS, end of turn);
        default: the model's EOS ids (config and generation config). Pass the tokenizer's
        `all_special_ids` when training with a chat template.
    measure: also keep each selected layer's attention over the visual tokens (`attention[layer]`,
        [rows, N_max], the head mean renormalised over each row's image; `rows` says which sample
        and image each row is) for diagnostics (linebench.evaluate).
    base: the attention implementation that computes the model's output ("sdpa" or "eager").
    backend: the op's backend ("auto", "triton", "torch").

    `skipped` counts samples left out of the mean because they have no answer token (e.g. cut by
    truncation); a warning says so once."""

    def __init__(
        self, model, layers: str | Sequence[int] = "all", query: str = DEFAULT_QUERY, base: str = "sdpa", backend: str = "auto",
        special_ids: Sequence[int] | None = None, measure: bool = False, format_ids: Collection[int] = (),
    ):
        if query not in QUERIES:
            raise CaptureError(f"query must be one of {', '.join(QUERIES)}, got {query!r}")
        if base not in BASES:
            hint = (
                "flash attention is not supported as the base: transformers picks its flash kernel from the attention "
                "implementation's name, which the capture replaces; use base='sdpa' (the default)"
                if "flash" in str(base) else f"base must be one of {', '.join(BASES)}, got {base!r}"
            )
            raise CaptureError(hint)
        register(base)
        self.model, self.query, self.base, self.backend = model, query, base, backend
        self.special_ids = set(int(i) for i in special_ids) if special_ids is not None else _eos_ids(model)
        self.format_ids = frozenset(int(i) for i in format_ids)
        self.measure = measure
        self.attention: dict[int, torch.Tensor] = {}  # layer -> [R, N_max] (measure=True)
        # layer -> [R]: the share of each row's whole attention (every key it sees, head mean) that
        # goes to its image's tokens, before any renormalisation (measure=True)
        self.visual_share: dict[int, torch.Tensor] = {}
        decoder = model.get_decoder()
        blocks = getattr(decoder, "layers", None)
        if blocks is None:
            raise CaptureError(f"{type(model).__name__}: its decoder has no `layers`; not a Llama-family decoder")
        self.blocks = blocks
        # layers whose attention KLAL cannot read: layer -> why (linear attention has no softmax over
        # keys; a sliding window that does not reach the image is added per batch, in _layer)
        self.left_out: dict[int, str] = {
            i: "no softmax attention (linear attention or a short convolution): nothing over the image to supervise"
            for i, block in enumerate(blocks) if _attention_of(block) is None
        }
        self.layers = parse_layers(layers, len(blocks))
        if all(i in self.left_out for i in self.layers):
            raise CaptureError(f"layers {layers!r} select only layers KLAL cannot supervise ({self.left_out[self.layers[0]]})")
        self.modules = [_attention_of(blocks[i]) for i in self.layers if i not in self.left_out]
        self.layers = [i for i in self.layers if i not in self.left_out]
        self._selected = {id(m) for m in self.modules}
        self._all = [m for m in map(_attention_of, blocks) if m is not None]
        me = weakref.ref(self)
        for module in self._all:  # every decoder layer runs `base` through the linebench function
            module._linebench_capture = me
            module._linebench_base = base
        text_key = next((k for k in getattr(model.config, "sub_configs", {}) if k == "text_config"), None)
        model.set_attn_implementation({text_key: IMPL} if text_key else IMPL)
        self.image_token_id = image_token_of(model)
        self._group: _Group | None = None  # the rows of the batch being run
        self._replay: _Group | None = None  # the rows of the last batch, for checkpointed recomputation
        self._supervised = False
        self._losses: dict[int, torch.Tensor] = {}
        self._out_of_window: set[int] = set()  # selected layers whose sliding window missed an image this batch
        self._grad_at_batch = True
        self._checked_packing = False
        self.recomputed = 0  # layers re-run by gradient checkpointing during backward
        self.skipped = 0  # samples without answer tokens, left out of the mean
        self._warned = False

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
        token (a text model fed visual embeddings). The rows are cleared on leaving the block (an
        error included), so a later forward or generate() runs unsupervised."""
        self._check_checkpointing()
        self._group = self._rows(input_ids, labels, targets, visual_spans)
        self._supervised = self._group is not None
        self._losses = {}
        self._out_of_window = set()
        self.attention = {}
        self.visual_share = {}
        self._grad_at_batch = torch.is_grad_enabled()
        self._checked_packing = False
        try:
            yield self
        finally:
            # a checkpointed backward after the block re-runs the layers: they replay these rows
            self._replay, self._group = self._group, None

    @contextlib.contextmanager
    def measuring(self, layers: str | Sequence[int] = "all") -> Iterator["KLALCapture"]:
        """Temporarily record the attention of `layers` (diagnostics), whatever the capture supervises."""
        saved = (self.layers, self.modules, self._selected, self.measure)
        self.layers = [i for i in parse_layers(layers, len(self.blocks)) if i not in self.left_out]
        self.modules = [_attention_of(self.blocks[i]) for i in self.layers]
        self._selected = {id(m) for m in self.modules}
        self.measure = True
        try:
            yield self
        finally:
            self.layers, self.modules, self._selected, self.measure = saved

    @property
    def rows(self) -> list[tuple[int, int, int]]:
        """(sample, image index within the sample, query position) of each row of the last batch."""
        g = self._group if self._group is not None else self._replay
        if g is None:
            return []
        out, seen = [], {}
        for b, qp, off in zip(g.batch_index.tolist(), g.query_pos.tolist(), g.offsets.tolist()):
            images = seen.setdefault(b, [])
            if off not in images:
                images.append(off)
            out.append((b, images.index(off), qp))
        return out

    def _check_checkpointing(self) -> None:
        for block in self.blocks:
            fn = getattr(block, "_gradient_checkpointing_func", None)
            if getattr(block, "gradient_checkpointing", False) and fn is not None:
                reentrant = getattr(fn, "keywords", {}).get("use_reentrant", True)
                if reentrant is None or reentrant:
                    raise CaptureError(
                        "reentrant gradient checkpointing runs the forward without autograd, so KLAL would get no gradient: "
                        "enable it with model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})"
                    )

    @property
    def supervised_layers(self) -> int:
        """How many selected layers recorded KLAL in the last batch (sliding windows may leave some out)."""
        return sum(id(m) in self._losses for m in self.modules)

    @property
    def loss(self) -> torch.Tensor:
        """KLAL of the last forward pass inside `batch`: the mean over the selected layers."""
        if not self._supervised:  # a batch without images (or answers)
            return torch.zeros(())
        missing = [layer for layer, m in zip(self.layers, self.modules) if id(m) not in self._losses and id(m) not in self._out_of_window]
        if missing:
            raise CaptureError(f"no KLAL recorded for layer(s) {missing}: run the model's forward inside `with capture.batch(...)`")
        recorded = [self._losses[id(m)] for m in self.modules if id(m) in self._losses]
        if not recorded:  # every selected layer's window missed the image in this batch
            return torch.zeros(())
        return torch.stack(recorded).mean()

    def _rows(self, input_ids, labels, targets, visual_spans) -> _Group | None:
        if input_ids.dim() != 2 or labels.shape != input_ids.shape:
            raise CaptureError(f"input_ids and labels must both be [batch, seq], got {tuple(input_ids.shape)} and {tuple(labels.shape)}")
        batch, seq = input_ids.shape
        if len(targets) != batch:
            raise CaptureError(f"{len(targets)} target(s) for a batch of {batch}")
        ids = input_ids.detach().cpu()
        answers = (labels.detach() != IGNORE_INDEX).cpu()
        per_sample = []
        skipped = 0
        for b in range(batch):
            maps = targets[b]
            maps = [maps] if isinstance(maps, torch.Tensor) and maps.dim() == 1 else list(maps)
            if visual_spans is not None:
                images = [_as_runs(s) for s in visual_spans[b]]
            elif self.image_token_id is None:
                raise CaptureError("the model's config names no image_token_id: pass visual_spans")
            else:
                images = _images(_runs(ids[b] == self.image_token_id), [int(m.numel()) for m in maps])
            if len(maps) != len(images):
                raise CaptureError(f"sample {b} has {len(images)} image(s) in its tokens but {len(maps)} target map(s)")
            labelled = answers[b].nonzero().flatten().tolist()
            answer = [p for p in labelled if int(ids[b, p]) not in self.special_ids]
            if not answer or (self.query != "at-last-label" and answer[0] == 0):
                skipped += bool(images)  # nothing to supervise (e.g. the answer was truncated away)
                per_sample.append([])
                continue
            if self.query == "answer-content":
                content = [p for p in answer if int(ids[b, p]) not in self.format_ids] or answer[-1:]
                queries = [p - 1 for p in content]
            elif self.query == "at-last-label":
                queries = [labelled[-1]]
            elif self.query == "last-answer":
                queries = [answer[-1] - 1]
            elif self.query == "answer-start":
                queries = [answer[0] - 1]
            else:
                queries = [p - 1 for p in answer]
            mine = []
            for runs, p in zip(images, maps):
                start, end, length = runs[0][0], runs[-1][0] + runs[-1][1], sum(n for _, n in runs)
                if p.numel() != length:
                    raise CaptureError(f"sample {b}: an image has {length} tokens but its target map has {p.numel()} values")
                if start < 0 or end > seq:
                    raise CaptureError(f"sample {b}: an image span {start}..{end} lies outside the {seq} tokens")
                if any(qp < end for qp in queries):
                    raise CaptureError(f"sample {b}: a query token at {min(queries)} does not follow its image at {start}..{end - 1} (causal attention cannot see it)")
                mine += [(qp, b, start, length, p.reshape(-1), tuple(runs)) for qp in queries]
            per_sample.append(mine)
        if skipped:
            self.skipped += skipped
            if not self._warned:
                warnings.warn(
                    f"KLAL: {skipped} sample(s) have no answer token (no label other than {IGNORE_INDEX} or a special token); "
                    "they are left out of the loss (capture.skipped counts them)",
                    stacklevel=3,
                )
                self._warned = True
        supervised = sum(1 for mine in per_sample if mine)  # samples without an image or answer add nothing
        items = [(*row[:5], 1.0 / len(mine) / supervised, row[5]) for mine in per_sample for row in mine]
        if not items:
            return None
        device = input_ids.device
        qp, bi, off, lens, ps, w, runs = zip(*items)
        n_max = max(lens)
        target = torch.zeros(len(items), n_max, dtype=torch.float32, device=device)
        for r, p in enumerate(ps):
            target[r, : p.numel()] = p.to(device=device, dtype=torch.float32)
        as_tensor = lambda v: torch.tensor(v, dtype=torch.int64, device=device)  # noqa: E731
        group = _Group(
            as_tensor(qp), as_tensor(bi), as_tensor(off), as_tensor(lens), target, torch.tensor(w, device=device), len(set(bi)) < len(items),
            farthest=max(q - o for q, o in zip(qp, off)),
        )  # fmt: skip
        if all(len(r) == 1 for r in runs):
            return group
        # an image in several runs: each image's token positions, gathered per layer (see _Group.keys)
        order = list(dict.fromkeys(zip(bi, runs)))  # the images, in row order
        positions = torch.zeros(len(order), n_max, dtype=torch.int64)
        for i, (_, image_runs) in enumerate(order):
            pos = [s + k for s, n in image_runs for k in range(n)]
            positions[i, : len(pos)] = torch.tensor(pos)
        group.positions = positions.to(device)
        group.image_batch = as_tensor([b for b, _ in order])
        group.row_image = as_tensor([order.index(key) for key in zip(bi, runs)])
        group.shared = len(order) < len(items)
        return group

    # ------------------------------------------------------------------ per layer
    def _layer(self, module, query: torch.Tensor, key: torch.Tensor, kwargs, attention_mask=None) -> None:
        # a checkpoint's recomputation during backward (under torch.compile the graph replays itself)
        replaying = not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1
        g = self._group if self._group is not None or not replaying else self._replay
        if g is None:
            if not replaying:
                self._replay = None  # a forward outside any batch: nothing of it to replay
            return
        if not self._checked_packing and not torch.compiler.is_compiling():  # a host check: not inside a compiled graph
            self._check_packing(kwargs)
        if id(module) not in self._selected:
            return
        if self._grad_at_batch and not torch.is_grad_enabled() and not replaying and self.model.training:
            raise CaptureError(
                "the forward runs without autograd inside a training batch (reentrant gradient checkpointing?): KLAL would get "
                "no gradient; use gradient_checkpointing_kwargs={'use_reentrant': False}"
            )
        window = getattr(module, "sliding_window", None)
        if window and g.farthest >= window:  # a query cannot see all of its image: Q is not defined there
            self._out_of_window.add(id(module))
            layer = self.layers[self.modules.index(module)]
            if layer not in self.left_out:
                self.left_out[layer] = f"sliding window of {window} tokens does not reach the image from the answer"
                warnings.warn(f"KLAL: layer {layer} left out: {self.left_out[layer]}", stacklevel=2)
            return
        q = query[g.batch_index, :, g.query_pos]  # [R, H, D]
        keys, offsets, index = g.keys(key)
        per_row = klal_loss(
            q, keys, g.target, scale=kwargs.get("scaling"), reduction="none", offsets=offsets, batch_index=index,
            lengths=g.lengths, backend=self.backend, shared_samples=g.shared, check_indices=False,
        )  # fmt: skip
        total = (per_row * g.weight).sum()
        if not replaying:
            self._losses[id(module)] = total
            if self.measure:
                layer = self.layers[self.modules.index(module)]
                self.attention[layer] = visual_attention(
                    q, keys, g.target.shape[1], scale=kwargs.get("scaling"), offsets=offsets, batch_index=index, lengths=g.lengths
                )
                self.visual_share[layer] = _visual_share(q, key, g, kwargs.get("scaling"), attention_mask)
        else:  # the op ran again for its saved tensors
            self.recomputed += 1

    def _check_packing(self, kwargs) -> None:
        """Refuse packed batches (several samples in one row), once per batch."""
        self._checked_packing = True
        if kwargs.get("cu_seq_lens_q") is not None or kwargs.get("cu_seq_lens_k") is not None:
            raise CaptureError("packed (varlen) batches are not supported: the capture pairs each row's query with that row's images; pad instead of packing")
        pos = kwargs.get("position_ids")
        if isinstance(pos, torch.Tensor) and pos.dim() >= 2:
            pos = pos.reshape(-1, pos.shape[-1]) if pos.dim() == 2 else pos[0]
            if bool(((pos == 0).sum(-1) > 1).any()):
                raise CaptureError(
                    "packed batches are not supported (position_ids restart inside a row): the capture pairs each row's query "
                    "with that row's images; pad instead of packing (TRL: padding_free=False)"
                )
