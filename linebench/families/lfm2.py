"""LFM2-VL (`Lfm2VlForConditionalGeneration`, model_type `lfm2_vl`): listed, not trained yet.

Its map profile `lfm2-vl` is checked against the real processor code (tests/test_profiles_lfm2.py), and
the model side was run by hand: the LFM2 decoder's short-convolution layers have no `self_attn` (the
capture leaves them out), its attention layers go through AttentionInterface, and KLAL over them equals
the eager reference with a tiled image (several runs of `<image>`). What is missing is a tiny model built
with the real processor: `Lfm2VlImageProcessor` exists only as a torchvision-backend class (its module
imports torchvision at the top; there is no PIL backend) and linebench's test environment has no
torchvision (the wheels this project's machines can install do not load against the CPU torch build).
"""

from __future__ import annotations

from ..errors import UsageError
from ..grids import layout
from .base import Family, register

WHY = (
    "its image processor (Lfm2VlImageProcessor) exists only with torchvision, which linebench's CPU test environment "
    "does not have, so no tiny model with the real processor tests the path; the map profile lfm2-vl is checked "
    "(tests/test_profiles_lfm2.py)"
)
KEYS = ("min_image_tokens", "max_image_tokens", "min_tiles", "max_tiles", "tile_size", "encoder_patch_size", "downsample_factor")


def profile(processor) -> str:
    """`lfm2-vl` with the image processor's tiling and token settings."""
    ip = processor.image_processor
    values = {k: getattr(ip, k, None) for k in KEYS}
    tolerance = getattr(ip, "max_pixels_tolerance", None)
    if any(v is None for v in values.values()) or tolerance != 2.0:
        raise UsageError(f"{type(processor).__name__}: cannot read the LFM2-VL tiling settings (max_pixels_tolerance must be 2.0): {values}, {tolerance}")
    values["do_image_splitting"] = int(bool(getattr(ip, "do_image_splitting", True)))
    values["use_thumbnail"] = int(bool(getattr(ip, "use_thumbnail", True)))
    spec = "lfm2-vl" + "".join(f":{k}={int(v)}" for k, v in values.items())
    return layout(spec, (448, 448)).profile


register(Family(
    name="lfm2-vl", label="LFM2-VL", model_types=("lfm2_vl",), processors=("Lfm2VlProcessor",), profile=profile, order=80, unsupported=WHY,
))  # fmt: skip
