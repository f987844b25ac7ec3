"""`linebench train` and its parts on the tiny default models (built from configs, CPU, no download):
maps that line up with the processor's image tokens, KLALTrainer over TRL, the NTP-only baseline,
overfitting, resume, bad input, and two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("transformers")

from linebench.errors import UsageError  # noqa: E402
from linebench.train import tiny  # noqa: E402

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# the two tiny models these tests were written for (one-grid LLaVA, dynamic-resolution Qwen2.5-VL);
# every other family's tiny model goes through the same path in tests/test_families.py
NAMES = ("tiny", "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Both tiny models in a cache of the session's own (LINEBENCH_CACHE)."""
    cache = tmp_path_factory.mktemp("lb-cache")
    os.environ["LINEBENCH_CACHE"] = str(cache)
    return {name: tiny.cached(name) for name in NAMES}


@pytest.fixture(scope="session")
def gp_rows(tmp_path_factory):
    """A small grid-patch folder at the tiny models' canvas (and one wider, for Qwen's dynamic sizes)."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    base = tmp_path_factory.mktemp("gp")
    for name, canvas in (("square", (224, 224)), ("wide", (280, 224))):
        generate(RunSpec("grid_patch", n=24, seed=3, params=ParamSpec(canvas, "easy"), maps=()), base / name)
    return base


def rows(folder, n=None):
    from datasets import load_dataset

    ds = load_dataset(str(folder), split="train")
    return [ds[i] for i in range(n or len(ds))]


def test_tiny_models_reload_from_their_folders_and_speak_the_tasks(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from linebench.tasks import ParamSpec, get_task, resolve_params

    for name, folder in tiny_dir.items():
        model = AutoModelForImageTextToText.from_pretrained(folder)
        proc = tiny.load_processor(folder)
        assert tiny.is_tiny(folder)["name"] == name and sum(p.numel() for p in model.parameters()) < 2_000_000
        for task in ("tracing", "intersection", "grid_patch"):
            t = get_task(task)
            scene = t.sample(np.random.default_rng(0), resolve_params(t, "medium", ParamSpec((448, 448), "medium", {})))
            ids = proc.tokenizer(scene.question + " " + scene.answer)["input_ids"]
            assert proc.tokenizer.unk_token_id not in ids, (task, scene.question)


def test_map_profiles_come_from_the_processor(tiny_dir):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    from linebench.train.data import map_profile

    assert map_profile(tiny.load_processor(tiny_dir["tiny"])) == "llava-1.5:side=224"
    assert map_profile(tiny.load_processor(tiny_dir["tiny-qwen2.5-vl"])) == "qwen2.5-vl:max_pixels=50176:min_pixels=50176"
    tok = tiny.load_processor(tiny_dir["tiny"]).tokenizer
    real = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}), tokenizer=tok, patch_size=14)
    assert map_profile(real) == "llava-1.5"  # llava-hf/llava-1.5-7b-hf's values
    with pytest.raises(UsageError, match="no map profile"):
        map_profile(type("GemmaProcessor", (), {"image_processor": None})())


@pytest.mark.parametrize("name", NAMES)
def test_maps_line_up_with_the_image_tokens(tiny_dir, gp_rows, name):
    """Every map has as many values as the processor put image tokens, batch > 1 with images of
    different sizes (Qwen), left and right padding (prompt-completion pads both sides)."""
    from linebench.train.data import KLALCollator, as_example

    proc = tiny.load_processor(tiny_dir[name])
    examples = [as_example(r) for r in rows(gp_rows / "square", 2) + rows(gp_rows / "wide", 2)]
    examples[1]["prompt"][0]["content"] += " Look closely, then answer."  # a longer prompt: padding
    batch = KLALCollator(proc)(examples)
    image_id = proc.image_token_id if hasattr(proc, "image_token_id") else None
    sizes = [int(t[0].numel()) for t in batch["klal_targets"]]
    placed = [int((batch["input_ids"][b] == image_id).sum()) for b in range(4)]
    assert sizes == placed and all(abs(float(t[0].sum()) - 1) < 1e-5 for t in batch["klal_targets"])
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths, padded
    if name == "tiny-qwen2.5-vl":
        assert len(set(sizes)) == 2  # dynamic resolution: the wide images have another token count
    with pytest.raises(UsageError, match="row grid_patch-train-s3-0000000: the processor put"):
        KLALCollator(proc, "grid5")(examples[:1])  # a profile that is not this processor's


def trainer_for(folder, data, *, klal=True, steps=4, lr=2e-3, out, klal_backend="torch", **kw):
    from datasets import load_dataset
    from trl import SFTConfig
    from transformers import AutoModelForImageTextToText

    from linebench.train import KLALCollator, KLALTrainer, examples_transform

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder).to(DEV)
    proc = tiny.load_processor(folder)
    ds = load_dataset(str(data), split="train").with_transform(examples_transform())
    args = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=4, max_steps=steps, learning_rate=lr, logging_steps=1, remove_unused_columns=False,
        report_to="none", gradient_checkpointing=False, bf16=False, max_length=None, save_strategy="no", seed=0, lr_scheduler_type="constant",
        use_cpu=DEV.type == "cpu",
    )  # fmt: skip
    # the reference op: the kernels (interpreted on CPU, slow) are tested in test_klal.py
    return KLALTrainer(
        model=model, args=args, train_dataset=ds, data_collator=KLALCollator(proc, maps=klal), processing_class=proc, klal=klal,
        klal_backend=klal_backend, **kw,
    )  # fmt: skip


def test_ntp_and_klal_fall_when_overfitting_one_batch(tiny_dir, gp_rows, tmp_path):
    from datasets import load_dataset

    one = tmp_path / "one"
    load_dataset(str(gp_rows / "square"), split="train").select(range(4)).to_parquet(str(one / "data" / "train-0.parquet"))
    tr = trainer_for(tiny_dir["tiny"], one, steps=30, out=tmp_path / "o")
    tr.train()
    logs = [h for h in tr.state.log_history if "ntp" in h]
    assert logs[-1]["ntp"] < 0.5 * logs[0]["ntp"]
    assert logs[-1]["klal"] < 0.8 * logs[0]["klal"]
    assert all(h["klal_lambda"] == 1.0 for h in logs)
    assert abs(logs[0]["loss"] - (logs[0]["ntp"] + logs[0]["klal"])) < 1e-3  # L = NTP + lambda KLAL


def test_the_ntp_only_baseline_never_calls_the_op(tiny_dir, gp_rows, tmp_path, monkeypatch):
    import linebench.train.capture as capture_mod

    calls = []
    real = capture_mod.klal_loss
    monkeypatch.setattr(capture_mod, "klal_loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    tr = trainer_for(tiny_dir["tiny"], gp_rows / "square", klal=False, steps=2, out=tmp_path / "o")
    tr.train()
    assert calls == [] and tr.capture is None
    assert all("klal" not in h for h in tr.state.log_history)
    tr2 = trainer_for(tiny_dir["tiny"], gp_rows / "square", klal=True, steps=2, out=tmp_path / "o2", klal_layers="last:1")
    tr2.train()
    assert len(calls) == 2  # one call per step: one supervised layer, every row in one call


def test_gradient_accumulation_scales_klal_like_trl_scales_its_aux_loss(tiny_dir, gp_rows, tmp_path):
    """With accumulation, each micro-batch adds lambda * KLAL / steps (TRL's NTP is a sum over the
    accumulated batch), so the logged total stays NTP + lambda * KLAL."""
    from datasets import load_dataset
    from trl import SFTConfig

    tr = trainer_for(tiny_dir["tiny"], gp_rows / "square", steps=2, out=tmp_path / "o", klal_lambda=0.5)
    tr.args.gradient_accumulation_steps = 2
    tr.train()
    h = [h for h in tr.state.log_history if "ntp" in h][0]
    assert abs(h["loss"] - (h["ntp"] + 0.5 * h["klal"])) < 0.05 * h["loss"]


def run_cli(*args):
    from typer.testing import CliRunner

    from linebench.cli import app

    return CliRunner().invoke(app, ["train", *args])


def test_linebench_train_end_to_end(tiny_dir, tmp_path):
    out = tmp_path / "run"
    res = run_cli("--klal", "--n", "24", "--eval-n", "8", "--steps", "3", "--batch-size", "4", "--out", str(out), "--workers", "1", "--klal-backend", "torch")
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "attention ratio" in res.output
    for f in ("run.json", "metrics.jsonl", "eval.json", "loss.png", "accuracy.png", "attention.png", "model/model.safetensors"):
        assert (out / f).is_file(), f
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["klal"] and "trl" in run["versions"]
    ev = json.loads((out / "eval.json").read_text())
    assert ev["before"]["rows"] == 8 and len(ev["after"]["layers"]) == 4 and ev["profile"] == "llava-1.5:side=224"
    verdicts = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]  # for paired tests of two runs
    assert len(verdicts) == 8 and sum(v["correct"] for v in verdicts) == round(8 * ev["after"]["accuracy"])
    d = ev["after"]["diagnostics"]  # baselines on the same rows beside every accuracy
    assert d["rows"] == 8 and d["accuracy"] == ev["after"]["accuracy"] and 0 < d["uniform_baseline"] < 0.5
    assert 0 < d["majority_baseline"] <= 1 and "after: accuracy" in res.output and "majority answer" in res.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("klal" in x for x in lines) and sum("eval" in x for x in lines) == 2
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(out / "model")  # an ordinary checkpoint
    again = run_cli("--klal", "--n", "24", "--out", str(out))
    assert again.exit_code == 2 and "already holds a run" in again.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nope/model"], "no such folder"),
        (["--model", "someone/not-cached"], "not in your Hugging Face cache"),
        (["--lambda", "-1"], "--lambda must be >= 0"),
        (["--klal-layers", "9"], "out of range"),
        (["--klal-query", "first"], "--klal-query must be one of"),
        (["--resume"], "holds no run to resume"),
        (["--steps", "0"], "--steps must be at least 1"),
    ],
)
def test_bad_input_is_one_line(tiny_dir, tmp_path, args, message):
    res = run_cli(*args, "--out", str(tmp_path / "x"), "--n", "8", "--eval-n", "4")
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "x" / "model").exists()


def test_a_model_that_is_not_a_supported_vlm_and_data_without_geometry(tiny_dir, tmp_path):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(llama)
    res = run_cli("--model", str(llama), "--out", str(tmp_path / "a"))
    assert res.exit_code == 2 and "not supported for training" in res.output
    plain = tmp_path / "plain"
    Dataset.from_dict({"question": ["q"], "answer": ["1"], "text": ["x"]}).to_parquet(str(plain / "data" / "train-0.parquet"))
    res = run_cli("--data", str(plain), "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "no 'image' column" in res.output


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(Path(folder) / "model" / "model.safetensors"))


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tiny_dir, gp_rows, tmp_path):
    from linebench.train.run import TrainOptions, train

    common = dict(data=str(gp_rows / "square"), klal=True, steps=4, save_every=2, batch_size=4, eval_n=4, seed=1, backend="torch")
    full = train(TrainOptions(out=str(tmp_path / "full"), **common), log=lambda m: None)
    part = tmp_path / "part"
    train(TrainOptions(out=str(part), **common), log=lambda m: None)
    import shutil

    shutil.rmtree(part / "checkpoints" / "checkpoint-4")  # killed after step 2's checkpoint
    shutil.rmtree(part / "model")
    said = []
    train(TrainOptions(out=str(part), resume=True, **common), log=said.append)
    # it went on from step 2's checkpoint (training again from step 0 would end the same, seeded)
    assert any("going on from" in m and m.endswith("checkpoint-2") for m in said), said
    records = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # the lines after the checkpoint logged once, again
    assert [r["eval"]["label"] for r in records if "eval" in r] == ["before", "after"]  # no second "before"
    a, b = _weights(tmp_path / "full"), _weights(part)
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    first = [r for r in map(json.loads, (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    second = [r for r in map(json.loads, (part / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert abs(first[-1]["loss"] - second[-1]["loss"]) < 1e-5 and full["after"]["accuracy"] == json.loads((part / "eval.json").read_text())["after"]["accuracy"]


def test_two_processes_train_to_identical_weights(tiny_dir, gp_rows, tmp_path):
    """DDP on CPU (gloo) through torchrun: both ranks end with the same parameters."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import hashlib, os, sys, torch\n"
        "from linebench.train.run import TrainOptions, train\n"
        f"opts = TrainOptions(data={str(gp_rows / 'square')!r}, klal=True, steps=2, save_every=10, batch_size=2, eval_n=2, out={str(tmp_path / 'ddp')!r}, backend='torch')\n"
        "from linebench.train import run as R\n"
        "import linebench.train.trainer as T\n"
        "orig = T.KLALTrainer.train\n"
        "def train_and_hash(self, *a, **k):\n"
        "    out = orig(self, *a, **k)\n"
        "    h = hashlib.sha256(b''.join(p.detach().cpu().numpy().tobytes() for p in self.model.parameters())).hexdigest()\n"
        "    import torch.distributed as dist\n"
        "    world = dist.get_world_size() if dist.is_initialized() else 1\n"
        "    open(os.path.join(sys.argv[1], 'rank' + os.environ['RANK']), 'w').write(f'{h} {self.accelerator.num_processes} {self.args.world_size} {world}')\n"
        "    return out\n"
        "T.KLALTrainer.train = train_and_hash\n"
        "R.train(opts, log=lambda m: None) if os.environ['RANK'] == '0' else None\n"
    )
    # every rank runs the trainer; only rank 0 writes the run folder
    script.write_text(script.read_text().replace("R.train(opts, log=lambda m: None) if os.environ['RANK'] == '0' else None\n", "R.train(opts, log=lambda m: None)\n"))
    env = dict(os.environ, LINEBENCH_CACHE=os.environ["LINEBENCH_CACHE"], CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29577", str(script), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    log = "\n".join(line for line in p.stderr.splitlines() if "it/s]" not in line and "%|" not in line)  # no progress bars
    assert p.returncode == 0, log[-6000:]
    (h0, *seen0), (h1, *seen1) = ((tmp_path / f"rank{r}").read_text().split() for r in (0, 1))
    # the Trainer ran as two processes of one job (each rank alone with the same seed would also
    # end with equal weights), and their gradients were averaged: equal weights
    assert seen0 == seen1 == ["2", "2", "2"]
    assert h0 == h1


