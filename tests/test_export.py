"""`linebench export` (issue 30). VLMEvalKit is not on PyPI and its requirements pull torchvision,
which does not install beside the CPU torch here, so its dataset class is not run in the suite
(it was run against VLMEvalKit's own code once, docs/eval.md); what the class does is tested:
the TSV reads back the way VLMEvalKit reads it (images byte for byte, every field kept), and its
scoring (`vlmevalkit.score_rows`) equals `linebench score` on the same answers, overall and per
level, for generated rows and for a `linebench maps` folder's box answers. The command's errors are
one line, exit 2, and leave nothing behind."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from linebench.cli import app
from linebench.harnesses.vlmevalkit import read_tsv, score_rows
from linebench.samples import RunSpec
from linebench.score import score
from linebench.tasks import ParamSpec

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from linebench.dataset import generate
    from test_annotations import _refcoco

    base = tmp_path_factory.mktemp("export")
    out = {"intersection": base / "intersection"}
    generate(RunSpec("intersection", split="test", n=16, seed=4, params=ParamSpec(difficulty="stratified")), out["intersection"], workers=1)
    _refcoco(base / "refcoco.parquet", n=10)
    out["refcoco"] = base / "refcoco"
    r = runner.invoke(app, ["maps", str(base / "refcoco.parquet"), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(out["refcoco"]), "-w", "1"])
    assert r.exit_code == 0, r.output
    return out


def _answers(rows, grounding: bool) -> dict[str, str]:
    from linebench.pointing import answer_text

    out = {}
    for r in rows:
        right = answer_text(json.loads(r["geometry"])) if grounding else r["answer"]
        wrong = "[1, 1, 2, 2]" if grounding else str(int(r["answer"]) + 1)
        out[r["id"]] = [right, f"The answer is {right}.", wrong, "no idea", f"**{right}**"][zlib.crc32(r["id"].encode()) % 5]
    return out


@pytest.mark.parametrize("key, split", [("intersection", "test"), ("refcoco", "train")])
def test_the_tsv_reads_back_and_its_scoring_equals_linebench_score(folders, key, split, tmp_path):
    from datasets import Image, load_dataset

    out = tmp_path / "vlm"
    r = runner.invoke(app, ["export", str(folders[key]), "--to", "vlmevalkit", "--out", str(out)])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "export.json").read_text())
    assert record["split"] == split and record["rows"] == (16 if key == "intersection" else 10)
    name = record["name"]
    config = json.loads((out / "data-config.json").read_text())
    assert config == {name: {"class": "LineBench", "dataset": name, "tsv": str((out / f"{name}.tsv").resolve())}}
    assert "from linebench.harnesses.vlmeval_dataset import LineBench" in r.output and name in (out / "README.md").read_text()

    ds = load_dataset(str(folders[key]), split=split).cast_column("image", Image(decode=False))
    plain = pd.read_csv(out / f"{name}.tsv", sep="\t")  # what VLMEvalKit's own `load` does
    typed = read_tsv(out / f"{name}.tsv")  # what linebench's class does
    assert list(plain["index"]) == list(range(len(ds))) and list(typed["id"]) == ds["id"]
    for row, b64 in zip(ds, plain["image"]):
        assert base64.b64decode(b64) == row["image"]["bytes"]  # the stored image file, not re-encoded
    assert list(typed["question"]) == list(plain["question"])
    if key == "intersection":
        assert list(typed["question"]) == ds["question"] and list(typed["answer"]) == ds["answer"]
        assert list(typed["category"]) == ds["difficulty"] and set(ds["difficulty"]) == {"easy", "medium", "hard"}
    else:  # the preset's prompt; the annotations as the target
        assert all("target" in typed and json.loads(t)["annotations"]["boxes"] for t in typed["target"])

    given = _answers(load_dataset(str(folders[key]), split=split), grounding=key == "refcoco")
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in given.items()))
    report = score(folders[key], preds)
    # VLMEvalKit's result file gives predictions back through pandas: "7" may come back as 7
    by_index = {int(i): (int(p) if p.isdigit() else p) for i, p in zip(typed["index"], (given[x] for x in typed["id"]))}
    table = score_rows(typed.to_dict("records"), by_index)
    assert table[0]["level"] == "overall" and table[0]["n"] == len(ds)
    assert table[0]["accuracy"] == pytest.approx(report.overall.accuracy, abs=1e-12) and 0 < table[0]["accuracy"] < 1
    assert table[0]["unparseable"] == report.unparseable
    levels = {g.value: g.accuracy for g in report.groups if g.by == "difficulty"} or {"all": report.overall.accuracy}
    assert {t["level"]: t["accuracy"] for t in table[1:]} == pytest.approx(levels, abs=1e-12)
    assert [t["level"] for t in table[1:]] == list(levels)


def test_a_row_without_a_prediction_or_a_nan_one_is_wrong(folders, tmp_path):
    out = tmp_path / "vlm"
    assert runner.invoke(app, ["export", str(folders["intersection"]), "--to", "vlmevalkit", "--out", str(out), "--name", "lb"]).exit_code == 0
    rows = read_tsv(out / "lb.tsv").to_dict("records")
    table = score_rows(rows, {0: rows[0]["answer"], 1: float("nan")})
    assert table[0] == {"level": "overall", "n": 16, "correct": 1, "unparseable": 15, "accuracy": 1 / 16}


@pytest.mark.parametrize("fmt", ["xlsx", "tsv", "json", "jsonl", "pkl"])
def test_result_files_in_every_format_are_read_as_written(folders, tmp_path, fmt):
    """VLMEvalKit writes the TSV's rows (image dropped) plus `prediction` in its PRED_FORMAT (xlsx by
    default); "None", "NA", "null", "" and "7" come back as written (vlmeval's own `load` would turn
    the first four into NaN), so the class scores what `linebench score` scores, "None" = 0 included."""
    from linebench.harnesses.vlmevalkit import read_predictions

    out = tmp_path / "vlm"
    assert runner.invoke(app, ["export", str(folders["intersection"]), "--to", "vlmevalkit", "--out", str(out), "--name", "lb"]).exit_code == 0
    data = read_tsv(out / "lb.tsv").drop(columns=["image"])
    texts = ["None", "NA", "null", "", "7", "The answer is 2.", "N/A", "nan"]
    data["prediction"] = [texts[i % len(texts)] if i % 3 else a for i, a in enumerate(data["answer"])]
    path = tmp_path / f"result.{fmt}"
    if fmt == "xlsx":
        data.to_excel(path, index=False)
    elif fmt == "tsv":
        data.to_csv(path, sep="\t", index=False)
    elif fmt == "json":
        path.write_text(json.dumps(data.to_dict("records")))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data.to_dict("records")))
    else:
        data.to_pickle(path)
    got = read_predictions(path)
    assert got == {int(i): p for i, p in zip(data["index"], data["prediction"])}
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in zip(data["id"], data["prediction"])))
    report = score(folders["intersection"], preds)
    table = score_rows(read_tsv(out / "lb.tsv").to_dict("records"), got)
    assert (table[0]["correct"], table[0]["unparseable"]) == (report.correct, report.unparseable)


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(folders, tmp_path):
    def run(*args):
        r = runner.invoke(app, ["export", *map(str, args)])
        return r.exit_code, r.output.strip()

    src = folders["intersection"]
    code, text = run(src, "--to", "vlmeval", "--out", tmp_path / "a")
    assert code == 2 and "--to must be one of lmms-eval, vlmevalkit" in text and len(text.splitlines()) == 1
    code, text = run(src, "--to", "lmms-eval", "--out", tmp_path / "a", "--split", "train")
    assert code == 2 and "has no split 'train'" in text
    code, text = run(src, "--to", "lmms-eval", "--out", tmp_path / "a", "--name", "1bad-name")
    assert code == 2 and "--name" in text
    code, text = run(tmp_path / "nowhere", "--to", "lmms-eval", "--out", tmp_path / "a")
    assert code == 2 and "no such folder" in text
    code, text = run(src, "--to", "lmms-eval", "--out", tmp_path / "no" / "such" / "place")
    assert code == 2 and "does not exist" in text
    assert not (tmp_path / "a").exists() and sorted(p.name for p in tmp_path.iterdir()) == []

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, text = run(src, "--to", "lmms-eval", "--out", mine)
    assert code == 2 and "not empty" in text
    code, text = run(src, "--to", "lmms-eval", "--out", mine, "--overwrite")
    assert code == 2 and "not written by `linebench export`" in text and (mine / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_an_earlier_export_whole(folders, tmp_path):
    out = tmp_path / "x"
    assert runner.invoke(app, ["export", str(folders["intersection"]), "--to", "vlmevalkit", "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["export", str(folders["intersection"]), "--to", "lmms-eval", "--out", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["export", str(folders["intersection"]), "--to", "lmms-eval", "--out", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "export.json", "linebench_intersection_test.yaml", "utils.py"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no staging or old folder left
    utils = (out / "utils.py").read_text()
    assert f"docs_for({str(Path(folders['intersection']).resolve())!r})" in utils


def test_an_interrupted_export_leaves_nothing(folders, tmp_path, monkeypatch):
    from linebench.harnesses import export as mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "write_tsv", boom)
    with pytest.raises(KeyboardInterrupt):
        mod.export(str(folders["intersection"]), "vlmevalkit", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_hub_id_in_the_cache_exports_without_a_download(folders, tmp_path, monkeypatch):
    """DATA may be a Hub id the user already has (as `linebench eval` takes it): the cached
    snapshot is exported; an id not in the cache is one line, and nothing is downloaded."""
    import shutil

    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    snapshot = cache / "datasets--linebench--intersection" / "snapshots" / ("a" * 40)
    shutil.copytree(folders["intersection"], snapshot)
    (cache / "datasets--linebench--intersection" / "refs").mkdir()
    (cache / "datasets--linebench--intersection" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "lmms"
    r = runner.invoke(app, ["export", "linebench/intersection", "--to", "lmms-eval", "--out", str(out)])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "export.json").read_text())
    assert record["data"] == str(snapshot.resolve()) and record["name"] == "linebench_intersection_test" and record["rows"] == 16
    assert json.dumps(str(snapshot.resolve())) in (out / f"{record['name']}.yaml").read_text()
    r = runner.invoke(app, ["export", "linebench/nothing-here", "--to", "lmms-eval", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not in your Hugging Face cache" in r.output and not (tmp_path / "x").exists()


def test_overwrite_never_deletes_the_data_or_what_the_user_put_there(folders, tmp_path):
    """--out overlapping DATA is refused, and --overwrite replaces a folder only when it holds
    nothing but what its export.json lists (a results/ folder put there by the user stays)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folders["intersection"], data)
    for out in (data, data / "exports", tmp_path):
        r = runner.invoke(app, ["export", str(data), "--to", "lmms-eval", "--out", str(out), "--overwrite"])
        assert r.exit_code == 2 and "overlaps the data folder" in r.output, (out, r.output)
    out = tmp_path / "x"
    assert runner.invoke(app, ["export", str(data), "--to", "lmms-eval", "--out", str(out)]).exit_code == 0
    (out / "results").mkdir()
    (out / "results" / "r.json").write_text("{}")
    r = runner.invoke(app, ["export", str(data), "--to", "vlmevalkit", "--out", str(out), "--overwrite"])
    assert r.exit_code == 2 and "holds what no export wrote (results)" in r.output
    assert (out / "results" / "r.json").is_file() and (data / "manifest.json").is_file()


