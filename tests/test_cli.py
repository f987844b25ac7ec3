"""The CLI: help, task listing, and one clear line (exit 2, nothing written) for bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linebench.cli import app

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "linebench")


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("generate", "tasks", "verify"):
        assert cmd in result.output


def test_generate_help_mentions_every_option():
    result = runner.invoke(app, ["generate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for opt in ("--task", "--n", "--out", "--split", "--seed", "--difficulty", "--knob", "--canvas", "--maps", "--workers", "--resume", "--overwrite"):
        assert opt in result.output


def test_tasks_lists_tracing_knobs_and_levels():
    result = runner.invoke(app, ["tasks"], terminal_width=250)
    assert result.exit_code == 0
    for word in ("tracing", "curves", "crossings", "same_colour", "min_crossing_angle_deg", "easy", "hard"):
        assert word in result.output


def test_generate_small_and_verify(tmp_path):
    out = tmp_path / "d"
    result = runner.invoke(app, ["generate", "--n", "12", "--out", str(out), "--workers", "1", "--difficulty", "easy", "--knob", "curves=4", "--knob", "crossings=3..4", "--canvas", "512x384"])
    assert result.exit_code == 0, result.output
    assert "wrote 12 rows" in result.output
    result = runner.invoke(app, ["verify", str(out), "--all"])
    assert result.exit_code == 0 and "OK" in result.output

    import datasets

    ds = datasets.load_dataset(str(out), split="train")
    assert set(ds["curves"]) == {4} and set(ds["difficulty"]) == {"easy"}
    assert ds[0]["image"].size == (512, 384)


BAD = [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--n", "0"], "--n must be positive"),
    (["--n", "-5"], "--n must be positive"),
    (["--canvas", "448x100", "--knob", "curves=6"], "too small"),
    (["--canvas", "abc"], "--canvas takes"),
    (["--knob", "curves=3", "--knob", "crossings=40..50", "--knob", "bends=0"], "cannot be drawn"),
    (["--knob", "wings=3"], "no knob 'wings'"),
    (["--knob", "curves=many"], "takes a int"),
    (["--knob", "curves=9"], "within 2..8"),
    (["--knob", "curves"], "NAME=VALUE"),
    (["--difficulty", "insane"], "no difficulty 'insane'"),
    (["--split", "dev"], "--split must be one of"),
    (["--maps", "grid24,llava-99"], "unknown map profile"),
    (["--map-target", "0.9"], "sum to 1"),
    (["--workers", "0"], "--workers must be positive"),
    (["--shard-size", "0"], "--shard-size must be positive"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--knob", "border_px=5..10"], "single value"),
    (["--map-target", "nan"], "sum to 1"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run([CLI, "generate", "--out", str(out), *args], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_existing_and_unwritable_outputs(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file.txt").write_text("x")
    cases = [
        (busy, "exists and is not empty"),
        (tmp_path / "busy" / "file.txt" / "sub", "is not a folder"),
        (Path("/proc/linebench-cannot-write-here"), "not writable"),
    ]
    for out, message in cases:
        result = subprocess.run([CLI, "generate", "--n", "3", "--out", str(out)], capture_output=True, text=True)
        assert result.returncode == 2, (out, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in busy.iterdir()) == ["file.txt"]


def test_verify_errors(tmp_path):
    result = subprocess.run([CLI, "verify", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "no manifest.json" in result.stderr
