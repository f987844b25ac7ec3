"""Profile `lfm2-vl` vs transformers' `Lfm2VlImageProcessor`, `Lfm2VlProcessor` and `Lfm2VlModel`'s token
order (offline, CPU, no weights).

`Lfm2VlImageProcessor` exists only as a torchvision-backend processor and torchvision is not installed
here (the wheels this machine can reach do not load against the CPU torch: "operator torchvision::nms
does not exist"). Its module imports `torchvision.transforms.v2.functional` at the top but its tiling
arithmetic (`smart_resize`, `_get_split_layout`, `_get_grid_layout`) is plain Python: without torchvision
the module is imported with empty stand-in torchvision modules (removed right after), and the real
class's code runs. For the pixel check the two torchvision calls on its path, `TorchvisionBackend.resize`
(`tvF.resize` of a uint8 tensor, bilinear, antialias: float interpolation with antialias, rounded back to
uint8) and `normalize` ((x - mean) / std), are replaced by those torch operations for the test's duration,
as tests/test_profiles_molmo.py does for Molmo2; the crops, tiles, patch order and token counts are the
real code. Where torchvision is installed, everything runs as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, clear_positions, marker_image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

RADIUS = 4.0
ODD = [(20, 30), (13, 500), (3000, 2000), (4000, 60), (60, 1500), (1024, 1024), (1500, 1000), (723, 724), (2000, 500)]
VARIANTS = {"": {}, "450m": {"use_thumbnail": 0}, "nosplit": {"do_image_splitting": 0}, "tiles4": {"max_tiles": 4, "max_image_tokens": 128}}
SPLIT_TOKENS = ["<|image_start|>", "<|image_end|>", "<|img_thumbnail|>"] + [f"<|img_row_{r}_col_{c}|>" for r in range(1, 11) for c in range(1, 11)]
_TV = ["torchvision", "torchvision.transforms", "torchvision.transforms.v2", "torchvision.transforms.v2.functional"]


@contextlib.contextmanager
def _import_without_torchvision():
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        yield
        return
    stubs = {name: types.ModuleType(name) for name in _TV}
    for parent, child in zip(_TV, _TV[1:]):
        setattr(stubs[parent], child.rsplit(".", 1)[1], stubs[child])
    saved = {name: sys.modules.get(name) for name in _TV}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


@pytest.fixture(scope="module")
def hf():
    with _import_without_torchvision():
        ipm = importlib.import_module("transformers.models.lfm2_vl.image_processing_lfm2_vl")
    from transformers.models.lfm2_vl.processing_lfm2_vl import Lfm2VlProcessor

    from linebench.families.base import tokenizer

    tok = tokenizer("<image>", extra_special=tuple(SPLIT_TOKENS))
    return types.SimpleNamespace(module=ipm, Processor=Lfm2VlProcessor, tokenizer=tok)


def image_processor(hf, lay):
    p = dict(lay.params)
    return hf.module.Lfm2VlImageProcessor(
        min_image_tokens=p["min_image_tokens"], max_image_tokens=p["max_image_tokens"], min_tiles=p["min_tiles"], max_tiles=p["max_tiles"],
        tile_size=p["tile_size"], encoder_patch_size=p["encoder_patch_size"], downsample_factor=p["downsample_factor"],
        do_image_splitting=bool(p["do_image_splitting"]), use_thumbnail=bool(p["use_thumbnail"]), max_pixels_tolerance=2.0,
        image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )  # fmt: skip


def layout_text(lay) -> str:
    return "".join(g.before + "<image>" * g.size for g in lay.grids) + lay.after


CASES = [(c, v) for c in CANVASES + ODD + [(640, 480), (480, 640)] for v in VARIANTS]


@pytest.mark.parametrize("canvas,variant", CASES, ids=[f"{w}x{h}-{v or 'default'}" for (w, h), v in CASES])
def test_lfm2_tiling_counts_and_tokens_are_the_processors(canvas, variant, hf):
    """The real split decision, tile grid and resized sizes; the processor's token count and its image text."""
    lay = layout("lfm2-vl", canvas, **VARIANTS[variant])
    p = lay.params
    ip = image_processor(hf, lay)
    keys = ("downsample_factor", "min_tiles", "max_tiles", "min_image_tokens", "max_image_tokens", "encoder_patch_size", "tile_size")
    kw = {k: p[k] for k in keys} | {"max_pixels_tolerance": 2.0}
    if not p["do_image_splitting"]:
        kw["min_tiles"] = kw["max_tiles"] = 1
    split, rows, cols, new_h, new_w = ip._get_split_layout(canvas[1], canvas[0], **kw)
    tiles = [g for g in lay.grids if g.label.startswith("tile")]
    cell = p["encoder_patch_size"] * p["downsample_factor"]
    assert len(tiles) == (rows * cols if split else 0)
    assert [g.label for g in tiles] == [f"tile {r + 1},{c + 1}" for r in range(rows) for c in range(cols) if split]
    whole = [g for g in lay.grids if not g.label.startswith("tile")]
    assert len(whole) == (1 if not split or p["use_thumbnail"] else 0)
    assert all(g.shape == (new_h // cell, new_w // cell) for g in whole)
    assert all(g.shape == (p["tile_size"] // cell,) * 2 for g in tiles)
    proc = hf.Processor(image_processor=ip, tokenizer=hf.tokenizer)
    assert proc._get_num_multimodal_tokens(image_sizes=[(canvas[1], canvas[0])])["num_image_tokens"] == [lay.num_tokens]
    per_tile, for_image = proc._get_image_num_tokens([new_h, new_w])
    text = proc._build_image_tokens(rows, cols, per_tile, for_image, bool(p["use_thumbnail"]), True)
    assert text == layout_text(lay) and lay.num_placeholders == lay.num_tokens


def test_lfm2_smart_resize_is_transformers_own(hf):
    from linebench.profiles.lfm2 import smart_resize, tile_grid

    ip = hf.module.Lfm2VlImageProcessor()
    rng = np.random.default_rng(0)
    for h, w in [(int(a), int(b)) for a, b in rng.integers(1, 6000, size=(300, 2))] + [(1, 1), (31, 33), (5, 2000)]:
        for lo, hi in [(64, 256), (32, 1024), (1, 16)]:
            w_bar, h_bar = ip.smart_resize(h, w, 2, lo, hi, 16)
            assert smart_resize(h, w, 32, lo, hi) == (h_bar, w_bar)
        for lo, hi in [(2, 10), (2, 4), (3, 12)]:
            assert tile_grid(h, w, lo, hi, 512) == ip._get_grid_layout(h, w, lo, hi, 512)[:2]


@contextlib.contextmanager
def _torch_ops(monkeypatch):
    """TorchvisionBackend.resize / normalize as the torch operations torchvision performs (see module doc)."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        yield
        return
    from transformers.image_processing_backends import TorchvisionBackend

    def resize(self, image, size, resample=None, antialias=True, **kwargs):
        assert resample in (None, 2) and antialias  # bilinear (PILImageResampling.BILINEAR), antialiased: all LFM2-VL asks for
        out = torch.nn.functional.interpolate(image.float(), size=(size.height, size.width), mode="bilinear", align_corners=False, antialias=True)
        return out.round().clamp(0, 255).to(image.dtype) if image.dtype == torch.uint8 else out

    def normalize(self, image, mean, std, inplace=False, **kwargs):
        mean = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
        return (image - mean) / std

    monkeypatch.setattr(TorchvisionBackend, "resize", resize)
    monkeypatch.setattr(TorchvisionBackend, "normalize", normalize)
    yield


def frame_brightness(out, factor=2) -> list[np.ndarray]:
    """Per frame (tiles, then thumbnail), the mean pixel value of each token's factor x factor patches."""
    pv = out["pixel_values"].float().numpy()  # [frames, max_patches, 16 * 16 * 3]
    frames = []
    for f, (nh, nw) in enumerate(out["spatial_shapes"].tolist()):
        per_patch = pv[f, : nh * nw].mean(-1).reshape(nh, nw)
        frames.append(per_patch.reshape(nh // factor, factor, nw // factor, factor).mean(axis=(1, 3)))
    return frames


@pytest.mark.parametrize("canvas", CANVASES + [(640, 480), (480, 640), (1500, 1000), (900, 1800)])
def test_lfm2_marker_lands_in_mapped_token(canvas, hf, monkeypatch):
    lay = layout("lfm2-vl", canvas)
    ip = image_processor(hf, lay)
    with _torch_ops(monkeypatch):
        for c in clear_positions(lay, 2, RADIUS, seed=sum(canvas) % 1000):
            out = ip(images=[marker_image(canvas, c, RADIUS)], return_tensors="pt")
            assert_marker_lands(lay, frame_brightness(out), c, RADIUS)


@pytest.mark.parametrize("canvas", [(640, 480), (1500, 1000)])
def test_lfm2_model_orders_tokens_as_the_layout(canvas, hf, monkeypatch):
    """Lfm2VlModel.get_image_features (the real patch index bookkeeping and pixel_unshuffle) with a vision
    tower that returns each patch's mean and a projector that averages its 4 x C inputs: token j of the
    image is the mean of the layout's token j's patches."""
    from transformers import Lfm2VlConfig
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.lfm2_vl.modeling_lfm2_vl import Lfm2VlModel

    lay = layout("lfm2-vl", canvas)
    with _torch_ops(monkeypatch):
        out = image_processor(hf, lay)(images=[marker_image(canvas, (300, 200), 60)], return_tensors="pt")
    cfg = Lfm2VlConfig(
        vision_config=dict(model_type="siglip2_vision_model", hidden_size=4, intermediate_size=4, num_hidden_layers=1, num_attention_heads=1, num_patches=64, patch_size=16),
        text_config=dict(model_type="lfm2", hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1, vocab_size=32),
        projector_hidden_size=8, downsample_factor=2,
    )  # fmt: skip
    model = Lfm2VlModel(cfg).eval()

    class Tower(torch.nn.Module):
        def forward(self, pixel_values, spatial_shapes, pixel_attention_mask, **kwargs):
            return BaseModelOutputWithPooling(last_hidden_state=pixel_values.float().mean(-1, keepdim=True).expand(-1, -1, 4))

    model.vision_tower = Tower()
    proj = model.multi_modal_projector
    with torch.no_grad():
        proj.layer_norm.forward = lambda x: x
        proj.act.forward = lambda x: x
        proj.linear_1.weight.zero_(), proj.linear_1.bias.zero_(), proj.linear_2.weight.zero_(), proj.linear_2.bias.zero_()
        proj.linear_1.weight[0] = 1.0 / proj.linear_1.weight.shape[1]
        proj.linear_2.weight[0, 0] = 1.0
        feats = model.get_image_features(out["pixel_values"], out["spatial_shapes"], out["pixel_attention_mask"]).pooler_output
    tokens = torch.cat(feats)[:, 0].numpy()
    want = np.concatenate([b.ravel() for b in frame_brightness(out)])
    assert tokens.shape == (lay.num_tokens,) and np.allclose(tokens, want, atol=1e-4)


def test_lfm2_parameters_are_checked():
    assert layout("lfm2-vl", (448, 448)).grids[0].shape == (14, 14)  # 196 tokens: kept near its size
    assert layout("lfm2-vl", (64, 64)).grids[0].shape == (8, 8)  # upscaled to min_image_tokens
    assert [g.label for g in layout("lfm2-vl", (1024, 1024)).grids] == ["tile 1,1", "tile 1,2", "tile 2,1", "tile 2,2", "thumbnail"]
    with pytest.raises(UsageError, match="multiple of 32"):
        layout("lfm2-vl:tile_size=500", (448, 448))
    with pytest.raises(UsageError, match="min_tiles"):
        layout("lfm2-vl:min_tiles=1", (448, 448))
    with pytest.raises(UsageError, match="min_image_tokens"):
        layout("lfm2-vl:min_image_tokens=300", (448, 448))


def test_lfm2_family_reads_the_profile_and_refuses_training_in_one_line(hf):
    from linebench.families import REGISTRY, for_model_type, for_processor

    family = REGISTRY["lfm2-vl"]
    for over, want in [({}, "lfm2-vl"), ({"use_thumbnail": False}, "lfm2-vl:use_thumbnail=0"), ({"max_tiles": 4}, "lfm2-vl:max_tiles=4")]:
        proc = hf.Processor(image_processor=hf.module.Lfm2VlImageProcessor(**over), tokenizer=hf.tokenizer)
        assert family.profile(proc) == want
    with pytest.raises(UsageError, match="cannot read"):
        family.profile(hf.Processor(image_processor=hf.module.Lfm2VlImageProcessor(max_pixels_tolerance=3.0), tokenizer=hf.tokenizer))
    with pytest.raises(UsageError, match="LFM2-VL .lfm2_vl. cannot be trained with KLAL yet: its image processor") as e:
        for_model_type("lfm2_vl")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="no map profile for the processor Lfm2VlProcessor"):
        for_processor(proc)
