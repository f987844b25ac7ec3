"""Molmo2 beyond the generic family test (tests/test_families.py).

- the map profile is read from the image processor (crop size, max_crops) and refuses patches, margins or
  pooling it does not model; the processor (transformers' `Molmo2Processor`, its `Molmo2ImageProcessor`
  with torch's resize/normalize) puts as many `<im_patch>` tokens in input_ids as the map has values;
  it reloads from a saved folder without torchvision;
- one image is several runs of `<im_patch>` (the low-res view, then each high-res row followed by the
  `<im_col>` text token, `<im_end><im_start>` between the views), and the capture makes them one image;
- image tokens attend to each other both ways (`mm_token_type_ids`), the answer's queries causally; the
  captured KLAL and its gradients equal the eager `output_attentions` reference over exactly the
  `<im_patch>` tokens (two images in one sample, two samples), not the one over the image's whole span.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY, for_model_type  # noqa: E402
from linebench.families.molmo import build_tiny as build_molmo2  # noqa: E402  (the family is listed as blocked until the collator counts <im_patch>)
from linebench.grids import layout  # noqa: E402

from family_util import (  # noqa: E402
    between_runs,
    build_tiny,
    check_klal_over_exactly_the_image_tokens,
    eager_copy,
    image_columns,
    image_group,
    image_token_count,
    make_batch,
    run_starts,
)

FAMILY = REGISTRY["molmo2"]


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny(build_molmo2)


def processor(crop=378, max_crops=8, **image_kw):
    """The family's processor with a checkpoint's image settings (allenai/Molmo2-8B: 378 px crops, up to 8)."""
    from linebench.families.base import tokenizer
    from linebench.families.molmo import IMAGE, SPECIAL, image_processor_class, processor_class

    tok = tokenizer(IMAGE, extra_special=SPECIAL)
    kw = dict(size={"height": crop, "width": crop}, max_crops=max_crops, overlap_margins=[4, 4], patch_size=14, pooling_size=[2, 2]) | image_kw
    return processor_class()(image_processor=image_processor_class()(**kw), video_processor=None, tokenizer=tok, chat_template=tok.chat_template)


def patch_count(proc, canvas) -> int:
    return image_token_count(proc, canvas, proc.tokenizer.convert_tokens_to_ids("<im_patch>"))


@pytest.mark.parametrize("crop,max_crops,want", [(378, 8, "molmo2"), (378, 12, "molmo2:max_crops=12"), (182, 6, "molmo2:crop=182:max_crops=6")])
def test_profile_reads_the_processor(crop, max_crops, want):
    proc = processor(crop, max_crops)
    assert FAMILY.reads(proc)
    assert FAMILY.profile(proc) == want
    for canvas in [(640, 480), (300, 1000)]:
        assert patch_count(proc, canvas) == layout(want, canvas).num_placeholders


@pytest.mark.parametrize(
    "image_kw,match",
    [({"pooling_size": [3, 3]}, "pooling"), ({"overlap_margins": [2, 2]}, "margins"), ({"patch_size": 16}, "14 px"), ({"size": {"height": 378, "width": 336}}, "square")],
)
def test_profile_refuses_what_it_does_not_model(image_kw, match):
    with pytest.raises(UsageError, match=match):
        FAMILY.profile(processor(**image_kw))


def test_model_type_is_molmo2_listed_or_trained():
    if FAMILY.unsupported:  # blocked: refused in one line that says why
        with pytest.raises(UsageError, match="cannot be trained with KLAL yet: linebench's collator counts"):
            for_model_type("molmo2")
    else:
        assert for_model_type("molmo2") is FAMILY


def test_processor_reloads_without_torchvision(tmp_path, tiny_model):
    from linebench.families.molmo import FLAGS

    _, proc = tiny_model
    proc.save_pretrained(tmp_path)
    again = FAMILY.load_processor(tmp_path)
    assert type(again).__name__ == "TinyMolmo2Processor" and FAMILY.profile(again) == FAMILY.profile(proc) == "molmo2:crop=182:max_crops=6"
    assert {k: getattr(again, k) for k in FLAGS} == {k: getattr(proc, k) for k in FLAGS}
    assert patch_count(again, (640, 480)) == patch_count(proc, (640, 480)) == layout("molmo2:crop=182:max_crops=6", (640, 480)).num_tokens


def test_an_image_is_several_runs_and_one_map(tiny_model):
    model, proc = tiny_model
    tok = proc.tokenizer
    batch, targets = make_batch(proc, [[(224, 224)]])
    ids = batch["input_ids"][0]
    patch = model.config.image_token_id
    assert patch == tok.convert_tokens_to_ids("<im_patch>") != proc.image_token_id  # the placeholder <|image|> is expanded away
    lay = layout(FAMILY.profile(proc), (224, 224))
    assert [g.shape for g in lay.grids] == [(7, 7), (9, 9)]
    (cols,) = image_columns(ids, patch, [lay.num_tokens])
    runs = run_starts(cols)
    assert len(runs) == 1 + 9  # the low-res view, then one run per high-res row
    between = between_runs(tok, ids, cols)
    assert between == [["<im_end>", "<im_start>"]] + [["<im_col>"]] * 8
    assert len(targets[0][0]) == len(cols) == 130

    group = image_group(model, tok, batch, targets)
    assert group.positions is not None and group.positions.shape == (1, 130) and group.positions[0].tolist() == cols


def test_klal_equals_the_eager_reference_over_exactly_the_image_tokens(tiny_model):
    model, proc = tiny_model
    batch, targets = make_batch(proc, [[(224, 224), (100, 300)], [(640, 480)]], seed=1)
    assert [[len(p) for p in maps] for maps in targets] == [[130, 98], [157]]
    assert "mm_token_type_ids" in batch  # Molmo2 refuses to train without it (its bidirectional image block)
    check_klal_over_exactly_the_image_tokens(model, proc, batch, targets, model.config.image_token_id)


def test_image_tokens_attend_both_ways_the_answer_causally(tiny_model):
    model, proc = tiny_model
    batch, _ = make_batch(proc, [[(224, 224)]])
    patch = model.config.image_token_id
    (cols,) = image_columns(batch["input_ids"][0], patch, [130])
    ref = eager_copy(model)  # sdpa returns no weights
    with torch.no_grad():
        attn = ref(**batch, output_attentions=True).attentions[0][0]
    assert float(attn[:, cols[0], cols[-1]].min()) > 0  # the first image token sees the last one
    last = batch["input_ids"].shape[1] - 1
    block = batch["mm_token_type_ids"][0].nonzero().flatten()  # the image's tokens and the markers around and between them
    assert int(block[0]) < cols[0] and cols[-1] < int(block[-1])
    assert float(attn[:, int(block[0]), int(block[-1])].min()) > 0 and float(attn[:, cols[-1], int(block[-1]) + 1 :].abs().max()) == 0
    assert float(attn[:, last - 1, last].abs().max()) == 0  # an answer query sees no later token
