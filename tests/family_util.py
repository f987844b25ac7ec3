"""What the family tests share (tests/test_families.py, tests/test_family_*.py, tests/test_capture.py).

- small grid-patch folders and their rows;
- tiny models, loaded from the tiny cache or built, the same way everywhere (seed 0, fp32, training mode);
- the eager `output_attentions` reference for KLAL: the queries that produce the answer's content tokens,
  each image's columns, renormalised, head mean, KL(P || Q); and the gradient comparisons;
- the batches and checks of the families whose image is several runs of tokens (Idefics3/SmolVLM,
  Mistral 3, Molmo2).

Import it after `pytest.importorskip("torch")`; transformers, datasets and linebench.train are imported
where they are used. The module-scoped `linebench_cache` fixture is in conftest.py.
"""

from __future__ import annotations

import copy

import torch
from PIL import Image

from linebench.families import REGISTRY
from linebench.grids import layout

ANSWER = "(3, 5)<|im_end|>"  # make_batch's answer

# ----------------------------------------------------------------------------- folders and rows


def grid_patch(folder, n, seed, canvas=(640, 480)):
    """A grid-patch folder of `n` easy rows on `canvas` (no maps); returns the folder."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    generate(RunSpec("grid_patch", n=n, seed=seed, params=ParamSpec(canvas, "easy"), maps=()), folder)
    return folder


def read_rows(folder):
    from datasets import load_dataset

    ds = load_dataset(str(folder), split="train")
    return [ds[i] for i in range(len(ds))]


def grid_patch_rows(folder, n, seed, canvas=(640, 480)):
    return read_rows(grid_patch(folder, n, seed, canvas))


# ----------------------------------------------------------------------------- processors


def one_image(proc, canvas, nested=False):
    """The processor's tensors for one black image of `canvas` and a short question, through the chat
    template (nested: the images as one list per sample, as Idefics3/SmolVLM take them)."""
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "how many"}]}], tokenize=False)
    image = Image.new("RGB", canvas)
    return proc(images=[[image]] if nested else [image], text=[text], return_tensors="pt")


def image_token_count(proc, canvas, token_id=None, nested=False):
    """How many image tokens (proc.image_token_id unless given) one_image puts in input_ids."""
    ids = one_image(proc, canvas, nested)["input_ids"][0]
    return int((ids == (proc.image_token_id if token_id is None else token_id)).sum())


# ----------------------------------------------------------------------------- tiny models


def load_tiny(tiny_name):
    """The tiny model from its cached folder (fp32, training mode, seed 0) and its processor."""
    from transformers import AutoModelForImageTextToText

    from linebench.train import tiny

    folder = tiny.cached(tiny_name)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).train()
    return model, tiny.load_processor(folder)


def build_tiny(build):
    """A family's `build_tiny()` at seed 0, the model in fp32 and training mode."""
    torch.manual_seed(0)
    model, proc = build()
    return model.float().train(), proc


# ----------------------------------------------------------------------------- capture and eager reference


def inputs(batch):
    """The model's inputs of a collator batch (its klal_ entries left out)."""
    return {k: v for k, v in batch.items() if not k.startswith("klal_")}


def image_positions(batch, b, image_token_id):
    return (batch["input_ids"][b] == image_token_id).nonzero().flatten().tolist()


def answer_queries(batch, b, special_ids, format_ids):
    """The query positions that produce sample b's answer content tokens (labelled, not special; not
    format tokens unless the answer has nothing else, then its last token)."""
    ids = batch["input_ids"][b].tolist()
    answer = [i for i, v in enumerate(batch["labels"][b].tolist()) if v != -100 and ids[i] not in special_ids]
    return [i - 1 for i in ([i for i in answer if ids[i] not in format_ids] or answer[-1:])]


def capture_batch(model, proc, batch, **kw):
    """KLALCapture (torch backend, the tokenizer's format and special ids) over one forward of a
    collator batch; returns (capture, format ids, special ids). The hooks stay on the model (removed
    if the forward raises)."""
    from linebench.train import KLALCapture, format_token_ids

    fmt = format_token_ids(proc.tokenizer)
    special = set(proc.tokenizer.all_special_ids)
    cap = KLALCapture(model, backend="torch", format_ids=fmt, special_ids=special, **kw)
    try:
        with cap.batch(batch["input_ids"], batch["labels"], batch["klal_targets"]):
            model(**inputs(batch))
    except BaseException:
        cap.remove()
        raise
    return cap, fmt, special


