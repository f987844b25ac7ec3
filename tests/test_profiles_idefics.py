"""`idefics3` and `smolvlm` profiles vs the real transformers code (offline, CPU, no weights).

- Tiles, counts and prompt text: idefics3 runs the full `Idefics3Processor` (real
  `Idefics3ImageProcessorPil` + a tiny WordLevel tokenizer carrying the special tokens) and compares
  its input_ids with the layout's text; smolvlm runs `SmolVLMImageProcessorPil` and the processor
  module's `get_image_prompt_string` (the `SmolVLMProcessor` itself cannot be built here: it requires
  `num2words` and a `SmolVLMVideoProcessor`, which requires torchvision).
- Token order: `Idefics3Model` / `SmolVLMModel.get_image_features` of a tiny random-config model whose
  patch embedding is set to "mean brightness of the patch" (zero position embeddings, no encoder layers,
  identity post-layernorm and projection), so the real padding-image removal, patch embedding flatten
  and connector `pixel_shuffle` decide which feature lands at which position of the LLM sequence.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from linebench.errors import UsageError
from linebench.grids import layout
from profile_util import CANVASES, assert_marker_lands, marker_image, marker_positions, marker_radius

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    Idefics3Config,
    Idefics3ImageProcessorPil,
    Idefics3Model,
    Idefics3Processor,
    PreTrainedTokenizerFast,
    SmolVLMConfig,
    SmolVLMImageProcessorPil,
    SmolVLMModel,
)
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string  # noqa: E402

FAKE, IMAGE, GLOBAL = "<fake_token_around_image>", "<image>", "<global-img>"
MODELS = {
    "idefics3": SimpleNamespace(proc=Idefics3ImageProcessorPil, config=Idefics3Config, model=Idefics3Model),
    "smolvlm": SimpleNamespace(proc=SmolVLMImageProcessorPil, config=SmolVLMConfig, model=SmolVLMModel),
}
EXTREME = [(20, 30), (3000, 2000), (448, 896), (4000, 60), (60, 1500), (5000, 5)]
SMALL = {"longest_edge": 1000, "max_image_size": 384, "patch_size": 14, "scale_factor": 3}  # not multiples: rounding paths


def image_processor(name, lay):
    p = lay.params
    return MODELS[name].proc(
        size={"longest_edge": p["longest_edge"]}, max_image_size={"longest_edge": p["max_image_size"]}, resample=1,
        image_mean=[0.5] * 3, image_std=[0.5] * 3, return_row_col_info=True,
    )


def tokens_per_frame(lay) -> int:
    p = lay.params
    return (p["max_image_size"] // p["patch_size"] // p["scale_factor"]) ** 2


def layout_text(lay) -> str:
    return "".join(g.before + IMAGE * g.size for g in lay.grids) + lay.after


def check_frames(lay, out) -> tuple[int, int]:
    """The processor's frames, tile grid and sizes agree with the layout; -> (rows, cols)."""
    frames, m = out["pixel_values"].shape[1], lay.params["max_image_size"]
    rows, cols = int(out["rows"][0][0]), int(out["cols"][0][0])
    assert out["pixel_values"].shape == (1, frames, 3, m, m)
    assert frames == len(lay.grids) == (rows * cols + 1 if rows else 1)
    n = tokens_per_frame(lay)
    assert all(g.shape == (round(n**0.5),) * 2 and not g.newline for g in lay.grids)
    assert lay.num_tokens == lay.num_placeholders == frames * n
    labels = [f"tile {r + 1},{c + 1}" for r in range(rows) for c in range(cols)] + ["global" if rows else "image"]
    assert [g.label for g in lay.grids] == labels
    return rows, cols


CASES = [(c, {}) for c in CANVASES + EXTREME] + [(c, SMALL) for c in [(640, 360), (448, 896), (20, 30), (4000, 60)]]
CASE_IDS = [f"{w}x{h}{'-small' if p else ''}" for (w, h), p in CASES]
TINY_TEXT = dict(
    model_type="llama", hidden_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1, intermediate_size=8, vocab_size=16
)