def test_an_export_finished_meanwhile_into_the_same_out_is_not_replaced(folders, tmp_path, monkeypatch):
    from linebench.harnesses import export as mod

    out = tmp_path / "x"
    real = mod.write_tsv

    def other_run_finishes_first(*a, **k):
        out.mkdir()
        (out / "theirs.tsv").write_text("kept")
        return real(*a, **k)

    monkeypatch.setattr(mod, "write_tsv", other_run_finishes_first)
    r = runner.invoke(app, ["export", str(folders["intersection"]), "--to", "vlmevalkit", "--out", str(out)])
    assert r.exit_code == 2 and "written meanwhile by another run" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"] and (out / "theirs.tsv").read_text() == "kept"


def test_odd_arguments_are_one_line_or_work(folders, tmp_path, monkeypatch):
    import shutil

    src = folders["intersection"]
    r = runner.invoke(app, ["export", str(src), "--to", "lmms-eval", "--out", str(tmp_path / "a"), "--name", ""])
    assert r.exit_code == 2 and "--name is empty" in r.output
    globbed = tmp_path / "d[1]"
    shutil.copytree(src, globbed)
    r = runner.invoke(app, ["export", str(globbed), "--to", "lmms-eval", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "as a pattern" in r.output
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    for shard in (broken / "data").glob("*.parquet"):
        shard.write_bytes(b"not parquet")
    r = runner.invoke(app, ["export", str(broken), "--to", "vlmevalkit", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "linebench verify" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", str(here), ".."):  # the folder the user is in, or one holding it: it would be replaced under them
        r = runner.invoke(app, ["export", str(src), "--to", "lmms-eval", "--out", out])
        assert r.exit_code == 2 and "the folder you are in" in r.output, (out, r.output)
    r = runner.invoke(app, ["export", str(src), "--to", "lmms-eval", "--out", "sub"])  # a relative path works
    assert r.exit_code == 0, r.output
    assert (here / "sub" / "export.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["broken", "d[1]", "here"]


def test_the_tsv_keeps_tabs_quotes_and_line_breaks_in_a_question(tmp_path):
    from linebench.harnesses.vlmevalkit import tsv_lines

    questions = ["tab\there", 'a "quoted" word', "two\nlines", "cr\ronly", "crlf\r\nend", "NA", "=1+1"]
    rows = [{"image": {"bytes": b"\x89PNG" + bytes([i]) * 80}, "id": f"r{i}", "question": q, "answer": str(i), "task": "tracing", "difficulty": "easy"}
            for i, q in enumerate(questions)]  # fmt: skip
    path = tmp_path / "t.tsv"
    path.write_text("".join(tsv_lines(rows, grounding=False)), encoding="utf-8")
    back = read_tsv(path)
    assert list(back["question"]) == questions and list(back["index"]) == list(range(len(rows)))
    plain = pd.read_csv(path, sep="\t")
    assert list(plain["index"]) == list(range(len(rows))) and base64.b64decode(plain["image"][3]) == rows[3]["image"]["bytes"]
