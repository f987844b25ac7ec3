"""KLAL captured inside tiny random HF models (built from configs) against KLAL computed from the
same model run with eager attention and output_attentions=True."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
pytest.importorskip("transformers")

from linebench.train import KLALCapture, parse_layers  # noqa: E402
from linebench.train.capture import CaptureError  # noqa: E402

from family_util import assert_same_grads, eager_copy, grads, kl_row, mean_kl  # noqa: E402

IMG = 63  # LLaVA's image token in these tiny models
# Models and tensors live where the kernels run: a GPU if there is one (compiled), else the CPU
# (Triton's interpreter).
DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def on_the_kernel_device():
    torch.set_default_device(DEV)
    yield
    torch.set_default_device("cpu")


def text_config(layers=3):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, attention_dropout=0.0,
    )  # fmt: skip


def llava():
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)
    cfg = LlavaConfig(vision_config=vision, text_config=text_config(), image_token_id=IMG, vision_feature_layer=-1, vision_feature_select_strategy="default", image_seq_length=4)
    return LlavaForConditionalGeneration(cfg).float()


def qwen():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0},
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0]),
        image_token_id=70, video_token_id=71, vision_start_token_id=72, vision_end_token_id=73,
    )  # fmt: skip
    return Qwen2_5_VLForConditionalGeneration(cfg).float()


def tmap(n, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g, device="cpu")
    p[torch.rand(n, generator=g, device="cpu") < 0.4] = 0
    p[0] += 0.05
    return (p / p.sum()).to(DEV)


def llava_batch(two_images=False):
    """Sample 0: image at 2..5, right-padded (last token); sample 1 left-padded by 2, image at
    4..7 (and 9..12 with two_images)."""
    torch.manual_seed(1)
    length = 18
    ids = torch.randint(1, 60, (2, length))
    ids[0, 2:6] = IMG
    ids[1, :2] = 0
    ids[1, 4:8] = IMG
    if two_images:
        ids[1, 9:13] = IMG
    labels = torch.full((2, length), -100)
    labels[0, 13:16] = ids[0, 14:17]
    labels[1, 15:18] = ids[1, 15:18]
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, :2] = 0
    mask[0, -1] = 0
    ids[0, -1] = 0
    labels[0, -1] = -100
    images = 3 if two_images else 2
    pixels = torch.randn(images, 3, 28, 28)
    targets = [tmap(4, 0), [tmap(4, 1), tmap(4, 2)] if two_images else tmap(4, 1)]
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels), targets


def qwen_batch(wide=False):
    """Two samples, one 4-token image each (a 4x4 patch grid, merged 2x2); with `wide`, sample 1's
    image is 4x8 patches: 8 tokens (dynamic resolution)."""
    torch.manual_seed(1)
    second = 8 if wide else 4
    length = 16 + second - 4
    ids = torch.randint(3, 60, (2, length))
    ids[0, 1], ids[0, 2:6], ids[0, 6] = 72, 70, 73
    ids[1, :2] = 0
    ids[1, 3], ids[1, 4 : 4 + second], ids[1, 4 + second] = 72, 70, 73
    labels = torch.full((2, length), -100)
    labels[0, 11:14] = ids[0, 11:14]
    labels[1, length - 3 :] = ids[1, length - 3 :]
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, :2] = 0
    grid = torch.tensor([[1, 4, 4], [1, 4, 2 * second // 2]])
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
    inputs = dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=pixels, image_grid_thw=grid)
    return inputs, [tmap(4, 3), tmap(second, 4)]


def rows_of(inputs, targets, image_token, query, special=(2,), fmt=()):
    """(sample, query position, image start, P) the long way, for the eager reference: the query
    that produces an answer token sits one position before it (special tokens are not answers;
    `fmt` tokens carry no content)."""
    out = []
    for b in range(inputs["input_ids"].shape[0]):
        ids = inputs["input_ids"][b].tolist()
        pos = [i for i, t in enumerate(ids) if t == image_token]
        starts = [p for p in pos if p - 1 not in pos]
        labelled = [i for i, v in enumerate(inputs["labels"][b].tolist()) if v != -100]
        answer = [i for i in labelled if ids[i] not in special]
        content = [i for i in answer if ids[i] not in fmt] or answer[-1:]
        queries = {
            "answer-content": [p - 1 for p in content],
            "last-answer": [answer[-1] - 1], "answer-start": [answer[0] - 1], "all-answer": [p - 1 for p in answer],
            "at-last-label": labelled[-1:],
        }[query] if answer else []  # fmt: skip
        maps = targets[b] if isinstance(targets[b], list) else [targets[b]]
        out.append([(b, qp, s, p) for s, p in zip(starts, maps) for qp in queries])
    return out


def eager_klal(model, inputs, per_sample, layers):
    """KLAL from output_attentions: the query's row, the image's columns, renormalised, head mean, KL."""
    ref = eager_copy(model)
    out = ref(**inputs, output_attentions=True)
    rows = [[(b, qp, slice(start, start + p.numel()), p) for b, qp, start, p in sample] for sample in per_sample]
    return mean_kl([out.attentions[layer] for layer in layers], rows), ref


def captured(model, inputs, targets, **kw):
    cap = KLALCapture(model, **kw)
    with cap.batch(inputs["input_ids"], inputs["labels"], targets):
        out = model(**inputs)
    return cap, out


@pytest.mark.parametrize("query", ["answer-content", "last-answer", "answer-start", "all-answer", "at-last-label"])
def test_llava_capture_equals_eager_attentions(query):
    model = llava()
    inputs, targets = llava_batch()
    layers = [0, 1, 2]
    fmt = set(inputs["input_ids"][0, 12:13].tolist())  # one answer token of sample 0 is "format"
    expected, ref = eager_klal(model, inputs, rows_of(inputs, targets, IMG, query, fmt=fmt), layers)
    cap, out = captured(model, inputs, targets, query=query, backend="triton", format_ids=fmt)
    assert model.config.text_config._attn_implementation == "linebench_klal"
    assert model.config.vision_config._attn_implementation != "linebench_klal"
    assert abs(cap.loss.item() - expected.item()) < 1e-5 and expected.item() > 0
    assert_same_grads(grads(cap.loss, model), grads(expected, ref))


def test_llava_two_images_in_one_sample_one_map_each():
    model = llava()
    inputs, targets = llava_batch(two_images=True)
    expected, _ = eager_klal(model, inputs, rows_of(inputs, targets, IMG, "answer-content"), [0, 1, 2])
    cap, _ = captured(model, inputs, targets, backend="triton")
    assert abs(cap.loss.item() - expected.item()) < 1e-5


def test_qwen2_5_vl_capture_equals_eager_attentions():
    model = qwen()
    inputs, targets = qwen_batch()
    expected, ref = eager_klal(model, inputs, rows_of(inputs, targets, 70, "answer-content"), [0, 1])
    cap, out = captured(model, inputs, targets, backend="triton")
    assert abs(cap.loss.item() - expected.item()) < 1e-5
    assert_same_grads(grads(cap.loss, model), grads(expected, ref))


def test_a_llama_text_model_given_the_visual_spans():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(text_config(layers=2)).float()
    inputs, targets = llava_batch()
    inputs = {k: v for k, v in inputs.items() if k != "pixel_values"}
    spans = [[(2, 4)], [(4, 4)]]
    expected, _ = eager_klal(model, inputs, rows_of(inputs, targets, IMG, "answer-content"), [1])
    cap = KLALCapture(model, layers="last:1", backend="triton")
    with cap.batch(inputs["input_ids"], inputs["labels"], targets, visual_spans=spans):
        model(**inputs)
    assert abs(cap.loss.item() - expected.item()) < 1e-5


def _split_image_batch():
    """One sample, one image whose 6 tokens lie in two runs with a text token between them (tiles
    with a marker between, as Idefics3 and SmolVLM place them): positions 2, 3, 4 and 6, 7, 8."""
    torch.manual_seed(3)
    ids = torch.randint(3, 60, (1, 16))
    ids[0, 2:5], ids[0, 6:9] = IMG, IMG
    labels = torch.full((1, 16), -100)
    labels[0, 12:15] = ids[0, 12:15]
    return {"input_ids": ids.to(DEV), "attention_mask": torch.ones(1, 16, dtype=torch.long, device=DEV), "labels": labels.to(DEV)}, [tmap(6, 5)]


@pytest.mark.parametrize("how", ["spans", "runs"])
def test_an_image_in_several_runs_is_one_map_over_its_tokens(how):
    """The image's keys are gathered (no marker token in Q's normalisation): the loss and its gradients
    equal the eager reference over exactly those columns, whether the spans are given or found from
    runs of the image token grouped by the map's size."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(text_config(layers=2)).float().to(DEV)
    inputs, targets = _split_image_batch()
    cols = [2, 3, 4, 6, 7, 8]
    ref = eager_copy(model)
    attn = ref(**inputs, output_attentions=True).attentions[1]
    p = targets[0].to(DEV)
    # answer tokens 12..14: their queries 11..13 (no format ids: all count)
    expected = torch.stack([kl_row(attn[0, :, qp, cols], p) for qp in range(11, 14)]).mean()
    cap = KLALCapture(model, layers="last:1", backend="triton", special_ids=())
    spans = [[[(2, 3), (6, 3)]]] if how == "spans" else None
    if how == "runs":
        cap.image_token_id = IMG
    with cap.batch(inputs["input_ids"], inputs["labels"], targets, visual_spans=spans):
        model(**inputs)
    assert abs(cap.loss.item() - expected.item()) < 1e-5 and expected.item() > 0
    assert_same_grads(grads(cap.loss, model), grads(expected, ref))