@pytest.fixture(scope="module")
def idefics3_processor():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    specials = [FAKE, IMAGE, GLOBAL, "<end_of_utterance>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_tokens([AddedToken("\n", normalized=False)])  # newlines stay tokens, so the text check sees them
    tok.add_special_tokens([AddedToken(s, normalized=False) for s in specials])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")

    def make(lay):
        proc = image_processor("idefics3", lay)
        return Idefics3Processor(image_processor=proc, tokenizer=fast, image_seq_len=tokens_per_frame(lay))

    return SimpleNamespace(make=make, tokenizer=fast)


@pytest.mark.parametrize("canvas,params", CASES, ids=CASE_IDS)
def test_idefics3_processor_matches_layout(canvas, params, idefics3_processor):
    """The full Idefics3Processor: frames, tile grid, <image> count and the exact input_ids around them."""
    lay = layout("idefics3", canvas, **params)
    proc = idefics3_processor.make(lay)
    out = proc(images=[[Image.new("RGB", canvas)]], text=["hello <image> hello"], return_tensors="np")
    m = lay.params["max_image_size"]
    assert out["pixel_values"].shape == (1, len(lay.grids), 3, m, m)
    assert lay.num_tokens == lay.num_placeholders == len(lay.grids) * tokens_per_frame(lay)
    ids = out["input_ids"][0].tolist()
    assert sum(i == proc.image_token_id for i in ids) == lay.num_placeholders
    want = idefics3_processor.tokenizer("hello " + layout_text(lay) + " hello", add_special_tokens=False)["input_ids"]
    assert ids == want


@pytest.mark.parametrize("canvas,params", CASES, ids=CASE_IDS)
def test_smolvlm_image_processor_matches_layout(canvas, params):
    """SmolVLMImageProcessorPil frames and tile grid; the prompt text from smolvlm's get_image_prompt_string."""
    lay = layout("smolvlm", canvas, **params)
    out = image_processor("smolvlm", lay)(images=[[Image.new("RGB", canvas)]], return_tensors="np")
    rows, cols = check_frames(lay, out)
    text = get_image_prompt_string(
        rows, cols, tokens_per_frame(lay), fake_token_around_image=FAKE, image_token=IMAGE, global_image_token=GLOBAL
    )
    assert layout_text(lay) == text


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("canvas", CANVASES + EXTREME)
def test_count_helper_agrees_at_checkpoint_defaults(name, canvas):
    """`get_number_of_image_patches` (what processors use to count tokens without images); it drifts from
    the real output for other sizes, see the idefics profile docstring."""
    lay = layout(name, canvas)
    patches, rows, cols = image_processor(name, lay).get_number_of_image_patches(canvas[1], canvas[0], {})
    assert max(patches, 1) == len(lay.grids)


def _size_only(proc_cls):
    """`proc_cls` whose pixel resizes only produce an array of the new shape (a zero-stride view): the
    processor's own size logic (`resize` override, `resize_for_vision_encoder`, `split_images`) runs
    unchanged, at no cost, so thousands of canvases can be checked."""
    from transformers.image_processing_backends import PilBackend

    class Sizes(PilBackend):
        def resize(self, image, size, resample=None, **kwargs):
            return np.broadcast_to(np.zeros((), dtype=np.float32), (image.shape[0], size.height, size.width))

    return type("SizeOnly" + proc_cls.__name__, (proc_cls, Sizes), {})


@pytest.mark.parametrize("name", list(MODELS))
def test_tile_grid_matches_processor_size_logic_on_random_canvases(name):
    from transformers.image_utils import SizeDict

    rng = np.random.default_rng(7)
    sizes = [tuple(int(v) for v in rng.integers(1, 5000, size=2)) for _ in range(400)]
    sizes += [tuple(int(v) for v in np.exp(rng.uniform(0, np.log(6000), size=2))) for _ in range(400)]
    for params in [{}, SMALL, {"longest_edge": 1500, "max_image_size": 364, "patch_size": 14, "scale_factor": 2}]:
        lay0 = layout(name, (100, 100), **params)
        p = lay0.params
        proc = _size_only(MODELS[name].proc)(size={"longest_edge": p["longest_edge"]}, max_image_size={"longest_edge": p["max_image_size"]})
        for w, h in sizes:
            img = np.broadcast_to(np.zeros((), dtype=np.float32), (3, h, w))
            img = proc.resize(img, SizeDict(longest_edge=p["longest_edge"]))  # the order of `_preprocess`
            img = proc.resize_for_vision_encoder(img, p["max_image_size"])
            frames, rows, cols = proc.split_images(img, max_image_size={"longest_edge": p["max_image_size"]})
            lay = layout(name, (w, h), **params)
            assert len(lay.grids) == len(frames), (params, (w, h))
            assert [g.label for g in lay.grids][:-1] == [f"tile {r + 1},{c + 1}" for r in range(rows) for c in range(cols)]
            top = lay.grids[rows * cols - 1] if rows else lay.grids[0]  # last tile: where its tokens end, in canvas px
            side = p["max_image_size"] // p["patch_size"] * p["patch_size"]  # px the patches cover
            assert np.isclose(top.x_edges[-1], (img.shape[2] - p["max_image_size"] + side) * w / img.shape[2])
            assert np.isclose(top.y_edges[-1], (img.shape[1] - p["max_image_size"] + side) * h / img.shape[1])


def test_documented_counts_and_parameters():
    assert layout("idefics3", (448, 448)).num_tokens == 17 * 169  # 1456 x 1456 -> 4x4 tiles + global
    assert layout("idefics3", (640, 360)).num_tokens == 13 * 169  # 1456 x 820 -> 1456 x 1092: 3x4 + global
    assert layout("idefics3", (1000, 180)).num_tokens == 5 * 169  # 1456 x 262 -> 1456 x 364: 1x4 + global
    assert layout("smolvlm", (448, 448)).num_tokens == 17 * 64
    assert layout("smolvlm", (1000, 180)).num_tokens == 5 * 64
    one = layout("idefics3:longest_edge=364", (640, 360))
    assert [g.label for g in one.grids] == ["image"] and one.grids[0].before == FAKE + GLOBAL and one.after == FAKE
    assert layout("smolvlm:longest_edge=2048", (448, 448)).profile == "smolvlm"
    with pytest.raises(UsageError):
        layout("smolvlm:patch_size=15", (448, 448))


# --------------------------------------------------------------------------- token order (real model code)


class Contiguous(torch.nn.Module):
    def forward(self, x):
        return x.contiguous()


def tiny_model(name, lay):
    """Tiny random-config model; get_image_features -> per-token mean patch brightness, in LLM order."""
    p = lay.params
    m = MODELS[name]
    cfg = m.config(
        vision_config=dict(
            hidden_size=4, num_hidden_layers=0, num_attention_heads=1, intermediate_size=8,
            image_size=p["max_image_size"], patch_size=p["patch_size"],
        ),
        text_config=TINY_TEXT,
        scale_factor=p["scale_factor"],
    )
    model = m.model(cfg).eval()
    emb = model.vision_model.embeddings
    with torch.no_grad():
        emb.patch_embedding.weight.fill_(1.0 / (3 * p["patch_size"] ** 2))
        emb.patch_embedding.bias.zero_()
        emb.position_embedding.weight.zero_()
    model.vision_model.post_layernorm = Contiguous()  # values unchanged (a real layer norm returns a fresh tensor too)
    model.connector.modality_projection = torch.nn.Identity()

    def features(out) -> list[np.ndarray]:
        with torch.no_grad():
            res = model.get_image_features(
                pixel_values=torch.as_tensor(out["pixel_values"]), pixel_attention_mask=torch.as_tensor(out["pixel_attention_mask"])
            )
        # one [frames * tokens, hidden * s^2] tensor per sample, in the order the LLM receives them
        return [f.mean(-1).numpy() for f in res.pooler_output]

    return SimpleNamespace(model=model, features=features)


@pytest.mark.parametrize("name", list(MODELS))
def test_connector_pixel_shuffle_merges_blocks_in_raster_order(name):
    lay = layout(name, (448, 448))
    model = tiny_model(name, lay).model
    s = lay.params["scale_factor"]
    side = lay.params["max_image_size"] // lay.params["patch_size"]
    n = side // s
    x = torch.arange(side * side, dtype=torch.float32).reshape(1, side * side, 1).repeat(1, 1, 2)
    y = model.connector.pixel_shuffle(x, s)[0]
    assert y.shape == (n * n, 2 * s * s)
    for k in range(n * n):
        r, c = divmod(k, n)
        want = {(s * r + a) * side + s * c + b for a in range(s) for b in range(s)}
        assert set(y[k].int().tolist()) == want


MARKER_CASES = [(name, c, {}) for name in MODELS for c in CANVASES + [(60, 1500)]] + [
    ("idefics3", c, SMALL) for c in [(448, 896), (1000, 180)]
]


@pytest.mark.parametrize("name,canvas,params", MARKER_CASES)
def test_marker_lands_in_mapped_token(name, canvas, params):
    lay = layout(name, canvas, **params)
    tiny = tiny_model(name, lay)
    radius = marker_radius(lay)
    centers = marker_positions(lay, 2, radius, seed=sum(canvas))
    out = image_processor(name, lay)(images=[[marker_image(canvas, c, radius)] for c in centers], return_tensors="np")
    for flat, c in zip(tiny.features(out), centers):
        assert flat.size == lay.num_tokens
        brightness = lay.split(flat)
        assert_marker_lands(lay, brightness, c, radius)
