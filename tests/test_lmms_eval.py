"""linebench in lmms-eval (issue 30): lmms-eval's own TaskManager and simple_evaluate (installed by
the test command with --no-deps) run folders made by `linebench export --to lmms-eval` with a fake
model; accuracy, per level too, equals `linebench score` on the same answers, and the samples
`--log_samples` writes stay under 1 KB a row. The shipped task files (integrations/lmms_eval, the
Hub releases) are the same task text, and their group gives a combined score."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from linebench.cli import app
from linebench.harnesses.lmms_eval import task_file
from linebench.samples import RunSpec
from linebench.score import score
from linebench.tasks import ParamSpec

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "integrations" / "lmms_eval"
runner = CliRunner()


def _answers(rows, grounding: bool) -> dict[str, str]:
    """Every kind of answer, by a hash of the id: right, right in prose, wrong, unparseable, bold."""
    from linebench.pointing import answer_text

    out = {}
    for r in rows:
        right = answer_text(json.loads(r["geometry"])) if grounding else r["answer"]
        wrong = "[1, 1, 2, 2]" if grounding else ("(9, 9)" if r["answer"].startswith("(") else str(int(r["answer"]) % 9 + 1))
        out[r["id"]] = [right, f"The answer is {right}.", wrong, "no idea", f"**{right}**"][zlib.crc32(r["id"].encode()) % 5]
    return out


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Two generated test splits and a `linebench maps` folder, exported, run in lmms-eval once
    (the three tasks and a group of two of them, made from the shipped group file)."""
    from datasets import load_dataset

    from linebench.dataset import generate
    from test_annotations import _refcoco

    base = tmp_path_factory.mktemp("lmms")
    folders = {}
    for task, n in (("tracing", 18), ("grid_patch", 12)):
        folders[task] = base / task if task == "tracing" else base / "a folder: #2" / task  # YAML-hostile path
        generate(RunSpec(task, split="test", n=n, seed=11, params=ParamSpec(difficulty="stratified")), folders[task], workers=1)
    _refcoco(base / "refcoco.parquet", n=10)
    folders["refcoco"] = base / "refcoco"
    r = runner.invoke(app, ["maps", str(base / "refcoco.parquet"), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(folders["refcoco"]), "-w", "1"])
    assert r.exit_code == 0, r.output

    answers, names, predictions = {}, {}, {}
    for key, folder in folders.items():
        out = base / f"export-{key}"
        r = runner.invoke(app, ["export", str(folder), "--to", "lmms-eval", "--out", str(out)])
        assert r.exit_code == 0, r.output
        names[key] = json.loads((out / "export.json").read_text())["name"]
        split = "train" if key == "refcoco" else "test"
        rows = load_dataset(str(folder), split=split)
        given = _answers(rows, grounding=key == "refcoco")
        answers.update(given)
        predictions[key] = base / f"{key}.jsonl"
        predictions[key].write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in given.items()))
    group = yaml.safe_load((SHIPPED / "linebench.yaml").read_text())
    group.update(group="lb_pair", task=[names["tracing"], names["grid_patch"]])
    (base / "group").mkdir()
    (base / "group" / "lb_pair.yaml").write_text(yaml.safe_dump(group))
    (base / "answers.json").write_text(json.dumps(answers))
    result = base / "result.json"
    include = [str(base / f"export-{k}") for k in folders] + [str(base / "group")]
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "lmms_eval_run.py"), str(result), str(base / "answers.json"), *include,
                        "--tasks", ",".join([names["refcoco"], "lb_pair"])],
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return {"folders": folders, "names": names, "predictions": predictions, **json.loads(result.read_text())}


@pytest.mark.parametrize("key", ["tracing", "grid_patch", "refcoco"])
def test_lmms_eval_accuracy_and_per_level_equal_linebench_score(harness, key):
    got = harness["results"][harness["names"][key]]
    report = score(harness["folders"][key], harness["predictions"][key])
    assert 0 < report.overall.accuracy < 1  # right and wrong answers both present
    assert got["accuracy,none"] == pytest.approx(report.overall.accuracy, abs=1e-12)
    levels = {g.value: g.accuracy for g in report.groups if g.by == "difficulty"} or {"all": report.overall.accuracy}
    assert got["per_level,none"] == pytest.approx(levels, abs=1e-12)
    assert list(got["per_level,none"]) == list(levels)  # in the task's level order
    if key != "refcoco":
        assert list(levels) == ["easy", "medium", "hard"]


def test_the_group_score_is_the_mean_of_its_tasks(harness):
    names = harness["names"]
    tasks = [harness["results"][names[k]]["accuracy,none"] for k in ("tracing", "grid_patch")]
    assert harness["results"]["lb_pair"]["accuracy,none"] == pytest.approx(sum(tasks) / 2, abs=1e-12)


def test_logged_samples_stay_under_1_kb_a_row(harness):
    for key, name in harness["names"].items():
        for what in ("logged_bytes", "sample_bytes"):  # the file's lines, the samples with their docs
            sizes = harness[what][name]
            assert len(sizes) == {"tracing": 18, "grid_patch": 12, "refcoco": 10}[key]
            assert 100 < max(sizes) < 1024, (key, what, max(sizes))


def test_the_shipped_task_files_are_the_task_text_for_the_hub_releases():
    for t, repo in (("tracing", "tracing"), ("intersection", "intersection"), ("grid_patch", "grid-patch")):
        text = (SHIPPED / f"linebench_{t}.yaml").read_text()
        assert text == task_file(task=f"linebench_{t}", path=f"linebench/{repo}", split="test", include="integrations/lmms_eval",
                                 what=f"linebench's {t} benchmark (the Hub release linebench/{repo}) for lmms-eval")  # fmt: skip
    group = yaml.safe_load((SHIPPED / "linebench.yaml").read_text())
    assert group["task"] == ["linebench_tracing", "linebench_intersection", "linebench_grid_patch"]
    assert group["aggregate_metric_list"] == [{"metric": "accuracy", "aggregation": "mean", "weight_by_size": False}]
    shipped_utils = (SHIPPED / "utils.py").read_text()
    for fn in ("process_docs", "doc_to_visual", "doc_to_text", "process_results", "per_level"):
        assert fn in shipped_utils and f"utils.{fn}" in text + "utils.process_docs"


def test_process_docs_keeps_only_what_the_prompt_and_scoring_need(small_dataset):
    from datasets import load_dataset

    from linebench.harnesses import lmms_eval

    ds = load_dataset(str(small_dataset), split="train")
    slim = lmms_eval.process_docs(ds)
    assert slim.column_names == ["image", "id", "question", "answer", "task", "difficulty"]
    assert len(slim) == len(ds) and slim[0]["question"] == ds[0]["question"]
    assert lmms_eval.doc_to_text(slim[0], {"pre_prompt": "Q: ", "post_prompt": " A:"}) == "Q: " + ds[0]["question"] + " A:"