def test_layer_selection_matches_the_same_layers_of_eager():
    model = llava()
    inputs, targets = llava_batch()
    expected, _ = eager_klal(model, inputs, rows_of(inputs, targets, IMG, "answer-content"), [0, 2])
    cap, _ = captured(model, inputs, targets, layers="0,-1", backend="triton")
    assert cap.layers == [0, 2] and abs(cap.loss.item() - expected.item()) < 1e-5


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    inputs, targets = llava_batch()
    results = []
    for checkpointing in (False, True):
        model = llava()
        model.train()  # HF checkpoints only in training mode; every dropout is 0 here
        if checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.20
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        cap, out = captured(model, inputs, targets, backend="triton")
        total = out.loss + cap.loss
        results.append((cap.loss.item(), out.loss.item(), grads(total, model)))
        assert cap.recomputed == (3 if checkpointing else 0)  # each layer re-ran once in backward
    (k1, n1, g1), (k2, n2, g2) = results
    assert abs(k1 - k2) < 1e-6 and abs(n1 - n2) < 1e-6
    assert_same_grads(g1, g2)


def test_the_torch_backend_gives_the_same_loss():
    model = llava()
    inputs, targets = llava_batch()
    a, _ = captured(model, inputs, targets, backend="triton")
    la = a.loss.item()
    a.remove()
    b, _ = captured(model, inputs, targets, backend="torch")
    assert abs(la - b.loss.item()) < 1e-5


