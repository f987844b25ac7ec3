"""Qwen3-VL and Qwen3.5 beyond the generic family test (tests/test_families.py).

- Qwen3-VL's map profile against the whole `Qwen3VLProcessor` (image tokens in input_ids, not only the
  image processor's grid) at the checkpoints' min/max pixels, and its parameters read back from it;
- Qwen3.5 has no processor of its own: transformers maps `qwen3_5` to Qwen3-VL's processor and image
  processor, so its map profile is `qwen3-vl`;
- Qwen3.5's Gated DeltaNet layers (`linear_attn`, no `self_attn`) are the layers the capture leaves out,
  exactly those `layer_types` calls linear; selecting only them is refused;
- KLAL over the remaining (full-attention) layers and its gradients equal the eager `output_attentions`
  reference, whose `attentions` has one entry per full-attention layer only.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("transformers")

from linebench.families import REGISTRY, for_model_type, for_processor  # noqa: E402
from linebench.grids import layout  # noqa: E402
from linebench.train import tiny  # noqa: E402

from family_util import (  # noqa: E402
    assert_same_grads_linear_attention_looser,
    capture_batch,
    eager_reference,
    grads,
    grid_patch_rows,
    load_tiny,
    one_image,
)

CKPT_MIN, CKPT_MAX = 65536, 16777216  # Qwen/Qwen3-VL-8B-Instruct's preprocessor_config.json


def real_processor(min_pixels=CKPT_MIN, max_pixels=CKPT_MAX):
    """Qwen3VLProcessor (without its video processor) with a checkpoint's image settings."""
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLProcessor

    from linebench.families.base import tokenizer
    from linebench.families.qwen import processor_class
    from linebench.families.qwen3 import PLACEHOLDER

    tok = tokenizer(PLACEHOLDER)
    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=16, merge_size=2, temporal_patch_size=2)
    return processor_class(Qwen3VLProcessor)(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)


@pytest.mark.parametrize("canvas", [(224, 224), (448, 448), (640, 480), (480, 640), (1000, 300), (20, 30)])
def test_qwen3_vl_map_has_as_many_values_as_the_processor_puts_image_tokens(canvas):
    proc = real_processor()
    name = REGISTRY["qwen3-vl"].profile(proc)
    assert name == "qwen3-vl"  # the checkpoint's values are the profile's defaults
    out = one_image(proc, canvas)
    ids = out["input_ids"][0]
    lay = layout(name, canvas)
    image = (ids == proc.image_token_id).nonzero().flatten()
    assert len(image) == lay.num_placeholders == lay.num_tokens
    assert int(image[-1] - image[0]) + 1 == len(image)  # one run, between vision start and end
    assert int(ids[image[0] - 1]) == proc.vision_start_token_id and int(ids[image[-1] + 1]) == proc.vision_end_token_id
    t, gh, gw = out["image_grid_thw"][0].tolist()
    assert (t, gh // 2, gw // 2) == (1, *lay.grids[0].shape)


def test_qwen3_vl_profile_reads_min_and_max_pixels_and_refuses_other_patches():
    from linebench.errors import UsageError

    assert REGISTRY["qwen3-vl"].profile(real_processor(max_pixels=200704)) == "qwen3-vl:max_pixels=200704"
    proc = real_processor()
    proc.image_processor.patch_size = 14  # a Qwen2.5-VL-style image processor: not this layout
    with pytest.raises(UsageError, match="16 px patches"):
        REGISTRY["qwen3-vl"].profile(proc)


def test_qwen3_5_uses_qwen3_vl_processor_and_profile():
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    assert PROCESSOR_MAPPING_NAMES["qwen3_5"] == PROCESSOR_MAPPING_NAMES["qwen3_vl"] == "Qwen3VLProcessor"
    assert IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_5"] == IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_vl"]
    assert for_model_type("qwen3_5").name == "qwen3.5" and for_model_type("qwen3_vl").name == "qwen3-vl"
    proc = real_processor()
    assert for_processor(proc).profile(proc) == REGISTRY["qwen3.5"].profile(proc) == "qwen3-vl"


@pytest.fixture(scope="module")
def qwen3_5(linebench_cache):
    return load_tiny("tiny-qwen3.5")


def test_qwen3_5_linear_attention_layers_are_left_out(qwen3_5):
    from linebench.train import KLALCapture
    from linebench.train.capture import CaptureError

    model, _ = qwen3_5
    assert type(model).__name__ == "Qwen3_5ForConditionalGeneration"
    types = model.config.text_config.layer_types
    blocks = model.get_decoder().layers
    # transformers builds `linear_attn` (Gated DeltaNet) and no `self_attn` exactly where layer_types says so
    for kind, block in zip(types, blocks):
        assert hasattr(block, "self_attn") == (kind == "full_attention") and hasattr(block, "linear_attn") == (kind == "linear_attention")
    linear = [i for i, kind in enumerate(types) if kind == "linear_attention"]
    assert linear == [0, 2]
    cap = KLALCapture(model, backend="torch")
    try:
        assert sorted(cap.left_out) == linear and all("linear attention" in why for why in cap.left_out.values())
        assert cap.layers == [1, 3]
    finally:
        cap.remove()
    cap = KLALCapture(model, layers="0,1", backend="torch")
    try:
        assert cap.layers == [1]
    finally:
        cap.remove()
    with pytest.raises(CaptureError, match="linear attention"):
        KLALCapture(model, layers="0,2", backend="torch")


def test_qwen3_5_klal_over_the_full_attention_layers_equals_the_eager_reference(qwen3_5, tmp_path):
    """The eager reference's `attentions` holds one entry per full-attention layer (the linear ones record none)."""
    from linebench.train.data import KLALCollator, as_example

    model, proc = qwen3_5
    rows = grid_patch_rows(tmp_path / "rows", n=2, seed=5)
    collator = KLALCollator(proc)
    assert collator.profile.startswith("qwen3-vl")
    batch = collator([as_example(r) for r in rows])
    assert "mm_token_type_ids" in batch  # mRoPE positions need them
    cap, fmt, special = capture_batch(model, proc, batch)
    try:
        assert cap.layers == [1, 3] and cap.supervised_layers == 2
        expected, ref = eager_reference(model, batch, collator.image_token_id, cap.layers, fmt, special)
        assert abs(cap.loss.item() - expected.item()) < 1e-4 * max(1.0, expected.item()) and expected.item() > 0
        g_cap, g_ref = grads(cap.loss, model), grads(expected, ref)
        # The Gated DeltaNet parameters get KLAL's gradient too (through the q/k of the layers after
        # them), within 1e-4 of their largest gradient (see the helper); those of layer 0 are not all 0.
        names, linear = assert_same_grads_linear_attention_looser(model, g_cap, g_ref)
        assert any(g_cap[i] is not None and float(g_cap[i].abs().max()) > 0 for i in linear if ".layers.0." in names[i])
    finally:
        cap.remove()


def test_qwen3_vl_tiny_uses_deepstack_and_interleaved_mrope(linebench_cache):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny.cached("tiny-qwen3-vl"))
    assert cfg.model_type == "qwen3_vl" and list(cfg.vision_config.deepstack_visual_indexes) == [0, 1]
    assert cfg.text_config.rope_parameters["mrope_interleaved"] and sum(cfg.text_config.rope_parameters["mrope_section"]) == cfg.text_config.head_dim // 2