@pytest.mark.parametrize("name", NAMES)
def test_checkpoints_save_on_every_supported_model(tiny_dir, gp_rows, tmp_path, name):
    """--save-every writes a checkpoint (weights, image processor, tokenizer) on every model family
    linebench trains; tiny Qwen2.5-VL's processor has no video processor, which once crashed the
    first save (issue 26)."""
    from linebench.train.run import TrainOptions, train

    out = tmp_path / name
    train(TrainOptions(model=str(tiny_dir[name]), data=str(gp_rows / "square"), klal=True, steps=2, save_every=1, batch_size=2, eval_n=2,
                       out=str(out), backend="torch"), log=lambda m: None)  # fmt: skip
    for step in (1, 2):
        ckpt = out / "checkpoints" / f"checkpoint-{step}"
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()
        assert (ckpt / "preprocessor_config.json").is_file() or (ckpt / "processor_config.json").is_file()  # the image processor's settings
    assert (out / "model" / "tokenizer.json").is_file()


def test_lora_goes_on_the_text_decoder_only():
    """The vision tower's blocks use the same projection names in Qwen2.5-VL: none of them is a target."""
    from linebench.families import qwen
    from linebench.train.model import lora_targets

    model, _ = qwen.build_tiny()
    names = lora_targets(model)
    assert len(names) == 4 * 7 and all(".language_model." in n for n in names)
    assert not any(n.startswith("model.visual") for n in names)