def test_remove_restores_the_base_attention():
    model = llava()
    cap = KLALCapture(model)
    cap.remove()
    assert model.config.text_config._attn_implementation == "sdpa"
    inputs, targets = llava_batch()
    with cap.batch(inputs["input_ids"], inputs["labels"], targets):
        model(**inputs)  # runs on the base attention: nothing reaches the capture
        with pytest.raises(CaptureError, match="no KLAL recorded"):
            cap.loss


def test_batch_errors():
    model = llava()
    inputs, targets = llava_batch()
    cap = KLALCapture(model)
    ids, labels = inputs["input_ids"], inputs["labels"]
    with pytest.raises(CaptureError, match="has 4 tokens but its target map has 5"):
        with cap.batch(ids, labels, [tmap(5, 0), tmap(4, 1)]):
            pass
    with pytest.raises(CaptureError, match="1 image.* but 2 target"):
        with cap.batch(ids, labels, [targets[0], [targets[1], targets[1]]]):
            pass
    with pytest.raises(CaptureError, match="no KLAL recorded"):
        with cap.batch(ids, labels, targets):
            pass
        cap.loss


def test_capture_arguments_are_checked():
    model = llava()
    with pytest.raises(CaptureError, match="base must be"):
        KLALCapture(model, base="nope")
    with pytest.raises(CaptureError, match="flash attention is not supported"):
        KLALCapture(model, base="flash_attention_2")
    with pytest.raises(CaptureError, match="query must be"):
        KLALCapture(model, query="first")
    with pytest.raises(CaptureError, match="out of range"):
        KLALCapture(model, layers=[5])


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("last:2", 4) == [2, 3]
    assert parse_layers("0, -1", 4) == [0, 3]
    assert parse_layers([1, 1, 2], 4) == [1, 2]
    for bad in ("last:0", "last:5", "7", "x", ""):
        with pytest.raises(CaptureError):
            parse_layers(bad, 4)


