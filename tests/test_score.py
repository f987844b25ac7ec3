"""Scoring: exact counts and accuracies for predictions built to a plan, reports, CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from linebench.cli import app
from linebench.errors import UsageError
from linebench.score import bootstrap_ci, default_outputs, score

CLI = str(Path(sys.executable).parent / "linebench")
runner = CliRunner()
UNKNOWN = "tracing-train-s7-9999999"


def dataset_rows(folder: Path) -> list[dict]:
    tables = [pq.read_table(p, columns=["id", "answer", "difficulty", "curves"]) for p in sorted((folder / "data").glob("*.parquet"))]
    return [r for t in tables for r in t.to_pylist()]


def wrong(answer: str) -> str:
    return str(int(answer) % 8 + 1)


@pytest.fixture(scope="module")
def planned(small_dataset, tmp_path_factory):
    """48 rows: 20 right in many phrasings, 10 wrong, 5 unparseable, 12 right, 1 missing; plus an
    unknown id, a malformed line, a blank line and a duplicated id whose last line is right."""
    rows = dataset_rows(small_dataset)
    assert len(rows) == 48
    phrasings = ["{a}", "The answer is {a}.", "**{a}**", "\\boxed{{{a}}}", "Answer: {a}", "{a}. The line crosses two others."]
    outcome, lines = {}, []
    lines.append(json.dumps({"id": rows[0]["id"], "prediction": wrong(rows[0]["answer"])}))  # overridden below
    for i, r in enumerate(rows[:20]):
        lines.append(json.dumps({"id": r["id"], "prediction": phrasings[i % len(phrasings)].format(a=r["answer"])}))
        outcome[r["id"]] = "right"
    for r in rows[20:30]:
        lines.append(json.dumps({"id": r["id"], "prediction": wrong(r["answer"])}))
        outcome[r["id"]] = "wrong"
    for r, p in zip(rows[30:35], ["no idea", "3 or 4", None, "", "-2"]):
        lines.append(json.dumps({"id": r["id"], "prediction": p}))
        outcome[r["id"]] = "unparseable"
    lines.append("")
    lines.append("{this is not json")
    for r in rows[35:47]:
        lines.append(json.dumps({"id": r["id"], "prediction": int(r["answer"])}))  # a bare int is fine
        outcome[r["id"]] = "right"
    lines.append(json.dumps({"id": UNKNOWN, "prediction": "3"}))
    lines.append(json.dumps({"id": rows[0]["id"], "prediction": f"It ends at {rows[0]['answer']}."}))  # last wins
    path = tmp_path_factory.mktemp("preds") / "preds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return rows, outcome, path


def test_counts_and_accuracy_are_exact(small_dataset, planned):
    rows, outcome, path = planned
    rep = score(small_dataset, path, bootstrap=500, seed=0)
    assert rep.tasks == ["tracing"] and rep.rows == 48
    assert rep.predicted == rep.scored == 47
    assert rep.correct == 32 and rep.unparseable == 5
    assert rep.overall.accuracy == pytest.approx(32 / 47)
    assert (rep.overall.n, rep.overall.correct, rep.overall.unparseable) == (47, 32, 5)
    assert rep.missing == 1 and rep.missing_ids == [rows[47]["id"]]
    assert rep.unknown == 1 and rep.unknown_ids == [UNKNOWN]
    assert rep.duplicates == 1 and rep.duplicate_ids == [rows[0]["id"]]
    assert rep.malformed == 1 and rep.malformed_lines[0].startswith("line 38: not JSON")

    # per level and per knob value, against the plan
    levels = {r["difficulty"] for r in rows if r["id"] in outcome}
    assert [g.value for g in rep.groups if g.by == "difficulty"] == [lv for lv in ("easy", "medium", "hard") if lv in levels]
    for by in ("difficulty", "curves"):
        groups = {g.value: g for g in rep.groups if g.by == by}
        expect: dict[str, list[int]] = {}
        for r in rows:
            if r["id"] in outcome:
                e = expect.setdefault(str(r[by]), [0, 0, 0])
                e[0] += 1
                e[1] += outcome[r["id"]] == "right"
                e[2] += outcome[r["id"]] == "unparseable"
        assert {k: [g.n, g.correct, g.unparseable] for k, g in groups.items()} == expect


def test_every_breakdown_covers_every_scored_row_and_cis_are_sane(small_dataset, planned):
    _, _, path = planned
    rep = score(small_dataset, path)
    bys = {g.by for g in rep.groups}
    assert {"overall", "split", "difficulty", "curves", "bends", "crossings", "same_colour", "wiggle", "query_length_px"} <= bys
    for by in bys:
        assert sum(g.n for g in rep.groups if g.by == by) == rep.scored, by
    assert len([g for g in rep.groups if g.by == "wiggle"]) <= 4  # floats in quantile bins
    for g in rep.groups:
        assert g.n > 0
        assert 0.0 <= g.ci_low <= g.accuracy <= g.ci_high <= 1.0, g


def test_deterministic_and_missing_as_wrong(small_dataset, planned):
    _, _, path = planned
    a = score(small_dataset, path, seed=3).to_json()
    assert a == score(small_dataset, path, seed=3).to_json()
    assert a != score(small_dataset, path, seed=4).to_json()  # the intervals move with the seed
    rep = score(small_dataset, path, missing_as_wrong=True)
    assert (rep.scored, rep.correct, rep.missing) == (48, 32, 1)
    assert rep.overall.accuracy == pytest.approx(32 / 48)


def test_bootstrap_matches_resampling():
    outcomes = np.array([1] * 30 + [0] * 20)
    rng = np.random.default_rng(0)
    means = outcomes[rng.integers(0, 50, size=(4000, 50))].mean(axis=1)
    lo, hi = bootstrap_ci(30, 50, 4000, seed=0)
    assert abs(lo - np.quantile(means, 0.025)) <= 0.03 and abs(hi - np.quantile(means, 0.975)) <= 0.03
    assert bootstrap_ci(0, 10, 100, 0) == (0.0, 0.0) and bootstrap_ci(10, 10, 100, 0) == (1.0, 1.0)


def test_bad_inputs_raise_usage_errors(small_dataset, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        score(small_dataset, tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="no predictions"):
        score(small_dataset, empty)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "x", "prediction": "1"}\n')
    with pytest.raises(UsageError, match="not a linebench dataset"):
        score(tmp_path, preds)
    with pytest.raises(UsageError, match="--bootstrap"):
        score(small_dataset, preds, bootstrap=0)


def test_cli_writes_json_and_markdown(small_dataset, planned, tmp_path):
    _, _, path = planned
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    result = runner.invoke(app, ["score", str(small_dataset), "--predictions", str(path), "--json", str(js), "--markdown", str(md)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "accuracy 68.1%" in result.output and "5 unparseable" in result.output
    data = json.loads(js.read_text())
    assert data["correct"] == 32 and data["scored"] == 47 and data["missing"] == 1 and data["unknown"] == 1
    assert data["groups"][0] == {k: data["groups"][0][k] for k in ("by", "value", "n", "correct", "unparseable", "accuracy", "ci_low", "ci_high")}
    text = md.read_text()
    assert "| all | 47 | 32 | 68.1% |" in text and "### difficulty" in text and UNKNOWN in text
    assert not list(tmp_path.glob(".*.tmp"))
    # defaults: beside the predictions file
    assert default_outputs(path) == (path.with_name("preds.score.json"), path.with_name("preds.score.md"))


def test_a_byte_order_mark_is_skipped_and_what_eval_stores_is_judged_as_the_whole_reply(small_dataset, tmp_path):
    from linebench.answers import MAX_TEXT, is_correct
    from linebench.score import MAX_LINE, parse_line, storable_prediction

    rows = dataset_rows(small_dataset)
    bom = tmp_path / "bom.jsonl"  # what an editor that marks UTF-8 saves
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps({"id": r["id"], "prediction": r["answer"]}) for r in rows[:2]).encode() + b"\n")
    rep = score(small_dataset, bom)
    assert rep.malformed == 0 and rep.scored == rep.correct == 2
    answer = rows[0]["answer"]
    for text in [f"{answer}. " + "and so on " * 200_000, "x " * 9_000 + f"so it ends at {answer}", f"{answer} \ud800", "no idea " * 3_000]:
        kept = storable_prediction(text)
        line = (json.dumps({"id": rows[0]["id"], "prediction": kept}, ensure_ascii=False) + "\n").encode("utf-8")  # no lone surrogate left
        assert len(kept) <= MAX_TEXT + 2 and len(line) < MAX_LINE and isinstance(parse_line(line), dict)
        assert is_correct("number", kept, answer) == is_correct("number", text.replace("\ud800", "\ufffd"), answer)
        assert storable_prediction(kept) == kept  # stored once more: the same text


BAD = [
    (lambda ds, p, t: [str(ds), "--predictions", str(t / "missing.jsonl")], "does not exist"),
    (lambda ds, p, t: [str(t), "--predictions", str(p)], "not a linebench dataset"),
    (lambda ds, p, t: [str(t / "nowhere"), "--predictions", str(p)], "is not a folder"),
    (lambda ds, p, t: [str(ds), "--predictions", str(p), "--bootstrap", "0"], "--bootstrap"),
    (lambda ds, p, t: [str(ds), "--predictions", str(p), "--json", str(t / "no" / "r.json")], "cannot write"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_cli_errors_are_one_line_exit_2_and_write_nothing(small_dataset, tmp_path, args, message):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "x", "prediction": "1"}\n')
    result = runner.invoke(app, ["score", *args(small_dataset, preds, tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]


def test_cli_error_has_no_traceback(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "x", "prediction": "1"}\n')
    result = subprocess.run([CLI, "score", str(tmp_path), "--predictions", str(preds)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path} is not a linebench dataset folder (it has no manifest.json)"


def test_cell_answers_of_a_grid_patch_folder(tmp_path):
    """End to end for the `cell` answer kind: phrasings of the right cell count, a wrong cell does not."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec

    out = tmp_path / "gp"
    generate(RunSpec("grid_patch", n=8, seed=2, maps=()), out, workers=1)
    rows = [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p, columns=["id", "answer"]).to_pylist()]
    forms = ["{r},{c}", "Row {r}, column {c}", "The red star is in cell ({r}, {c}).", "r{r}c{c}", "[{r}, {c}]"]
    preds = out.parent / "preds.jsonl"
    lines = []
    for i, row in enumerate(rows):
        r, c = (int(v) for v in row["answer"].strip("()").split(", "))
        text = forms[i % len(forms)].format(r=r, c=c) if i < 6 else f"({r + 1}, {c})"
        lines.append(json.dumps({"id": row["id"], "prediction": text}))
    preds.write_text("\n".join(lines) + "\n")
    report = score(out, preds, bootstrap=200)
    assert (report.overall.n, report.overall.correct, report.overall.unparseable) == (8, 6, 0)


def test_no_matching_id_is_an_error(small_dataset, tmp_path):
    preds = tmp_path / "other.jsonl"
    preds.write_text(json.dumps({"id": "intersection-test-s1-0000000", "prediction": "3"}) + "\n")
    with pytest.raises(UsageError, match="wrong folder or file"):
        score(small_dataset, preds, bootstrap=10)
