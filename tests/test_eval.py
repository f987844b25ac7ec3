"""`linebench eval`: the OpenAI backend against a fake server on 127.0.0.1 (the real `openai` client),
the HF backend on tiny random models, resume, reports, comparisons and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
from typer.testing import CliRunner  # noqa: E402

from fake_openai import Behaviour, FakeServer  # noqa: E402
from linebench.cli import app  # noqa: E402

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 grid-patch rows (test split), levels in turn, at 448 px (the tiny models resize to 224)."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    base = tmp_path_factory.mktemp("evaldata")
    generate(RunSpec("grid_patch", split="test", n=24, seed=5, params=ParamSpec((448, 448), "stratified"), maps=()), base / "gp")
    return base / "gp"


def truth_table(folder):
    from datasets import Image, load_dataset

    ds = load_dataset(str(folder), split="test").cast_column("image", Image(decode=False))
    return {hashlib.sha256(r["image"]["bytes"]).hexdigest(): r["answer"] for r in ds}


@pytest.fixture
def server(folder):
    s = FakeServer(truth_table(folder)).start()
    yield s
    s.stop()


def run(*args, env=None):
    return CliRunner().invoke(app, ["eval", *args], env=env, terminal_width=200)


def openai_args(server, folder, out, *extra):
    return [str(folder), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--retries", "3", "--timeout", "1", *extra]


def score_of(out):
    return json.loads((Path(out) / "score.json").read_text())


def test_correct_answers_score_100_and_the_images_are_the_rows_own(server, folder, tmp_path):
    res = run(*openai_args(server, folder, tmp_path / "a", "--api-key-env", "LB_KEY", "--system", "Be brief."), env={"LB_KEY": SECRET})
    assert res.exit_code == 0, res.output
    assert score_of(tmp_path / "a")["groups"][0]["accuracy"] == 1.0
    assert len(server.requests) == 24 and set(server.requests) == set(server.answers)  # every row's own PNG bytes, once
    assert all(h["authorization"] == f"Bearer {SECRET}" for h in server.headers_seen)
    body = server.bodies[0]
    assert body["temperature"] == 0 and body["messages"][0] == {"role": "system", "content": "Be brief."}
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())["identity"]
    assert run_json["system"] == "Be brief." and run_json["prompt_suffix"] == ""
    lines = [json.loads(x) for x in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    assert {"id", "prediction", "latency_s", "prompt_tokens", "completion_tokens", "model"} <= set(lines[0])
    for f in (tmp_path / "a").rglob("*"):  # the key goes nowhere but the Authorization header
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in res.output


@pytest.mark.parametrize("mode, accuracy, unparseable", [("wrong", 0.0, 0), ("garbage", 0.0, 24)])
def test_wrong_and_garbage_answers(server, folder, tmp_path, mode, accuracy, unparseable):
    server.behaviour = Behaviour(mode=mode)
    res = run(*openai_args(server, folder, tmp_path / "b"))
    assert res.exit_code == 0, res.output
    s = score_of(tmp_path / "b")
    assert s["groups"][0]["accuracy"] == accuracy and s["unparseable"] == unparseable
    page = (tmp_path / "b" / "report.html").read_text()
    assert "Wrong answers (12 shown)" in page and page.count("data:image/png;base64,") >= 12


def test_429_with_retry_after_and_500_then_success(server, folder, tmp_path):
    server.behaviour = Behaviour(fail_first=1, fail_status=429, retry_after=0.1)
    t0 = time.perf_counter()
    assert run(*openai_args(server, folder, tmp_path / "c", "--limit", "6")).exit_code == 0
    assert len(server.requests) == 6 and all(n == 2 for n in server.requests.values()) and time.perf_counter() - t0 >= 0.1
    server.requests.clear()
    server.behaviour = Behaviour(fail_first=2, fail_status=500)
    assert run(*openai_args(server, folder, tmp_path / "d", "--limit", "4")).exit_code == 0
    assert all(n == 3 for n in server.requests.values()) and score_of(tmp_path / "d")["groups"][0]["accuracy"] == 1.0


def test_a_hang_past_the_timeout_is_retried(server, folder, tmp_path):
    server.behaviour = Behaviour(hang_first=1, hang_s=2.5)
    res = run(*openai_args(server, folder, tmp_path / "e", "--limit", "2"))
    assert res.exit_code == 0, res.output
    assert all(n == 2 for n in server.requests.values()) and score_of(tmp_path / "e")["groups"][0]["accuracy"] == 1.0


def test_concurrency_is_honoured(server, folder, tmp_path):
    server.behaviour = Behaviour(delay_s=0.2)
    assert run(*openai_args(server, folder, tmp_path / "f", "--concurrency", "4")).exit_code == 0
    assert 2 <= server.max_in_flight <= 4


def test_401_names_the_variable_never_the_key(server, folder, tmp_path):
    server.behaviour = Behaviour(key="the-right-key")
    res = run(*openai_args(server, folder, tmp_path / "g", "--api-key-env", "LB_KEY"), env={"LB_KEY": SECRET})
    assert res.exit_code == 2 and "401" in res.output and "$LB_KEY" in res.output and SECRET not in res.output
    assert "Traceback" not in res.output
    server.behaviour = Behaviour(mode="404")
    res = run(*openai_args(server, folder, tmp_path / "h"))
    assert res.exit_code == 2 and "404" in res.output and "fake-vlm" in res.output


def test_a_refused_connection_is_one_line(folder, tmp_path):
    res = run(str(folder), "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "x"), "--retries", "0", "--timeout", "1")
    assert res.exit_code == 2 and "cannot reach the server" in res.output and "Traceback" not in res.output


def test_a_killed_run_resumes_and_never_asks_a_row_twice(server, folder, tmp_path):
    """Kill the process mid-run; the rerun asks only the rows without an answer on disk."""
    server.behaviour = Behaviour(delay_s=0.15)
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "linebench", "eval", *openai_args(server, folder, out, "--concurrency", "2")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = out / "predictions.jsonl"
    deadline = time.time() + 300  # a loaded machine takes long to start a process (imports)
    while time.time() < deadline and (not preds.is_file() or len(preds.read_text().splitlines()) < 6):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    written = {json.loads(x)["id"] for x in preds.read_text().splitlines() if x.strip()}
    assert 6 <= len(written) < 24
    before = dict(server.requests)
    res = run(*openai_args(server, folder, out, "--concurrency", "2"))
    assert res.exit_code == 0, res.output
    from datasets import Image, load_dataset

    ds = load_dataset(str(folder), split="test").cast_column("image", Image(decode=False))
    for r in ds:
        digest = hashlib.sha256(r["image"]["bytes"]).hexdigest()
        if r["id"] in written:  # answered before the kill: not asked again
            assert server.requests[digest] == before[digest] == 1
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(lines) == 24 and len({x["id"] for x in lines}) == 24
    assert score_of(out)["groups"][0]["accuracy"] == 1.0


def test_another_run_in_the_folder_is_refused_unless_forced(server, folder, tmp_path):
    out = tmp_path / "r"
    assert run(*openai_args(server, folder, out, "--limit", "3")).exit_code == 0
    res = run(str(folder), "--model", "other-vlm", "--base-url", server.url, "--out", str(out), "--limit", "3")
    assert res.exit_code == 2 and "holds another evaluation" in res.output and "model" in res.output
    assert run(str(folder), "--model", "other-vlm", "--base-url", server.url, "--out", str(out), "--limit", "3", "--force").exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "grpc"], "--backend must be one of"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--model", "/no/such/model"], "no such folder"),
        (["--backend", "openai"], "needs --base-url"),
    ],
)
def test_bad_input(folder, tmp_path, args, message):
    base = [str(folder), "--model", "tiny", "--out", str(tmp_path / "z")]
    if "--model" in args:
        base = [str(folder), "--out", str(tmp_path / "z")]
    res = run(*base, *args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "z" / "predictions.jsonl").exists()


def test_data_without_question_or_image(tmp_path):
    from datasets import Dataset

    bad = tmp_path / "bad"
    Dataset.from_dict({"id": ["a"], "answer": ["1"]}).to_parquet(str(bad / "data" / "test-0.parquet"))
    (bad / "manifest.json").write_text("{}")
    res = run(str(bad), "--model", "tiny", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "no 'image' column" in res.output


# --------------------------------------------------------------------------- HF backend


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    os.environ["LINEBENCH_CACHE"] = str(tmp_path_factory.mktemp("lb-cache-eval"))
    from linebench.train import tiny

    return {name: tiny.cached(name) for name in ("tiny", "tiny-qwen2.5-vl")}  # the others: tests/test_families.py


@pytest.mark.parametrize("name", ["tiny", "tiny-qwen2.5-vl"])
def test_hf_batches_give_the_same_answers_as_one_at_a_time(tiny_models, folder, name):
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText

    import torch

    from linebench.evaluate import generate
    from linebench.train import tiny

    model = AutoModelForImageTextToText.from_pretrained(tiny_models[name]).eval()
    proc = tiny.load_processor(tiny_models[name])
    ds = load_dataset(str(folder), split="test")
    # prompts of different lengths, so a batch of four is left-padded
    rows = [{**ds[i], "question": ds[i]["question"] + " Look closely." * (i % 3)} for i in range(8)]
    calls = []  # (attention mask, first step's logits) of every generate() call
    plain = model.generate

    def recording(**kw):
        out = plain(**kw, output_scores=True, return_dict_in_generate=True)
        calls.append((kw["attention_mask"], out.scores[0]))
        return out.sequences

    model.generate = recording
    one = generate(model, proc, rows, batch_size=1, max_new_tokens=6)
    alone = torch.cat([s for _, s in calls])
    calls.clear()
    four = generate(model, proc, rows, batch_size=4, max_new_tokens=6)
    batched = torch.cat([s for _, s in calls])
    assert one == four and all(isinstance(a, str) for a in one)
    assert any(bool((mask == 0).any()) for mask, _ in calls)  # padding really happened
    # each row's next-token logits are its own, batched or not (the answers of a random model
    # are the same for every row, so comparing them alone would not see a row mixed up)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3) and not torch.allclose(alone[0], alone[4], atol=1e-3)
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-4)


def test_hf_attention_metrics_equal_eager_attentions(tiny_models, folder):
    """KL and the ratio from the capture (SDPA kept) equal those from output_attentions=True."""
    import numpy as np
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText

    from linebench.evaluate.hf import attention_metrics
    from linebench.maps import target_tokens
    from linebench.train import format_token_ids, tiny
    from linebench.train.data import KLALCollator, as_example

    model = AutoModelForImageTextToText.from_pretrained(tiny_models["tiny"]).eval()
    proc = tiny.load_processor(tiny_models["tiny"])
    ds = load_dataset(str(folder), split="test")
    rows = [ds[i] for i in range(4)]
    got = attention_metrics(model, proc, rows, batch_size=2)
    coll = KLALCollator(proc)
    batch = coll([as_example(r) for r in rows])
    targets = batch.pop("klal_targets")
    batch.pop("klal_ids")
    model.set_attn_implementation("eager")
    with torch.no_grad():
        att = model(**batch, output_attentions=True).attentions
    img = model.config.image_token_id
    special = set(proc.tokenizer.all_special_ids)
    fmt = format_token_ids(proc.tokenizer)
    assert len(got["layers"]) == len(att) == model.config.text_config.num_hidden_layers  # every layer captured
    for layer, expected in enumerate(got["layers"]):
        kls, ratios, shares = [], [], []
        for b, r in enumerate(rows):
            ids = batch["input_ids"][b].tolist()
            span = [i for i, t in enumerate(ids) if t == img]
            answer = [i for i, v in enumerate(batch["labels"][b].tolist()) if v != -100 and ids[i] not in special]
            content = [i for i in answer if ids[i] not in fmt] or answer[-1:]  # the default query: answer-content
            for pos in content:
                a = att[layer][b, :, pos - 1, span[0] : span[-1] + 1]
                shares.append(float(a.sum(-1).mean()))  # eager rows sum to 1 over every key: the image's share before renormalising
                q = (a / a.sum(-1, keepdim=True)).mean(0).double().numpy()
                p = targets[b][0].double().numpy()
                nz = p > 0
                kls.append((p[nz] * (np.log(p[nz]) - np.log(q[nz]))).sum())
                mask = target_tokens(r, got["profile"])
                ratios.append(q[mask].mean() / q.mean())
        assert abs(np.mean(kls) - expected["kl"]) < 1e-4 and abs(np.mean(ratios) - expected["ratio"]) < 1e-4
        assert abs(np.mean(shares) - expected["visual_share"]) < 1e-5 and 0 < expected["visual_share"] < 1


def test_hf_eval_end_to_end_with_attention_report_and_compare(tiny_models, folder, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    res = run(str(folder), "--model", "tiny", "--limit", "8", "--attention", "--out", str(a), "--batch-size", "4", "--max-new-tokens", "8")
    assert res.exit_code == 0, res.output
    att = json.loads((a / "attention.json").read_text())
    assert len(att["layers"]) == 4 and set(att["by_level"]) == {"easy", "medium", "hard"}
    page = (a / "report.html").read_text()
    assert "<h2>Attention</h2>" in page and "src='http" not in page and 'src="http' not in page  # self-contained
    assert len(list((a / "overlays").glob("*.png"))) == 6
    assert run(str(folder), "--model", "tiny-qwen2.5-vl", "--limit", "8", "--out", str(b), "--max-new-tokens", "8").exit_code == 0
    res = run("--compare", str(a), "--compare", str(b), "--out", str(tmp_path / "cmp"))
    assert res.exit_code == 0, res.output
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| tiny |" in table and "| tiny-qwen2.5-vl |" in table and (tmp_path / "cmp" / "compare.png").is_file()
