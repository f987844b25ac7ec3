"""Mistral 3 beyond the generic family test (tests/test_families.py).

- the map profile is read from the processor (longest edge, patch size, spatial merge: Mistral Small 3.1's
  and Pixtral-12B's settings); the processor is transformers' `PixtralProcessor`, imported and reloaded
  without torchvision (no alias left behind);
- one image is one run of `[IMG]` per token row, `[IMG_BREAK]` between the rows and `[IMG_END]` after the
  last (text tokens, not image tokens), and the capture makes the runs one image;
- the captured KLAL and its gradients equal the eager `output_attentions` reference over exactly the
  `[IMG]` tokens (two images in one sample, two samples), not over the image's whole span.
"""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY, for_model_type, for_processor  # noqa: E402
from linebench.grids import layout  # noqa: E402

from family_util import (  # noqa: E402
    between_runs,
    build_tiny,
    check_klal_over_exactly_the_image_tokens,
    image_columns,
    image_group,
    image_token_count,
    make_batch,
    run_starts,
)

FAMILY = REGISTRY["mistral-3"]


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny(FAMILY.build_tiny)


def processor(longest=1540, patch=14, merge=2):
    from transformers import PixtralImageProcessorPil

    from linebench.families.base import tokenizer
    from linebench.families.mistral import SPECIAL, processor_class

    tok = tokenizer("[IMG]", extra_special=SPECIAL)
    image_proc = PixtralImageProcessorPil(size={"longest_edge": longest}, patch_size={"height": patch, "width": patch})
    return processor_class()(image_processor=image_proc, tokenizer=tok, patch_size=patch, spatial_merge_size=merge, chat_template=tok.chat_template)


@pytest.mark.parametrize(
    "settings,want",
    [((1540, 14, 2), "mistral-3"), ((1024, 16, 1), "mistral-3:longest_edge=1024:patch_size=16:spatial_merge_size=1"), ((896, 14, 2), "mistral-3:longest_edge=896")],
)
def test_profile_reads_the_processor(settings, want):
    proc = processor(*settings)
    assert for_processor(proc) is FAMILY and for_model_type("mistral3") is FAMILY
    assert FAMILY.profile(proc) == want
    for canvas in [(640, 480), (300, 1000), (2000, 1500)]:
        assert image_token_count(proc, canvas) == layout(want, canvas).num_placeholders
    proc.image_processor.size = {"height": 448, "width": 448}
    with pytest.raises(UsageError, match="longest_edge"):
        FAMILY.profile(proc)


def test_processor_is_transformers_own_and_reloads(tiny_model, tmp_path):
    from linebench.families.mistral import _TORCHVISION_IP

    _, proc = tiny_model
    assert type(proc).__module__ == "transformers.models.pixtral.processing_pixtral" and type(proc).__name__ == "PixtralProcessor"
    assert _TORCHVISION_IP not in sys.modules or "torchvision" in sys.modules  # the alias does not outlive the import
    proc.save_pretrained(tmp_path)
    again = FAMILY.load_processor(tmp_path)
    assert type(again) is type(proc) and FAMILY.profile(again) == FAMILY.profile(proc) == "mistral-3:longest_edge=224"
    assert (again.patch_size, again.spatial_merge_size, again.image_token_id) == (proc.patch_size, proc.spatial_merge_size, proc.image_token_id)


def test_an_image_is_one_run_per_row_and_one_map(tiny_model):
    model, proc = tiny_model
    tok = proc.tokenizer
    batch, targets = make_batch(proc, [[(640, 480)]])
    ids = batch["input_ids"][0]
    img = model.config.image_token_id
    assert img == proc.image_token_id == tok.convert_tokens_to_ids("[IMG]")
    lay = layout(FAMILY.profile(proc), (640, 480))
    assert lay.grids[0].shape == (6, 8) and lay.num_tokens == lay.num_placeholders == 48  # 224 x 168 px
    (cols,) = image_columns(ids, img, [48])
    runs = run_starts(cols)
    assert len(runs) == 6
    between = between_runs(tok, ids, cols)
    assert between == [["[IMG_BREAK]"]] * 5 and tok.convert_ids_to_tokens(int(ids[cols[-1] + 1])) == "[IMG_END]"
    group = image_group(model, tok, batch, targets)
    assert group.positions is not None and group.positions[0].tolist() == cols


def test_klal_equals_the_eager_reference_over_exactly_the_image_tokens(tiny_model):
    model, proc = tiny_model
    # sample 0: two images (8 rows of 8, then 8 rows of 3 tokens); sample 1: one image (6 rows of 8)
    batch, targets = make_batch(proc, [[(224, 224), (100, 300)], [(640, 480)]], seed=1)
    assert [[len(p) for p in maps] for maps in targets] == [[64, 24], [48]]
    check_klal_over_exactly_the_image_tokens(model, proc, batch, targets, model.config.image_token_id)