def test_a_sample_without_answer_tokens_is_skipped_and_counted():
    """A truncated sample (no label left) must not kill the step: it is left out of the mean."""
    model = llava()
    inputs, targets = llava_batch()
    inputs["labels"] = inputs["labels"].clone()
    inputs["labels"][1] = -100
    rows = rows_of(inputs, targets, IMG, "answer-content")
    expected, _ = eager_klal(model, inputs, [r for r in rows if r], [0, 1, 2])
    with pytest.warns(UserWarning, match="1 sample.*no answer token"):
        cap, _ = captured(model, inputs, targets, backend="triton")
    assert cap.skipped == 1 and abs(cap.loss.item() - expected.item()) < 1e-5


def test_the_rows_do_not_outlive_the_batch():
    """After the `with` block a forward (a shorter input, or generate) runs unsupervised: no
    IndexError from stale rows, and the recorded loss stays that of the batch."""
    model = llava()
    inputs, targets = llava_batch()
    cap, _ = captured(model, inputs, targets, backend="triton")
    before = cap.loss.item()
    short = {k: (v[:, :8] if k in ("input_ids", "attention_mask", "labels") else v) for k, v in inputs.items()}
    model(**short)
    model(**inputs)  # same length: would have overwritten cap.loss
    assert cap.loss.item() == before
    with pytest.raises(CaptureError):
        with cap.batch(inputs["input_ids"], inputs["labels"], targets):
            raise CaptureError("boom")
    model(**short)  # cleared on error too


def test_reentrant_checkpointing_is_refused():
    model = llava()
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    inputs, targets = llava_batch()
    cap = KLALCapture(model, backend="triton")
    # refused up front, before any forward (the per-layer "without autograd" check is the fallback)
    with pytest.raises(CaptureError, match="reentrant gradient checkpointing runs the forward"):
        with cap.batch(inputs["input_ids"], inputs["labels"], targets):
            pass


def test_a_forward_without_autograd_in_training_is_refused():
    """What reentrant checkpointing does inside each layer, caught at the layer too."""
    model = llava()
    model.train()
    inputs, targets = llava_batch()
    cap = KLALCapture(model, backend="triton")
    with pytest.raises(CaptureError, match="without autograd"):
        with cap.batch(inputs["input_ids"], inputs["labels"], targets):
            with torch.no_grad():
                model(**inputs)


def test_packed_batches_are_refused():
    model = llava()
    inputs, targets = llava_batch()
    cap = KLALCapture(model, backend="triton")
    positions = torch.cat([torch.arange(9), torch.arange(9)])[None].repeat(2, 1)  # two samples per row
    with pytest.raises(CaptureError, match="packed"):
        with cap.batch(inputs["input_ids"], inputs["labels"], targets):
            model(**inputs, position_ids=positions)


