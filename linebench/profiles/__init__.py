"""Model profiles: one module per model family; importing this package registers them all.

Each profile reproduces one model's image preprocessing (resize, crop, pad, tiling) and its token
order after the vision tower (patch merging, pooling, unpadding, newline tokens), citing the
transformers processor and model code it follows and the checkpoint config values it assumes.
`tests/test_profiles*.py` check every profile against the real transformers processors.
"""

# import order = listing order (`linebench grids`)
from . import llava, llava_next, qwen, internvl, gemma, idefics, molmo, glm, mistral, lfm2  # noqa: F401, I001
