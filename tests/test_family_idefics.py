"""Idefics3 and SmolVLM2 beyond the generic family test (tests/test_families.py).

- the map profile is read from the processor: the tile resize (`size`, `max_image_size`) and the SigLIP
  patch / pixel-shuffle pair that gives `image_seq_len` tokens per tile, for the released checkpoints'
  values and the tiny models'; a processor the profile cannot describe is one UsageError;
- one image is several runs of `<image>` in input_ids (each tile after `<fake_token_around_image><row_r_col_c>`,
  the global image after `<global-img>`): the capture makes them one image, with one map, by the map's size;
- the captured KLAL and its gradients equal the eager `output_attentions` reference taken over exactly
  the image tokens (each image renormalised on its own, two images in one sample, two samples), and not
  the reference over the span from an image's first to its last token (which holds the marker tokens).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY, for_model_type, for_processor  # noqa: E402
from linebench.families.idefics import FAKE, GLOBAL, IMAGE, ROW_COL, patch_and_scale  # noqa: E402
from linebench.grids import layout  # noqa: E402

from family_util import build_tiny, check_klal_over_exactly_the_image_tokens, image_columns, image_token_count, make_batch, run_starts  # noqa: E402

NAMES = ("idefics3", "smolvlm")


@pytest.fixture(scope="module")
def tiny_models():
    return {name: build_tiny(REGISTRY[name].build_tiny) for name in NAMES}


def real_processor(name, longest, frame, seq, **image_kw):
    """The family's processor class with a checkpoint's image settings (tokenizer built locally)."""
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor, SmolVLMImageProcessorPil

    from linebench.families.base import tokenizer
    from linebench.families.idefics import SPECIAL, smolvlm_processor_class

    tok = tokenizer(IMAGE, extra_special=SPECIAL)
    ip_class, proc_class = (Idefics3ImageProcessorPil, Idefics3Processor) if name == "idefics3" else (SmolVLMImageProcessorPil, smolvlm_processor_class())
    ip = ip_class(size={"longest_edge": longest}, max_image_size={"longest_edge": frame}, **image_kw)
    return proc_class(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=tok.chat_template)


# --------------------------------------------------------------------------- the profile, from the processor


@pytest.mark.parametrize(
    "name,longest,frame,seq,want",
    [
        ("idefics3", 1456, 364, 169, "idefics3"),  # HuggingFaceM4/Idefics3-8B-Llama3
        ("smolvlm", 2048, 512, 64, "smolvlm"),  # HuggingFaceTB/SmolVLM2-256M/500M-Video-Instruct
        ("smolvlm", 1536, 384, 81, "smolvlm:longest_edge=1536:max_image_size=384:patch_size=14:scale_factor=3"),  # SmolVLM2-2.2B
        ("idefics3", 224, 112, 16, "idefics3:longest_edge=224:max_image_size=112"),  # the tiny models
        ("smolvlm", 512, 256, 16, "smolvlm:longest_edge=512:max_image_size=256"),
    ],
)
def test_profile_reads_the_processor(name, longest, frame, seq, want):
    proc = real_processor(name, longest, frame, seq)
    assert for_processor(proc) is REGISTRY[name]
    assert REGISTRY[name].profile(proc) == want
    # the map has as many values as the processor puts <image> tokens in input_ids
    for canvas in [(640, 480), (300, 1000)]:
        assert image_token_count(proc, canvas, nested=True) == layout(want, canvas).num_placeholders


def test_patch_and_scale_is_the_one_pair_that_fits():
    assert patch_and_scale(364, 169) == (14, 2) and patch_and_scale(512, 64) == (16, 4) and patch_and_scale(384, 81) == (14, 3)
    assert patch_and_scale(364, 170) is None  # not a square number of tokens
    assert patch_and_scale(364, 4) is None  # 2x2 tokens: 26 patches of 14 px shuffled 13x13, or 22 of 16 px 11x11: which?
    assert patch_and_scale(364, 25) is None  # 5x5: neither 26 nor 22 patches split into 5 blocks


def test_profile_refuses_what_it_cannot_describe():
    with pytest.raises(UsageError, match="image_seq_len=170"):
        REGISTRY["idefics3"].profile(real_processor("idefics3", 1456, 364, 170))
    with pytest.raises(UsageError, match="do_image_splitting"):
        REGISTRY["smolvlm"].profile(real_processor("smolvlm", 2048, 512, 64, do_image_splitting=False))


def test_model_types():
    assert for_model_type("idefics3") is REGISTRY["idefics3"] and for_model_type("smolvlm") is REGISTRY["smolvlm"]


# --------------------------------------------------------------------------- several runs, one image


@pytest.mark.parametrize("name", NAMES)
def test_an_image_is_several_runs_and_one_map(name, tiny_models):
    from linebench.train import KLALCapture
    from linebench.train.capture import CaptureError

    model, proc = tiny_models[name]
    batch, targets = make_batch(proc, [[(224, 224)]])
    ids = batch["input_ids"][0]
    tok = proc.tokenizer
    (cols,) = image_columns(ids, proc.image_token_id, [80])
    runs = run_starts(cols)
    assert len(runs) == 5  # 2x2 tiles + the global image, 16 tokens each
    # before each run: <fake_token_around_image><row_r_col_c> (tiles), <fake_token_around_image><global-img> (global)
    tags = [tuple(tok.convert_ids_to_tokens(ids[r - 2 : r].tolist())) for r in runs]
    assert tags == [(FAKE, ROW_COL[0]), (FAKE, ROW_COL[1]), (FAKE, ROW_COL[6]), (FAKE, ROW_COL[7]), (FAKE, GLOBAL)]
    assert len(targets[0][0]) == len(cols) == 80

    cap = KLALCapture(model, backend="torch", special_ids=set(tok.all_special_ids))
    try:
        group = cap._rows(batch["input_ids"], batch["labels"], targets, None)
        assert group.positions is not None and group.positions.shape == (1, 80)  # one image, its 80 tokens gathered
        assert group.positions[0].tolist() == cols and group.lengths.unique().tolist() == [80]
        with cap.batch(batch["input_ids"], batch["labels"], targets):
            model(**{k: v for k, v in batch.items()})
        assert {image for _, image, _ in cap.rows} == {0}
        # a map one value short cannot be grouped: one line says what the tokens and the maps are
        with pytest.raises(CaptureError, match=r"5 image\(s\) in its tokens but 1 target map"):
            cap._rows(batch["input_ids"], batch["labels"], [[targets[0][0][:79]]], None)
    finally:
        cap.remove()


@pytest.mark.parametrize("name", NAMES)
def test_klal_equals_the_eager_reference_over_exactly_the_image_tokens(name, tiny_models):
    model, proc = tiny_models[name]
    # sample 0: two images (5 runs of 16, then 3 runs of 16); sample 1: one image (5 runs)
    batch, targets = make_batch(proc, [[(224, 224), (100, 300)], [(640, 480)]], seed=1)
    assert [[len(p) for p in maps] for maps in targets] == [[80, 48], [80]]
    check_klal_over_exactly_the_image_tokens(model, proc, batch, targets, proc.image_token_id, measure=True)
