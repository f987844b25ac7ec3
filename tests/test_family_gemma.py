"""Gemma 3, Gemma 4 and PaliGemma beyond the generic family test (tests/test_families.py).

- Bidirectional image attention: in the tiny models' eager attention an image token attends to the
  image tokens after it (Gemma 3: every layer, from `token_type_ids`; Gemma 4: sliding layers only, from
  `mm_token_type_ids`, its full layers stay causal), the mask the model builds from the collator's
  batch; the captured KLAL and its gradients still equal the eager `output_attentions` reference (the
  answer's queries are causal rows), and the reference without the bidirectional mask differs (so the
  check sees it).
- Sliding-window layers: with the question lengthened token by token across the window's edge, a
  sliding layer is left out of a batch exactly when the eager mask hides the image's first token from
  the farthest answer query (never before), with a notice naming the layer; full layers stay in; KLAL
  and its gradients equal the eager reference over the layers kept.
- Each family's map profile is read from its processor (the tiny one and a checkpoint-like one).
- PaliGemma is listed but refused in one line, and the reason holds: TRL's collator cannot batch it.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("transformers")

from linebench.families import REGISTRY  # noqa: E402
from linebench.train import tiny  # noqa: E402

from family_util import answer_queries, assert_same_grads, capture_batch, eager_reference, grads, grid_patch_rows, inputs, load_tiny  # noqa: E402

FAMILIES = [n for n in ("gemma-3", "gemma-4") if n in REGISTRY and REGISTRY[n].build_tiny is not None and not REGISTRY[n].unsupported]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return grid_patch_rows(tmp_path_factory.mktemp("gemma-rows") / "rows", n=2, seed=7)


def load(name):
    return load_tiny(REGISTRY[name].tiny_name)


def collate(proc, rows, suffix="", model=None):
    from linebench.train.capture import image_token_of
    from linebench.train.data import KLALCollator, as_example

    token = image_token_of(model) if model is not None else None  # the model's image token (Gemma 3's processor names its placeholder)
    return KLALCollator(proc, image_token_id=token)([as_example(r, question_suffix=suffix) for r in rows])


def capture(model, proc, batch, layers="all"):
    """capture_batch, with the warnings it gives (the notices) recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap, fmt, special = capture_batch(model, proc, batch, layers=layers)
    return cap, fmt, special, [str(w.message) for w in caught]


def bidirectional_layers(model) -> list[bool]:
    """Per decoder layer: whether image tokens attend to each other both ways."""
    cfg = model.config.get_text_config()
    if model.config.model_type == "gemma4":  # create_masks_for_vision_model: the sliding layers only
        return [t == "sliding_attention" for t in cfg.layer_types]
    return [True] * cfg.num_hidden_layers  # Gemma 3: every layer


# ----------------------------------------------------------------------------- bidirectional images


