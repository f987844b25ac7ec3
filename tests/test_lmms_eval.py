"""The lmms-eval task files (integrations/lmms_eval): they load the way lmms-eval loads them (YAML
with `!function utils.NAME` resolved against the folder's utils.py), and their scoring gives the
same accuracy as `linebench score` on the same predictions, because it is the same parser."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from linebench.score import score

ROOT = Path(__file__).resolve().parents[1] / "integrations" / "lmms_eval"


def utils():
    spec = importlib.util.spec_from_file_location("lmms_linebench_utils", ROOT / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(name: str) -> dict:
    """lmms-eval's loader resolves `!function utils.fn` to the function in the YAML's folder."""
    mod = utils()

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: getattr(mod, loader.construct_scalar(node).split(".", 1)[1]))
    return yaml.load((ROOT / name).read_text(), Loader=Loader)


def test_every_task_file_loads_with_callables_and_the_group_lists_them():
    names = []
    for t, repo in (("tracing", "tracing"), ("intersection", "intersection"), ("grid_patch", "grid-patch")):
        cfg = load(f"linebench_{t}.yaml")
        assert cfg["task"] == f"linebench_{t}" and cfg["dataset_path"] == f"linebench/{repo}" and cfg["test_split"] == "test"
        assert callable(cfg["doc_to_visual"]) and callable(cfg["doc_to_text"]) and callable(cfg["process_results"])
        assert cfg["metric_list"][0]["metric"] == "accuracy" and cfg["generation_kwargs"]["temperature"] == 0
        names.append(cfg["task"])
    assert load("linebench.yaml")["task"] == names


def test_lmms_scoring_equals_linebench_score(small_dataset, tmp_path):
    """Predictions of every kind (right, wrong, prose, unparseable) for a generated folder: the mean of
    process_results equals linebench score's accuracy (unparseable counted wrong in both)."""
    from datasets import load_dataset

    ds = load_dataset(str(small_dataset), split="train")
    mod = utils()
    preds = []
    for i, r in enumerate(ds):
        a = r["answer"]
        preds.append([a, f"The answer is {a}.", str(int(a) % 8 + 1), "no idea", f"**{a}**"][i % 5])
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "prediction": p}) + "\n" for r, p in zip(ds, preds)))
    report = score(small_dataset, path)
    lmms = [mod.process_results(r, [p])["accuracy"] for r, p in zip(ds, preds)]
    assert abs(sum(lmms) / len(lmms) - report.overall.accuracy) < 1e-12
    assert 0 < report.overall.accuracy < 1
    text = mod.doc_to_text(ds[0], {"pre_prompt": "Q: ", "post_prompt": " A:"})
    assert text == "Q: " + ds[0]["question"] + " A:" and mod.doc_to_visual(ds[0])[0].mode == "RGB"
