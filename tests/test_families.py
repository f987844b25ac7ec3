"""Every family in linebench.families, on its tiny random-init model (its own config, model and
processor classes; tokenizer built locally; no download): the support matrix of docs/training.md,
row by row.

For each family: (1) the map has as many values as the processor puts image tokens in input_ids, on
canvases 448x448, 640x480 and 480x640; (2) the captured KLAL and its gradients equal the eager
`output_attentions` reference on every supervised layer; (3) `linebench train --klal --lora` runs and
`--resume` of the finished run loads its checkpoint; (4) `linebench eval --backend hf --attention`
runs on it. LLaVA-1.5 and Qwen2.5-VL are tested the same way, and more, in test_train.py,
test_capture.py and test_eval.py.
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from linebench.families import REGISTRY  # noqa: E402
from linebench.train import tiny  # noqa: E402

from family_util import (  # noqa: E402
    assert_same_grads_linear_attention_looser,
    capture_batch,
    eager_reference,
    grads,
    grid_patch,
    image_positions,
    load_tiny,
    read_rows,
)

TESTED_ELSEWHERE = set(os.environ.get("LB_TEST_SKIP", "llava-1.5,qwen2.5-vl").split(","))  # test_train.py, test_capture.py, test_eval.py
FAMILIES = [f.name for f in REGISTRY.values() if f.build_tiny is not None and f.name not in TESTED_ELSEWHERE]
CANVASES = ((448, 448), (640, 480), (480, 640))


@pytest.fixture(scope="module")
def canvases(tmp_path_factory):
    """One grid-patch folder per canvas (3 rows each)."""
    base = tmp_path_factory.mktemp("canvases")
    for w, h in CANVASES:
        grid_patch(base / f"{w}x{h}", n=3, seed=5, canvas=(w, h))
    return base


@pytest.mark.parametrize("name", FAMILIES)
def test_maps_line_up_on_every_canvas(name, linebench_cache, canvases):
    from linebench.train.data import KLALCollator, as_example

    from transformers import AutoConfig

    from linebench.train.capture import image_token_of

    folder = tiny.cached(REGISTRY[name].tiny_name)
    proc = tiny.load_processor(folder)
    collator = KLALCollator(proc, image_token_id=image_token_of(AutoConfig.from_pretrained(folder)))
    assert KLALCollator(proc).image_token_id == collator.image_token_id  # a user's own TRL script needs no model to count the right token
    for w, h in CANVASES:
        examples = [as_example(r) for r in read_rows(canvases / f"{w}x{h}")[:2]]
        batch = collator(examples)  # raises (one line naming the row) when a map and the image tokens disagree
        for b, targets in enumerate(batch["klal_targets"]):
            assert int(targets[0].numel()) == len(image_positions(batch, b, collator.image_token_id)) > 0
            assert abs(float(targets[0].sum()) - 1) < 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_captured_klal_equals_the_eager_reference(name, linebench_cache, canvases):
    from linebench.train.capture import image_token_of
    from linebench.train.data import KLALCollator, as_example

    model, proc = load_tiny(REGISTRY[name].tiny_name)
    collator = KLALCollator(proc, image_token_id=image_token_of(model))
    batch = collator([as_example(r) for r in read_rows(canvases / "640x480")[:2]])
    cap, fmt, special = capture_batch(model, proc, batch)
    layers = [i for i in cap.layers if i not in cap.left_out]
    assert layers, "no layer supervised"
    expected, ref = eager_reference(model, batch, collator.image_token_id, layers, fmt, special)
    assert abs(cap.loss.item() - expected.item()) < 1e-4 * max(1.0, expected.item()) and expected.item() > 0
    # linear-attention parameters (Qwen3.5) get 1e-4 of their largest gradient (see the helper)
    assert_same_grads_linear_attention_looser(model, grads(cap.loss, model), grads(expected, ref))


@pytest.mark.parametrize("name", FAMILIES)
def test_train_lora_resume_and_eval_with_attention(name, linebench_cache, canvases, tmp_path):
    from typer.testing import CliRunner

    from linebench.cli import app

    runner = CliRunner()
    tiny_name = REGISTRY[name].tiny_name
    out = tmp_path / "run"
    args = ["train", "--model", tiny_name, "--klal", "--lora", "--lora-rank", "4", "--n", "4", "--eval-n", "1", "--steps", "1",
            "--batch-size", "2", "--save-every", "1", "--out", str(out), "--workers", "1", "--klal-backend", "torch"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ev = json.loads((out / "eval.json").read_text())
    assert ev["after"]["rows"] == 1 and ev["after"]["layers"] and ev["profile"].startswith(REGISTRY[name].profile_base)
    assert any("klal" in json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines())
    again = runner.invoke(app, [*args, "--resume"])  # the finished run: its last checkpoint loads, training is done
    assert again.exit_code == 0, again.output
    assert "going on from" in again.output and (out / "model").is_dir()
    res = runner.invoke(app, ["eval", str(out / "data" / "test"), "--model", tiny_name, "--limit", "1", "--attention",
                              "--out", str(tmp_path / "eval"), "--max-new-tokens", "6"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "eval" / "attention.json").read_text())["layers"]


def test_docs_show_the_support_matrix():
    """docs/training.md's matrix is `linebench models --markdown`, row for row (it cannot drift)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from linebench.cli import app

    res = CliRunner().invoke(app, ["models", "--markdown"])
    assert res.exit_code == 0, res.output
    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    rows = [line for line in res.output.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(REGISTRY)
    missing = [line for line in rows if line not in doc.splitlines()]
    assert missing == [], "docs/training.md's support matrix differs from `linebench models --markdown`"


@pytest.mark.parametrize("model_type", ["bert", None])
def test_a_model_no_family_covers_is_one_line_naming_the_families(model_type):
    from linebench.errors import UsageError
    from linebench.families import for_model_type, supported

    with pytest.raises(UsageError, match="not supported for training and evaluation") as e:
        for_model_type(model_type)
    assert supported() in str(e.value) and "\n" not in str(e.value)
