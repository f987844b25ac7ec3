"""Model profiles vs the real transformers image processors (built from config values, offline)."""

from __future__ import annotations

import numpy as np
import pytest

from linebench.grids import layout, profile_names
from linebench.errors import UsageError
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image, patch_means

pytest.importorskip("transformers")
from transformers import CLIPImageProcessorPil, Gemma3ImageProcessorPil, Qwen2VLImageProcessorPil, SiglipImageProcessorPil  # noqa: E402
from PIL import Image  # noqa: E402

RADIUS = 4.0


# --------------------------------------------------------------------------- Qwen


QWEN = {
    "qwen2-vl": dict(patch_size=14, merge_size=2),
    "qwen2.5-vl": dict(patch_size=14, merge_size=2),
    "qwen3-vl": dict(patch_size=16, merge_size=2),
}


def qwen_processor(name, lay):
    p = lay.params
    return Qwen2VLImageProcessorPil(size={"shortest_edge": p["min_pixels"], "longest_edge": p["max_pixels"]}, **QWEN[name])


@pytest.mark.parametrize("name", list(QWEN))
@pytest.mark.parametrize("canvas", CANVASES + [(20, 30), (3000, 2000)])
def test_qwen_token_count_matches_image_grid_thw(name, canvas):
    lay = layout(name, canvas)
    out = qwen_processor(name, lay)(images=[Image.new("RGB", canvas)], return_tensors="np")
    t, gh, gw = out["image_grid_thw"][0]
    m = QWEN[name]["merge_size"]
    assert (t, gh // m, gw // m) == (1, *lay.grids[0].shape)
    assert lay.num_tokens == lay.num_placeholders == t * gh * gw // m**2


@pytest.mark.parametrize("name", list(QWEN))
def test_qwen_max_pixels_is_a_parameter(name):
    small = layout(f"{name}:max_pixels=200704", (1920, 1080))
    assert small.num_tokens <= 200704 // (QWEN[name]["patch_size"] * 2) ** 2 < layout(name, (1920, 1080)).num_tokens
    out = qwen_processor(name, small)(images=[Image.new("RGB", (1920, 1080))], return_tensors="np")
    assert int(np.prod(out["image_grid_thw"][0])) // 4 == small.num_tokens


@pytest.mark.parametrize("name", list(QWEN))
@pytest.mark.parametrize("canvas", CANVASES)
def test_qwen_marker_lands_in_mapped_token(name, canvas):
    lay = layout(name, canvas)
    proc = qwen_processor(name, lay)
    m = QWEN[name]["merge_size"]
    rows, cols = lay.grids[0].shape
    for c in clear_positions(lay, 3, RADIUS, seed=hash(canvas) % 1000):
        pv = proc(images=[marker_image(canvas, c, RADIUS)], return_tensors="np")["pixel_values"]
        # rows of pixel_values: merged tokens in raster order, m*m patches each (C, T, p, p)
        bright = pv.reshape(rows * cols, m * m, -1).mean(axis=(1, 2)).reshape(rows, cols)
        assert_marker_lands(lay, [bright], c, RADIUS)


# --------------------------------------------------------------------------- LLaVA-1.5


def expand2square(img: Image.Image) -> Image.Image:
    """LLaVA's llava/mm_utils.py expand2square (black background)."""
    w, h = img.size
    if w == h:
        return img
    s = max(w, h)
    out = Image.new(img.mode, (s, s), (0, 0, 0))
    out.paste(img, ((s - w) // 2, (s - h) // 2))
    return out


@pytest.mark.parametrize("name", ["llava-1.5", "llava-1.5-pad"])
@pytest.mark.parametrize("canvas", CANVASES)
def test_llava15_marker_lands_in_mapped_token(name, canvas):
    lay = layout(name, canvas)
    assert lay.grids[0].shape == (24, 24) and lay.num_placeholders == 576
    proc = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3)
    for c in clear_positions(lay, 3, RADIUS, seed=1):
        img = marker_image(canvas, c, RADIUS)
        if name == "llava-1.5-pad":
            img = expand2square(img)
        pv = proc(images=[img], return_tensors="np")["pixel_values"][0]
        assert pv.shape == (3, 336, 336)
        assert_marker_lands(lay, [patch_means(pv, 14, 24, 24)], c, RADIUS)


def test_llava15_crop_leaves_the_sides_of_a_wide_canvas_unseen():
    g = layout("llava-1.5", (640, 360)).grids[0]
    assert g.x_edges[0] > 100 and g.x_edges[-1] < 540 and (g.y_edges[0], g.y_edges[-1]) == (0, 360)
    g = layout("llava-1.5-pad", (640, 360)).grids[0]
    assert (g.x_edges[0], g.x_edges[-1]) == (0, 640) and g.y_edges[0] < 0 and g.y_edges[-1] > 360


# --------------------------------------------------------------------------- PaliGemma, Gemma 3


@pytest.mark.parametrize("side", [224, 448, 896])
@pytest.mark.parametrize("canvas", CANVASES[:3])
def test_paligemma_marker_lands_in_mapped_token(side, canvas):
    lay = layout(f"paligemma-{side}", canvas)
    n = side // 14
    assert lay.grids[0].shape == (n, n)
    proc = SiglipImageProcessorPil(size={"height": side, "width": side}, resample=3)
    r = 0.3 * min(canvas) / n  # a third of a token
    for c in clear_positions(lay, 2, r, seed=2):
        pv = proc(images=[marker_image(canvas, c, r)], return_tensors="np")["pixel_values"][0]
        assert pv.shape == (3, side, side)
        assert_marker_lands(lay, [patch_means(pv, 14, n, n)], c, r)


@pytest.mark.parametrize("canvas", CANVASES)
def test_gemma3_marker_lands_in_mapped_pooled_token(canvas):
    lay = layout("gemma-3", canvas)
    assert lay.grids[0].shape == (16, 16) and lay.grids[0].before == "<start_of_image>" and lay.after == "<end_of_image>"
    proc = Gemma3ImageProcessorPil(size={"height": 896, "width": 896})
    for c in clear_positions(lay, 3, 6.0, seed=3):
        pv = proc(images=[marker_image(canvas, c, 6.0)], return_tensors="np")["pixel_values"][0]
        assert pv.shape == (3, 896, 896)
        # 64x64 patches of 14 px, average-pooled 4x4 by the projector = means over 56 px cells
        assert_marker_lands(lay, [patch_means(pv, 56, 16, 16)], c, 6.0)


# --------------------------------------------------------------------------- registry and Layout


def test_every_profile_builds_for_odd_canvases_and_expands():
    for name in profile_names():
        for canvas in [(448, 448), (333, 777), (1280, 200)]:
            lay = layout(name, canvas)
            assert lay.num_tokens > 0 and lay.num_placeholders >= lay.num_tokens
            p = np.arange(lay.num_tokens, dtype=np.float64)
            e = lay.expand(p, fill=-1)
            assert e.shape == (lay.num_placeholders,) and np.array_equal(e[e >= 0], p)
            for g in lay.grids:
                assert len(g.x_edges) == g.cols + 1 and len(g.y_edges) == g.rows + 1
                assert np.all(np.diff(g.x_edges) > 0) and np.all(np.diff(g.y_edges) > 0)


def test_profile_parameters_are_checked():
    with pytest.raises(UsageError, match="no parameter 'max_tiles'"):
        layout("qwen2.5-vl:max_tiles=3", (448, 448))
    with pytest.raises(UsageError, match="integer"):
        layout("qwen2.5-vl:max_pixels=lots", (448, 448))
    with pytest.raises(UsageError, match="unknown map profile"):
        layout("llava-9", (448, 448))
    assert layout("qwen2.5-vl:max_pixels=12845056", (448, 448)).profile == "qwen2.5-vl"  # defaults drop out
    assert layout("qwen2.5-vl", (448, 448), max_pixels=50000).profile == "qwen2.5-vl:max_pixels=50000"
