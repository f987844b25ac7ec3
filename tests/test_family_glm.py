"""GLM-4.1V beyond the generic family test (tests/test_families.py).

- the map profile is read from the image processor (min/max pixels; 14 px patches merged 2x2 only);
- the processor (transformers' `Glm4vProcessor` without its torchvision video processor) saves and reloads;
- training batches carry `mm_token_type_ids`, so the model places the image tokens with its 3-D mRoPE
  positions (rows and columns) as at inference, and KLAL is read after that rotation.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY, for_model_type, for_processor  # noqa: E402
from linebench.grids import layout  # noqa: E402

from family_util import grid_patch_rows, image_token_count  # noqa: E402

FAMILY = REGISTRY["glm-4.1v"]


def processor(**image_kw):
    from transformers import Glm4vImageProcessorPil

    from linebench.families.base import tokenizer
    from linebench.families.glm import PLACEHOLDER, SPECIAL, processor_class

    tok = tokenizer(PLACEHOLDER, extra_special=SPECIAL)
    return processor_class()(image_processor=Glm4vImageProcessorPil(**image_kw), tokenizer=tok, video_processor=None, chat_template=tok.chat_template)


@pytest.mark.parametrize(
    "image_kw,want",
    [
        ({"size": {"shortest_edge": 12544, "longest_edge": 9633792}}, "glm-4.1v"),  # zai-org/GLM-4.1V-9B-Thinking
        ({}, "glm-4.1v:max_pixels=11760000"),  # the class defaults
        ({"size": {"shortest_edge": 3136, "longest_edge": 401408}}, "glm-4.1v:max_pixels=401408:min_pixels=3136"),
    ],
)
def test_profile_reads_the_processor(image_kw, want):
    proc = processor(**image_kw)
    assert for_processor(proc) is FAMILY and for_model_type("glm4v") is FAMILY
    assert FAMILY.profile(proc) == want
    for canvas in [(640, 480), (300, 1000)]:
        assert image_token_count(proc, canvas) == layout(want, canvas).num_placeholders


def test_profile_refuses_other_patches():
    with pytest.raises(UsageError, match="14 px patches merged 2x2"):
        FAMILY.profile(processor(patch_size=16))
    with pytest.raises(UsageError, match="14 px patches merged 2x2"):
        FAMILY.profile(processor(merge_size=1))


def test_processor_saves_and_reloads_without_a_video_processor(tmp_path):
    proc = processor(size={"shortest_edge": 12544, "longest_edge": 9633792})
    proc.save_pretrained(tmp_path)
    again = FAMILY.load_processor(tmp_path)
    assert type(again).__name__ == "TinyGlm4vProcessor" and FAMILY.profile(again) == "glm-4.1v"
    assert again.image_token_id == proc.image_token_id and again.chat_template == proc.chat_template


def test_training_batches_give_image_tokens_their_2d_mrope_positions(tmp_path):
    from linebench.train.data import KLALCollator, as_example

    torch.manual_seed(0)
    model, proc = FAMILY.build_tiny()
    batch = KLALCollator(proc)([as_example(r) for r in grid_patch_rows(tmp_path / "d", n=2, seed=5)])
    assert "mm_token_type_ids" in batch
    pos, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], image_grid_thw=batch["image_grid_thw"], attention_mask=batch["attention_mask"])
    lay = layout(FAMILY.profile(proc), (640, 480))
    rows, cols = lay.grids[0].shape
    for b in range(batch["input_ids"].shape[0]):
        image = (batch["input_ids"][b] == proc.image_token_id).nonzero().flatten()
        assert len(image) == lay.num_tokens
        t, h, w = (pos[axis, b, image] - pos[axis, b, image[0]] for axis in range(3))
        assert t.abs().max() == 0
        assert h.tolist() == [r for r in range(rows) for _ in range(cols)] and w.tolist() == [c for _ in range(rows) for c in range(cols)]