def eager_copy(model):
    """A copy of the model with eager attention (sdpa and the capture return no attention weights)."""
    ref = copy.deepcopy(model)
    ref.set_attn_implementation("eager")
    return ref


def kl_row(a, p):
    """KL(P || Q) of one query: Q its attention `a` [heads, columns] over an image's columns,
    renormalised over them, head mean."""
    a = (a / a.sum(-1, keepdim=True)).mean(0)
    nz = p > 0
    return (p[nz] * (p[nz].log() - a[nz].log())).sum()


def mean_kl(attentions, per_sample):
    """KLAL the long way: `attentions` one [batch, heads, query, key] tensor per layer; `per_sample` a
    list of rows (b, query, columns, P) per sample. kl_row of each row (in fp32), mean over a sample's
    rows, then over the samples, then over the layers."""
    per_layer = []
    for attn in attentions:
        samples = []
        for rows in per_sample:
            kls = []
            for b, qp, cols, p in rows:
                kls.append(kl_row(attn[b, :, qp, cols].float(), p))
            samples.append(torch.stack(kls).mean())
        per_layer.append(torch.stack(samples).mean())
    return torch.stack(per_layer).mean()


def eager_reference(model, batch, image_token_id, layers, format_ids, special_ids):
    """KLAL of a collator batch from output_attentions, the long way: for each sample the queries that
    produce its answer's content tokens, its image's columns (wherever they are), renormalised, head
    mean, KL. Returns (KLAL, the eager copy it ran)."""
    ref = eager_copy(model)
    out = ref(**inputs(batch), output_attentions=True)
    # one entry per softmax-attention layer: linear-attention layers (Qwen3.5's Gated DeltaNet) record none
    full = [i for i, block in enumerate(ref.get_decoder().layers) if getattr(block, "self_attn", None) is not None]
    assert len(out.attentions) == len(full)
    per_sample = []
    for b in range(batch["input_ids"].shape[0]):
        cols, p = image_positions(batch, b, image_token_id), batch["klal_targets"][b][0]
        per_sample.append([(b, qp, cols, p) for qp in answer_queries(batch, b, special_ids, format_ids)])
    return mean_kl([out.attentions[full.index(layer)] for layer in layers], per_sample), ref


