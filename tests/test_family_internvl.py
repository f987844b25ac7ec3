"""InternVL3 (HF) beyond tests/test_families.py: several tiles per image (row-major tiles, thumbnail
last, all in one run of `<IMG_CONTEXT>` between `<img>` and `</img>`), the profile read from a real
checkpoint's processor settings, and the processor saved and loaded without a video processor."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from linebench.errors import UsageError  # noqa: E402
from linebench.families import REGISTRY  # noqa: E402
from linebench.families import internvl as fam  # noqa: E402
from linebench.grids import layout  # noqa: E402
from linebench.train import tiny  # noqa: E402

from family_util import grid_patch_rows  # noqa: E402

FAMILY = REGISTRY["internvl"]


@pytest.fixture(scope="module")
def folder(linebench_cache):
    return tiny.cached(FAMILY.tiny_name)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Three grid-patch rows on a 640x480 canvas (3x2 tiles + thumbnail for the tiny model)."""
    return grid_patch_rows(tmp_path_factory.mktemp("rows") / "d", n=3, seed=7)


def _real_processor(tile=448, lo=1, hi=12, seq=256):
    """InternVL3-*-hf's processor settings (preprocessor_config.json, processor_config.json) on the
    tiny tokenizer: GotOcr2 image processor, 448 px tiles, 1..12 patches, 256 tokens per tile."""
    from transformers import GotOcr2ImageProcessorPil

    tok = fam.tokenizer(fam.IMAGE, extra_special=tuple(fam.NAMED.values()))
    tok._set_model_specific_special_tokens(fam.NAMED)
    ip = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=lo, max_patches=hi)
    return fam.processor_class()(image_processor=ip, tokenizer=tok, video_processor=None, image_seq_length=seq, chat_template=tok.chat_template)


def test_profile_is_read_from_the_processor():
    assert FAMILY.profile(_real_processor()) == "internvl"  # OpenGVLab/InternVL3-*-hf
    assert FAMILY.profile(_real_processor(hi=6)) == "internvl:max_tiles=6"
    assert FAMILY.profile(_real_processor(tile=112, hi=6, seq=16)) == "internvl:max_tiles=6:tile=112:tile_tokens=16"
    with pytest.raises(UsageError, match="tile_tokens"):
        FAMILY.profile(_real_processor(seq=250))  # not a square grid of tokens per tile


def test_several_tiles_per_image_in_one_run(folder, rows):
    """The 640x480 canvas: 6 tiles + thumbnail in pixel_values, 7 x 16 image tokens in one run between
    <img> and </img>, the map in the same order (each tile's share of the target, then the thumbnail's)."""
    from linebench.maps import attention_map
    from linebench.train.data import KLALCollator, as_example

    proc = tiny.load_processor(folder)
    collator = KLALCollator(proc)
    assert collator.profile == "internvl:max_tiles=6:tile=112:tile_tokens=16"
    batch = collator([as_example(r) for r in rows])
    lay = layout(collator.profile, (640, 480))
    assert [g.label for g in lay.grids] == [f"tile {r},{c}" for r in (1, 2) for c in (1, 2, 3)] + ["thumbnail"]
    assert batch["pixel_values"].shape == (len(rows) * 7, 3, 112, 112)  # tiles of all samples, one after the other
    start, end = (proc.tokenizer.convert_tokens_to_ids(t) for t in ("<img>", "</img>"))
    for b, row in enumerate(rows):
        ids = batch["input_ids"][b].tolist()
        pos = [i for i, t in enumerate(ids) if t == collator.image_token_id]
        assert len(pos) == 7 * 16 and pos == list(range(pos[0], pos[0] + len(pos)))  # one run: no text between tiles
        assert ids[pos[0] - 1] == start and ids[pos[-1] + 1] == end
        p = batch["klal_targets"][b][0].numpy()
        assert np.allclose(p, attention_map(row, lay).values) and abs(p.sum() - 1) < 1e-5
        tiles, thumb = p[: 6 * 16].sum(), p[6 * 16 :].sum()
        assert tiles > 0 and thumb > 0  # the target is seen twice: in its tile(s) and in the thumbnail


def test_the_thumbnail_is_last_and_the_tiles_cover_the_canvas(folder, rows):
    """pixel_values per image: the 3x2 tiles of the canvas resized to 336x224, row-major, then the
    whole canvas resized to one tile (what the profile's grids say)."""
    from transformers import GotOcr2ImageProcessorPil

    proc = tiny.load_processor(folder)
    image = rows[0]["image"].convert("RGB")
    tiles = proc.image_processor(images=[image], crop_to_patches=True, return_tensors="np")["pixel_values"]
    whole = GotOcr2ImageProcessorPil(**{**proc.image_processor.to_dict(), "max_patches": 1})
    thumb = whole(images=[image], crop_to_patches=True, return_tensors="np")["pixel_values"]
    big = GotOcr2ImageProcessorPil(**{**proc.image_processor.to_dict(), "size": {"height": 224, "width": 336}})
    canvas = big(images=[image], crop_to_patches=False, return_tensors="np")["pixel_values"][0]  # [3, 224, 336]
    assert tiles.shape == (7, 3, 112, 112) and np.allclose(tiles[-1], thumb[0])
    for k in range(6):
        r, c = divmod(k, 3)
        assert np.allclose(tiles[k], canvas[:, 112 * r : 112 * (r + 1), 112 * c : 112 * (c + 1)], atol=1e-5)


def test_processor_saves_and_loads_without_a_video_processor(folder, tmp_path):
    proc = tiny.load_processor(folder)
    assert type(proc).__name__ == "TinyInternVLProcessor" and proc.video_processor is None
    proc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["image_seq_length"] == 16
    again = fam.load_processor(tmp_path)
    assert (again.image_seq_length, again.image_processor.max_patches, again.tokenizer.start_image_token) == (16, 6, "<img>")
    assert FAMILY.profile(again) == FAMILY.profile(proc)
    (tmp_path / "processor_config.json").unlink()  # a folder without it: the model config's image_seq_length
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl", "image_seq_length": 16}))
    assert fam.load_processor(tmp_path).image_seq_length == 16


def test_a_saved_checkpoint_folder_loads_its_processor(folder, tmp_path):
    """A folder with the model and its processor but no tiny mark (a trained run's model/, or a real
    InternVL3-*-hf checkpoint): AutoProcessor wants InternVL's video processor, which needs
    torchvision (a ValueError in transformers 5.2x); the family's loader reads it instead."""
    from transformers import AutoModelForImageTextToText

    from linebench.models import load_processor

    AutoModelForImageTextToText.from_pretrained(folder).save_pretrained(tmp_path)
    tiny.load_processor(folder).save_pretrained(tmp_path)
    proc = load_processor(tmp_path)
    assert FAMILY.profile(proc) == "internvl:max_tiles=6:tile=112:tile_tokens=16"