def test_a_deep_copy_runs_the_base_unsupervised():
    model = llava()
    inputs, targets = llava_batch()
    cap = KLALCapture(model, backend="triton")
    twin = copy.deepcopy(model)
    with cap.batch(inputs["input_ids"], inputs["labels"], targets):
        out_twin = twin(**inputs)
        out = model(**inputs)
    assert torch.allclose(out_twin.logits, out.logits, atol=1e-5)  # the copy computes the same outputs
    cap.loss  # recorded from the original's layers (the copy records nothing over it)
    with cap.batch(inputs["input_ids"], inputs["labels"], targets):
        twin(**inputs)
    with pytest.raises(CaptureError, match="no KLAL recorded"):
        cap.loss


def test_one_op_call_per_layer_with_images_of_different_sizes(monkeypatch):
    """Qwen2.5-VL at dynamic resolution: two images of different token counts, one call per layer
    (rows padded to the longest), and the loss still equals eager attention's."""
    import linebench.train.capture as capture_mod

    model = qwen()
    inputs, targets = qwen_batch(wide=True)
    expected, _ = eager_klal(model, inputs, rows_of(inputs, targets, 70, "last-answer"), [0, 1])
    calls = []
    real = capture_mod.klal_loss
    monkeypatch.setattr(capture_mod, "klal_loss", lambda *a, **kw: calls.append(kw["lengths"].tolist()) or real(*a, **kw))
    cap, _ = captured(model, inputs, targets, backend="triton", query="last-answer")  # one query per image
    assert calls == [[4, 8], [4, 8]]  # one call per layer, both images
    assert abs(cap.loss.item() - expected.item()) < 1e-5