@pytest.mark.parametrize("name", FAMILIES)
def test_bidirectional_image_attention_and_klal_equals_eager(name, linebench_cache, rows):
    model, proc = load(name)
    batch = collate(proc, rows, model=model)
    types = batch.get("token_type_ids", batch.get("mm_token_type_ids"))
    image_id = model.config.image_token_id
    assert types is not None and torch.equal(types.bool(), batch["input_ids"] == image_id)  # the collator keeps the marks the mask is built from
    if name == "gemma-4":  # its last two layers attend over the first two's keys (no k_proj of their own)
        assert [layer.self_attn.is_kv_shared_layer for layer in model.get_decoder().layers] == [False, False, True, True]
    cap, fmt, special, _ = capture(model, proc, batch)
    assert cap.supervised_layers == len(cap.layers) == model.config.get_text_config().num_hidden_layers  # every window reaches the image
    expected, ref = eager_reference(model, batch, image_id, cap.layers, fmt, special)
    assert abs(cap.loss.item() - expected.item()) < 1e-4 * max(1.0, expected.item()) and expected.item() > 0
    assert_same_grads(grads(cap.loss, model), grads(expected, ref), rtol=1e-3)

    with torch.no_grad():
        attn = ref(**inputs(batch), output_attentions=True).attentions
    for b in range(batch["input_ids"].shape[0]):
        cols = (batch["input_ids"][b] == image_id).nonzero().flatten().tolist()
        queries = answer_queries(batch, b, special, fmt)
        for layer, both_ways in enumerate(bidirectional_layers(model)):
            ahead = attn[layer][b, :, cols[0], cols[-1]]  # the first image token looking at the last
            assert bool((ahead > 0).all()) if both_ways else bool((ahead == 0).all()), (layer, both_ways)
            for q in queries:  # an answer query: causal, whatever the image does
                assert float(attn[layer][b, :, q, q + 1 :].abs().sum()) == 0

    # the same reference with the image's marks dropped (causal everywhere) is another number: the check sees the mask
    plain = {k: v for k, v in batch.items() if k not in ("token_type_ids", "mm_token_type_ids")}
    with torch.no_grad():
        causal, _ = eager_reference(model.eval(), plain, image_id, cap.layers, fmt, special)
    assert abs(causal.item() - expected.item()) > 1e-4 * max(1.0, expected.item())


# ----------------------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("name", FAMILIES)
def test_sliding_layer_left_out_exactly_when_its_window_misses_the_image(name, linebench_cache, rows):
    model, proc = load(name)
    cfg = model.config.get_text_config()
    window = cfg.sliding_window
    sliding = [i for i, t in enumerate(cfg.layer_types) if t == "sliding_attention"]
    assert sliding and len(sliding) < cfg.num_hidden_layers
    image_id = model.config.image_token_id

    def farthest(batch, special, fmt):
        out = 0
        for b in range(batch["input_ids"].shape[0]):
            first = int((batch["input_ids"][b] == image_id).nonzero()[0])
            out = max(out, max(q - first for q in answer_queries(batch, b, special, fmt)))
        return out

    from linebench.train import format_token_ids

    fmt, special = format_token_ids(proc.tokenizer), set(proc.tokenizer.all_special_ids)
    base = farthest(collate(proc, rows, model=model), special, fmt)
    assert base < window - 2  # the tiny model's window reaches the image on ordinary rows
    seen = set()
    for extra in (window - base - 2, window - base - 1, window - base, window - base + 1):  # " the" is one token
        batch = collate(proc, rows, " the" * extra, model=model)
        far = farthest(batch, special, fmt)
        assert far == base + extra
        cap, fmt, special, notices = capture(model, proc, batch)
        missed = far >= window
        seen.add(missed)
        assert sorted(cap.left_out) == (sliding if missed else []), (far, window, cap.left_out)
        assert cap.supervised_layers == cfg.num_hidden_layers - (len(sliding) if missed else 0)
        assert [n for n in notices if "left out" in n] == ([f"KLAL: layer {i} left out: {cap.left_out[i]}" for i in sliding] if missed else [])
        kept = [i for i in cap.layers if i not in cap.left_out]
        expected, ref = eager_reference(model, batch, image_id, kept, fmt, special)
        assert abs(cap.loss.item() - expected.item()) < 1e-4 * max(1.0, expected.item())
        if missed:
            assert_same_grads(grads(cap.loss, model), grads(expected, ref), rtol=1e-3)
        with torch.no_grad():
            attn = ref(**inputs(batch), output_attentions=True).attentions
        for b in range(batch["input_ids"].shape[0]):
            first = int((batch["input_ids"][b] == image_id).nonzero()[0])
            q = max(answer_queries(batch, b, special, fmt))
            for layer in sliding:  # left out <=> the model's own mask hides the image's first token from the farthest query
                hidden = bool((attn[layer][b, :, q, first] == 0).all())
                if q - first == far:
                    assert hidden == missed, (layer, q - first, window)
                else:
                    assert not hidden
    assert seen == {False, True}