def grads(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_same_grads(g1, g2, rtol=1e-4):
    """Each parameter's gradient elementwise within rtol, relative to its own scale (gradients here
    range over three orders of magnitude, so one absolute tolerance would let the small ones go)."""
    used = 0
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            used += 1
            # fp32 sums in another order; + 1e-9 for gradients that are 0 in exact arithmetic (k_proj bias)
            torch.testing.assert_close(a, b, rtol=rtol, atol=1e-5 * float(b.abs().max()) + 1e-9)
    assert used > 5


def assert_same_grads_linear_attention_looser(model, g_cap, g_ref):
    """assert_same_grads (rtol 1e-3) over every parameter but linear attention's; those (Qwen3.5's
    Gated DeltaNet) reach KLAL through a chunked recurrence of cumulative decays whose sums cancel:
    there the op's fp32 rounding (fp32 even for a float64 model) reaches ~2e-5 of a parameter's largest
    gradient (assert_same_grads' bound is 1e-5), so they get 1e-4 of it. Returns (names, linear indices)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    linear = [i for i, n in enumerate(names) if ".linear_attn." in n]
    assert_same_grads(*([g for i, g in enumerate(gs) if i not in linear] for gs in (g_cap, g_ref)), rtol=1e-3)
    for i in linear:
        a, b = g_cap[i], g_ref[i]
        assert (a is None) == (b is None), names[i]
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-9, msg=lambda m, n=names[i]: f"{n}: {m}")
    return names, linear


# ----------------------------------------------------------------------------- several runs, one image


def make_batch(proc, images_per_sample, seed=0):
    """Samples of noise images (canvases given per sample), a question and ANSWER; labels on the answer only;
    maps: one random map per image (some zeros), with the profile's token count."""
    g = torch.Generator().manual_seed(seed)
    profile = next(f for f in REGISTRY.values() if f.reads(proc)).profile(proc)  # a family listed as blocked too
    texts, images, targets = [], [], []
    for canvases in images_per_sample:
        content = [{"type": "image"} for _ in canvases] + [{"type": "text", "text": "which cell"}]
        prompt = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        texts.append(prompt + ANSWER)
        images.append([Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy()) for w, h in canvases])
        maps = []
        for canvas in canvases:
            p = torch.rand(layout(profile, canvas).num_tokens, generator=g)
            p[p < 0.3] = 0
            maps.append(p / p.sum())
        targets.append(maps)
    batch = proc(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")
    answer = len(proc.tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -answer:] = batch["input_ids"][:, -answer:]
    batch["labels"] = labels
    return dict(batch), targets


def image_columns(ids, image_token_id, sizes):
    """Each image's token positions: the <image> positions of the sample, cut by the maps' sizes."""
    pos = (ids == image_token_id).nonzero().flatten().tolist()
    assert len(pos) == sum(sizes)
    out, i = [], 0
    for n in sizes:
        out.append(pos[i : i + n])
        i += n
    return out


def run_starts(cols):
    """The first position of each run of consecutive positions."""
    return [cols[0]] + [b for a, b in zip(cols, cols[1:]) if b != a + 1]


def between_runs(tok, ids, cols):
    """The tokens between each run of `cols` and the next."""
    return [tok.convert_ids_to_tokens(ids[a + 1 : b].tolist()) for a, b in zip(cols, cols[1:]) if b != a + 1]


def image_group(model, tok, batch, targets):
    """How a torch-backend capture (the tokenizer's special ids) groups the batch's image tokens with
    their maps (its `_rows`); the capture is removed after."""
    from linebench.train import KLALCapture

    cap = KLALCapture(model, backend="torch", special_ids=set(tok.all_special_ids))
    try:
        return cap._rows(batch["input_ids"], batch["labels"], targets, None)
    finally:
        cap.remove()


def eager_klal(model, batch, targets, image_token_id, layers, format_ids, special_ids, span=False):
    """KLAL from output_attentions: the queries producing the answer's content tokens; each image's
    columns (its <image> tokens; with span=True every position from its first to its last token, markers
    included), renormalised, head mean, KL(P || Q); mean over queries, images' rows, samples, layers."""
    ref = eager_copy(model)
    out = ref(**batch, output_attentions=True)
    per_sample = []
    for b, maps in enumerate(targets):
        queries = answer_queries(batch, b, special_ids, format_ids)
        rows = []
        for cols, p in zip(image_columns(batch["input_ids"][b], image_token_id, [len(m) for m in maps]), maps):
            if span:  # P stays on the image tokens; the renormalisation takes in the markers between the runs
                full = torch.zeros(cols[-1] - cols[0] + 1)
                full[torch.tensor(cols) - cols[0]] = p
                cols, p = list(range(cols[0], cols[-1] + 1)), full
            rows += [(b, qp, cols, p) for qp in queries]
        per_sample.append(rows)
    return mean_kl([out.attentions[layer] for layer in layers], per_sample), ref


def check_klal_over_exactly_the_image_tokens(model, proc, batch, targets, image_token_id, **capture_kw):
    """Two images in sample 0, one in sample 1, every layer (0-3) supervised: the captured KLAL and its
    gradients equal the eager reference over exactly the image tokens; the reference over each image's
    whole span (the marker tokens between its runs included) is another number."""
    from linebench.train import KLALCapture, format_token_ids

    fmt = format_token_ids(proc.tokenizer)
    special = set(proc.tokenizer.all_special_ids)
    cap = KLALCapture(model, backend="torch", format_ids=fmt, special_ids=special, **capture_kw)
    try:
        with cap.batch(batch["input_ids"], batch["labels"], targets):
            model(**batch)
        layers = list(cap.layers)
        assert layers == [0, 1, 2, 3] and not cap.left_out
        assert sorted({(b, image) for b, image, _ in cap.rows}) == [(0, 0), (0, 1), (1, 0)]
        loss = cap.loss
    finally:
        cap.remove()
    expected, ref = eager_klal(model, batch, targets, image_token_id, layers, fmt, special)
    assert expected.item() > 0 and abs(loss.item() - expected.item()) < 1e-4 * max(1.0, expected.item())
    assert_same_grads(grads(loss, model), grads(expected, ref), rtol=1e-3)
    spanned, _ = eager_klal(model, batch, targets, image_token_id, layers, fmt, special, span=True)
    assert abs(spanned.item() - expected.item()) > 1e-3, (spanned.item(), expected.item())