def test_the_capture_adds_no_graph_break_under_torch_compile():
    """No host sync or untraceable call per layer: a Llama model with the capture compiles into as
    many graphs as without it (TorchDynamo's explain; the reference op keeps it CPU-friendly)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(text_config(layers=2)).float().eval()
    inputs, targets = llava_batch()
    inputs = {k: v for k, v in inputs.items() if k != "pixel_values"}
    torch._dynamo.reset()
    plain = torch._dynamo.explain(model)(**inputs).graph_break_count
    cap = KLALCapture(model, backend="torch")
    torch._dynamo.reset()
    spans = [[(2, 4)], [(4, 4)]]
    with cap.batch(inputs["input_ids"], inputs["labels"], targets, visual_spans=spans):
        captured_breaks = torch._dynamo.explain(model)(**inputs).graph_break_count
        traced = cap.loss.detach().clone()  # KLAL was recorded in the traced run
    assert captured_breaks == plain
    torch._dynamo.reset()
    with cap.batch(inputs["input_ids"], inputs["labels"], targets, visual_spans=spans):
        model(**inputs)
        eager = cap.loss.detach().clone()
    assert float(eager) > 0 and torch.allclose(traced, eager, rtol=1e-5, atol=1e-6)


def test_the_default_query_produces_the_answers_content_tokens():
    """"(3, 5)" then end of turn, tokenized as ( 3 , 5 ): the default supervises the queries that
    produce "3" and "5" (at "(" and ","), never the one that produces the format token ")";
    last-answer takes that one; an answer of format tokens only falls back to its last token."""
    model = llava()
    inputs, targets = llava_batch()
    ids, labels = inputs["input_ids"].clone(), torch.full_like(inputs["input_ids"], -100)
    eos = model.config.text_config.eos_token_id
    opened, comma, closed, three, five = 40, 41, 42, 7, 9
    ids[0, 11:17] = torch.tensor([opened, three, comma, five, closed, eos])  # answer (3, 5)
    labels[0, 11:17] = ids[0, 11:17]
    ids[1, 16], ids[1, 17] = closed, eos  # an answer of one format token
    labels[1, 16:18] = ids[1, 16:18]
    fmt = {opened, comma, closed}
    cap = KLALCapture(model, backend="torch", format_ids=fmt)
    assert cap.query == "answer-content"
    with cap.batch(ids, labels, targets):
        pass
    assert cap._replay.query_pos.tolist() == [11, 13, 15]  # "(" produces 3, "," produces 5; sample 1: its last token
    last = KLALCapture(model, backend="torch", query="last-answer", format_ids=fmt)
    with last.batch(ids, labels, targets):
        pass
    assert last._replay.query_pos.tolist() == [14, 15]  # the query at "5" produces ")"
    batch = dict(inputs, input_ids=ids, labels=labels)
    expected, _ = eager_klal(model, batch, rows_of(batch, targets, IMG, "answer-content", special=(eos,), fmt=fmt), [0, 1, 2])
    cap2, _ = captured(model, batch, targets, backend="triton", format_ids=fmt)
    assert abs(cap2.loss.item() - expected.item()) < 1e-5


def test_one_token_answers_supervise_the_query_that_produces_them():
    """One-token answer then end of turn: answer-content and last-answer both supervise the query
    one before the answer (the one whose logits produce it); at-last-label, the end-of-turn position."""
    model = llava()
    inputs, targets = llava_batch()
    ids, labels = inputs["input_ids"].clone(), torch.full_like(inputs["input_ids"], -100)
    eos = model.config.text_config.eos_token_id
    ids[0, 14], ids[0, 15] = 7, eos  # answer "7", then EOS
    ids[1, 16], ids[1, 17] = 9, eos
    labels[0, 14:16] = ids[0, 14:16]
    labels[1, 16:18] = ids[1, 16:18]
    batch = dict(inputs, input_ids=ids, labels=labels)
    cap = KLALCapture(model, backend="torch")
    with cap.batch(ids, labels, targets):
        pass
    assert cap._replay.query_pos.tolist() == [13, 15]
    old = KLALCapture(model, backend="torch", query="at-last-label")
    with old.batch(ids, labels, targets):
        pass
    assert old._replay.query_pos.tolist() == [15, 17]
    expected, _ = eager_klal(model, batch, rows_of(batch, targets, IMG, "last-answer", special=(eos,)), [0, 1, 2])
    cap2, _ = captured(model, batch, targets, backend="triton")
    assert abs(cap2.loss.item() - expected.item()) < 1e-5


def _bpe_tokenizer(kind: str):
    """A small tokenizer trained here, in the style of a real model's: Qwen2.5-VL's byte-level BPE
    (digits one by one, byte-level pieces such as "Ġ(") or LLaVA-1.5's Llama BPE (SentencePiece's
    "▁" word marker, digits one by one)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"({r}, {c})" for r in range(1, 25) for c in range(1, 25)] + [str(i) for i in range(200)]
    corpus += ["[12, 34, 56, 78]", "[0.125, 0.5]", "Which cell contains the red star? Answer as (row, column).", "A B C D"] * 5
    if kind == "qwen":
        tk = Tokenizer(models.BPE(unk_token=None))
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])  # fmt: skip
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|im_end|>"])
    else:
        tk = Tokenizer(models.BPE(unk_token="<unk>"))
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)])
        tk.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "</s>"])
    tk.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>" if kind == "qwen" else "</s>")


@pytest.mark.parametrize("kind", ["qwen", "llama"])
@pytest.mark.parametrize("answer", ["3", "17", "(3, 5)", "(12, 7)", "[12, 34, 56, 78]", "[0.125, 0.5]"])
def test_format_tokens_on_real_style_tokenizations(kind, answer):
    """Each task's answers (a count, an end number, a cell, a box, a point) through tokenizers built
    like Qwen2.5-VL's and LLaVA-1.5's: the tokens answer-content supervises are exactly the ones that
    spell the answer's digits, and every bracket, comma and space is left out."""
    import re

    from linebench.train.capture import format_token_ids

    tok = _bpe_tokenizer(kind)
    fmt = format_token_ids(tok)
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    content = [i for i in ids if i not in fmt]
    assert "".join(tok.decode([i]) for i in content).replace(" ", "") == re.sub(r"[^0-9A-Za-z]", "", answer)
    assert len(content) < len(ids) or answer.isdigit()  # something was left out where there is format
    assert all(re.search(r"[0-9A-Za-z]", tok.decode([i])) is None for i in ids if i in fmt)
