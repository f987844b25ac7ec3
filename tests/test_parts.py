"""Generation past one machine (issue 18): `generate --part K/N` run as separate processes, then
`linebench merge` — byte-identical to a single run, `verify --spec` passes, bad sets of parts are
one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linebench.cli import app
from linebench.dataset import part_shards

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "linebench")
ARGS = ["generate", "--task", "grid_patch", "--n", "50", "--shard-size", "10", "--workers", "1"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    base = tmp_path_factory.mktemp("parts")
    procs = [subprocess.Popen([CLI, *ARGS, "--part", f"{k}/3", "--out", str(base / f"p{k}")], stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in procs:  # three processes at once, as three machines would run them
        assert p.wait() == 0, p.stderr.read()
    single = base / "single"
    assert subprocess.run([CLI, *ARGS, "--out", str(single)], capture_output=True).returncode == 0
    return base


def test_parts_are_round_robin_over_the_folders_shards():
    specs = [{"split": "train", "n": 50}]
    got = [part_shards(specs, 10, (k, 3)) for k in range(3)]
    assert got[0] == ["data/train-00000-of-00005.parquet", "data/train-00003-of-00005.parquet"]
    assert sorted(sum(got, [])) == sorted(f"data/train-{i:05d}-of-00005.parquet" for i in range(5))


def test_merged_parts_equal_a_single_run_byte_for_byte(parts, tmp_path):
    out = tmp_path / "merged"
    r = runner.invoke(app, ["merge", *(str(parts / f"p{k}") for k in (2, 0, 1)), "--out", str(out)])  # any order
    assert r.exit_code == 0, r.output
    assert folder_bytes(out) == folder_bytes(parts / "single")
    assert runner.invoke(app, ["verify", str(out), "--all"]).exit_code == 0
    assert not (parts / "p0" / "manifest.json").exists()  # a part is not a dataset
    for k in range(3):  # each part made its own shards and no other
        mine = part_shards([{"split": "train", "n": 50}], 10, (k, 3))
        assert sorted(f"data/{p.name}" for p in (parts / f"p{k}" / "data").iterdir()) == sorted(mine)


def test_a_release_cut_in_parts_passes_verify_spec(tmp_path):
    from test_release import _small_spec

    spec = _small_spec(tmp_path, "grid_patch")
    single = tmp_path / "single"
    assert runner.invoke(app, ["generate", "--spec", str(spec), "--out", str(single), "--workers", "1"]).exit_code == 0
    r = runner.invoke(app, ["verify", str(single), "--spec", str(spec), "--write-checksums"])
    assert r.exit_code == 0, r.output
    for k in range(2):
        r = runner.invoke(app, ["generate", "--spec", str(spec), "--part", f"{k}/2", "--out", str(tmp_path / f"p{k}"), "--workers", "1"])
        assert r.exit_code == 0, r.output
    out = tmp_path / "merged"
    assert runner.invoke(app, ["merge", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 0 and "content matches" in r.output, r.output
    assert (out / "manifest.json").read_bytes() == (single / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    "which, fragment",
    [
        (["p0", "p2"], "part 1/3 is missing"),
        (["p0", "p1", "p1", "p2"], "part 1/3 is given twice"),
        (["p0", "other", "p2"], "parts of different runs (train seed 0 vs 5)"),
        (["p0", "p1", "single"], "not a finished part"),
        ([], "Missing argument"),
    ],
)
def test_bad_sets_of_parts_are_one_line_and_write_nothing(parts, tmp_path, which, fragment):
    if "other" in which and not (parts / "other").exists():
        assert runner.invoke(app, [*ARGS, "--seed", "5", "--part", "1/3", "--out", str(parts / "other")]).exit_code == 0
    out = tmp_path / "m"
    r = runner.invoke(app, ["merge", *(str(parts / w) for w in which), "--out", str(out)])
    assert r.exit_code == 2 and fragment in r.output, r.output
    assert not out.exists()


def test_a_damaged_or_unfinished_part_is_refused(parts, tmp_path):
    import shutil

    bad = tmp_path / "p1"
    shutil.copytree(parts / "p1", bad)
    shard = sorted((bad / "data").glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    r = runner.invoke(app, ["merge", str(parts / "p0"), str(bad), str(parts / "p2"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "damaged" in r.output and "--resume" in r.output
    (bad / ".linebench-part.json").unlink()
    r = runner.invoke(app, ["merge", str(parts / "p0"), str(bad), str(parts / "p2"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "unfinished part" in r.output and not (tmp_path / "m").exists()


def test_part_bounds():
    for text, fragment in (("3/3", "0 <= K < N"), ("a/b", "K/N"), ("1", "K/N"), ("0/9", "at most 5 parts")):
        r = runner.invoke(app, [*ARGS, "--part", text, "--out", "/tmp/linebench-never"])
        assert r.exit_code == 2 and fragment in r.output, (text, r.output)