# ----------------------------------------------------------------------------- profiles and PaliGemma


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_processor_gives_its_profile(name, linebench_cache):
    from linebench.train.data import map_profile

    proc = tiny.load_processor(tiny.cached(REGISTRY[name].tiny_name))
    want = {"gemma-3": "gemma-3:image_size=224:mm_tokens_per_image=64", "gemma-4": "gemma-4:max_soft_tokens=70"}[name]
    assert map_profile(proc) == REGISTRY[name].profile(proc) == want


def test_checkpoint_like_processors_give_the_default_profiles():
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor, Gemma4ImageProcessorPil

    from linebench.families.base import tokenizer
    from linebench.families.gemma import GEMMA3_NAMED, GEMMA4_NAMED, GEMMA4_VIDEO, gemma3_profile, gemma4_processor_class, gemma4_profile

    tok = tokenizer(GEMMA3_NAMED["boi_token"], extra_special=tuple(GEMMA3_NAMED.values()))
    tok._set_model_specific_special_tokens(GEMMA3_NAMED)
    p3 = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 896, "width": 896}), tokenizer=tok)  # google/gemma-3-4b-it's values
    assert gemma3_profile(p3) == "gemma-3"
    tok = tokenizer(GEMMA4_NAMED["image_token"], extra_special=(*GEMMA4_NAMED.values(), GEMMA4_VIDEO))
    tok._set_model_specific_special_tokens(GEMMA4_NAMED)
    p4 = gemma4_processor_class()(feature_extractor=None, image_processor=Gemma4ImageProcessorPil(), tokenizer=tok, video_processor=None)
    assert gemma4_profile(p4) == "gemma-4"
    p4.image_processor.max_soft_tokens = 560
    assert gemma4_profile(p4) == "gemma-4:max_soft_tokens=560"


def test_paligemma_is_listed_and_refused_in_one_line():
    from linebench.errors import UsageError
    from linebench.families import for_model_type, matrix

    row = next(r for r in matrix() if r["family"].startswith("PaliGemma"))
    assert row["train"] == "✗" and "collator" in row["checked"]
    with pytest.raises(UsageError, match="cannot be trained with KLAL yet") as e:
        for_model_type("paligemma")
    assert "\n" not in str(e.value)


def test_paligemma_cannot_go_through_trl_collator():
    """The reason PaliGemma is refused, on the real classes: TRL's collator processes the completion
    without images, which PaliGemmaProcessor refuses; the processor's own training format marks the
    answer (its `suffix`) with token_type_ids 1, which the collator has no way to ask for."""
    from PIL import Image
    from transformers import PaliGemmaProcessor, SiglipImageProcessorPil
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from linebench.families.base import tokenizer
    from linebench.families.gemma import paligemma_profile

    tok = tokenizer("<image>", extra_special=("<bos>",))
    tok.bos_token = "<bos>"
    ip = SiglipImageProcessorPil(size={"height": 224, "width": 224})
    ip.image_seq_length = 256
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=tok.chat_template)
    assert paligemma_profile(proc) == "paligemma-224"
    image = Image.new("RGB", (640, 480))
    example = {"prompt": [{"role": "user", "content": "which cell is red ?"}], "completion": [{"role": "assistant", "content": "( 3 , 5 )"}], "images": [image]}
    with pytest.raises(ValueError, match="`images` are expected"):
        DataCollatorForVisionLanguageModeling(proc, completion_only_loss=True)([example])
    out = proc(images=[image], text=["<image>which cell is red ?"], suffix=["( 3 , 5 )"], return_tensors="pt")
    kinds = out["token_type_ids"][0]
    answer = out["labels"][0] != -100
    assert bool(answer.any()) and torch.equal(kinds.bool(), answer)  # the answer alone is the causal suffix
