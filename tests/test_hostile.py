"""Hostile input against the data commands (issue 16): each case is what a careless user, a
damaged download or a full disk does, and what must happen — one line, the right exit code,
nothing half-written left behind.

`CASES` is table-driven: add a row (argv, expected exit code, a fragment of the message, paths
that must not exist afterwards); `{ds}` is a fresh copy of a small generated folder, `{tmp}` the
test's temporary folder, and `setup` may damage the copy first. The cases that need more than a
table (signals, disk full, concurrency, timing) follow it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from linebench.cli import app
from linebench.errors import UsageError
from linebench.folder import sha256_file

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "linebench")


def _manifest(ds: Path) -> dict:
    return json.loads((ds / "manifest.json").read_text())


def _write_manifest(ds: Path, m: dict) -> None:
    (ds / "manifest.json").write_text(json.dumps(m))


def _edit_manifest(**changes):
    def setup(ds: Path) -> None:
        m = _manifest(ds)
        for k, v in changes.items():
            m[k] = v(m) if callable(v) else v
        _write_manifest(ds, m)

    return setup


def _raw_manifest(text: str):
    return lambda ds: (ds / "manifest.json").write_text(text)


def _manifest_folder(ds: Path) -> None:
    (ds / "manifest.json").unlink()
    (ds / "manifest.json").mkdir()


def _preds(ds: Path, lines: list[str]) -> None:
    (ds.parent / "p.jsonl").write_text("\n".join(lines) + "\n")


def _spec(text: str):
    return lambda ds: (ds.parent / "spec.toml").write_text(text)


# (id, argv, setup, exit code, message fragment, paths that must not exist afterwards)
CASES = [
    # --- 5: a damaged manifest or run file is one line in every command that reads it
    *[
        (f"{cmd}-{name}", argv, setup, 2, frag, [])
        for name, setup, frag in [
            ("truncated", _raw_manifest('{"task": "tracing", "shar'), "not valid JSON"),
            ("list", _raw_manifest("[]"), "should be a JSON object"),
            ("missing-key", _edit_manifest(shards=None), "should be a list"),
            ("wrong-type", _edit_manifest(num_rows="48"), "num_rows should be an integer"),
            ("folder", _manifest_folder, "is not a file"),
            ("not-utf8", lambda ds: (ds / "manifest.json").write_bytes(b"\xff\xfe{}"), "not UTF-8"),
        ]
        for cmd, argv in [
            ("verify", ["verify", "{ds}"]),
            ("show", ["show", "{ds}", "-o", "{tmp}/s.png"]),
            ("score", ["score", "{ds}", "-p", "{tmp}/p.jsonl"]),
            ("push", ["push", "{ds}", "--repo-id", "me/x", "--dry-run"]),
        ]
    ],
    ("resume-damaged-run-file", ["generate", "--n", "48", "--shard-size", "16", "--seed", "7", "--out", "{ds}", "--resume"],
     lambda ds: (ds / ".linebench-run.json").write_text('{"specs": ['), 2, ".linebench-run.json is damaged", []),
    # --- 9: no path may leave the folder
    ("verify-dotdot-shard", ["verify", "{ds}"],
     _edit_manifest(shards=lambda m: [{**m["shards"][0], "path": "data/../../../etc/passwd"}] + m["shards"][1:]), 2, "inside the folder", []),
    ("push-absolute-shard", ["push", "{ds}", "--repo-id", "me/x", "--dry-run"],
     _edit_manifest(shards=lambda m: [{**m["shards"][0], "path": "/etc/passwd"}] + m["shards"][1:]), 2, "inside the folder", []),
    # --- 11: unbounded input gets a bound, in the message
    ("n-huge", ["generate", "--n", "100000000000000000000", "--out", "{tmp}/o"], None, 2, "at most 100,000,000", ["{tmp}/o"]),
    ("n-1e10", ["generate", "--n", "10000000000", "--out", "{tmp}/o"], None, 2, "at most", ["{tmp}/o"]),
    ("qwen-pixels", ["generate", "--n", "3", "--maps", "qwen2.5-vl:min_pixels=999999999:max_pixels=999999999", "--out", "{tmp}/o"],
     None, 2, "at most 1,048,576", ["{tmp}/o"]),
    ("qwen-pixels-1e11", ["grids", "-p", "qwen2.5-vl:min_pixels=100000000000"], None, 2, "within", []),
    ("internvl-tiles", ["grids", "-p", "internvl:max_tiles=100000"], None, 2, "1..256", []),
    ("molmo-crops", ["grids", "-p", "molmo2:max_crops=100000"], None, 2, "1..256", []),
    ("spec-canvas", ["generate", "--spec", "{tmp}/spec.toml", "--out", "{tmp}/o"],
     _spec('task = "tracing"\ncanvas = [100000, 100000]\n[splits.train]\nn = 4\ndifficulty = "easy"\n'), 2, "32..8192", ["{tmp}/o"]),
    ("bootstrap-huge", ["score", "{ds}", "-p", "{tmp}/p.jsonl", "--bootstrap", "100000000000"],
     lambda ds: _preds(ds, ['{"id": "x", "prediction": "1"}']), 2, "1..1,000,000", ["{tmp}/p.score.json"]),
    # --- 16: silent choices made loud
    ("knob-twice", ["generate", "--n", "3", "--knob", "curves=2", "--knob", "curves=3", "--out", "{tmp}/o"], None, 2, "given twice", ["{tmp}/o"]),
    ("verify-sample-0", ["verify", "{ds}", "--sample", "0"], None, 2, "at least 1", []),
    ("grids-json-markdown", ["grids", "--json", "--markdown"], None, 2, "exclude each other", []),
    ("out-empty", ["generate", "--n", "3", "--out", ""], None, 2, "--out is empty", []),
    ("show-out-empty", ["show", "{ds}", "--out", ""], None, 2, "--out is empty", []),
    # --- 13: odd --out paths
    ("show-out-loop", ["show", "{ds}", "-o", "{tmp}/loop.png"],
     lambda ds: os.symlink(ds.parent / "loop.png", ds.parent / "loop.png"), 2, "symlink loop", []),
    ("show-out-dangling", ["show", "{ds}", "-o", "{tmp}/dangling.png"],
     lambda ds: os.symlink(ds.parent / "nowhere" / "x.png", ds.parent / "dangling.png"), 2, "folder does not exist", ["{tmp}/nowhere"]),
    ("show-out-no-folder", ["show", "{ds}", "-o", "{tmp}/missing/x.png"], None, 2, "does not exist", ["{tmp}/missing"]),
    ("show-out-proc", ["show", "{ds}", "-o", "/proc/linebench-x.png"], None, 2, "cannot write", ["/proc/linebench-x.png"]),
    ("generate-out-not-utf8", ["generate", "--n", "3", "--out", "{tmp}/bad\udcff"], None, 2, "not valid UTF-8", ["{tmp}/bad\udcff"]),
    ("score-json-loop", ["score", "{ds}", "-p", "{tmp}/p.jsonl", "--json", "{tmp}/l.json"],
     lambda ds: (_preds(ds, ['{"id": "x", "prediction": "1"}']), os.symlink(ds.parent / "l.json", ds.parent / "l.json")), 2, "symlink loop",
     ["{tmp}/p.score.md"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_cases(case, small_dataset, tmp_path):
    _, argv, setup, code, fragment, absent = case
    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    (tmp_path / "p.jsonl").write_text('{"id": "tracing-train-s7-0000000", "prediction": "1"}\n')
    if setup is not None:
        setup(ds)
    args = [a.replace("{ds}", str(ds)).replace("{tmp}", str(tmp_path)) for a in argv]
    r = runner.invoke(app, args)
    assert r.exit_code == code, (args, r.output)
    assert fragment in r.output, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == 1, r.output
    for p in absent:
        assert not os.path.lexists(p.replace("{tmp}", str(tmp_path))), p
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"


# --------------------------------------------------------------------------- 1: score's outputs


def _score_setup(small_dataset, tmp_path) -> Path:
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "tracing-train-s7-0000000", "prediction": "1"}\n')
    return preds


def test_score_writes_through_devices_and_symlinks_and_honours_the_umask(small_dataset, tmp_path):
    preds = _score_setup(small_dataset, tmp_path)
    before = os.stat("/dev/null")
    r = runner.invoke(app, ["score", str(small_dataset), "-p", str(preds), "--json", "/dev/null", "--markdown", str(tmp_path / "r.md")])
    assert r.exit_code == 0, r.output
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino and stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode)

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    old = os.umask(0o027)
    try:
        r = runner.invoke(app, ["score", str(small_dataset), "-p", str(preds), "--json", str(link), "--markdown", str(tmp_path / "new.md")])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and json.loads(real.read_text())["scored"] == 1  # the link stays, its target has the report
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o640  # 0666 & ~umask, not 0600

    real.chmod(0o604)  # a replaced file keeps its mode
    r = runner.invoke(app, ["score", str(small_dataset), "-p", str(preds), "--json", str(real), "--markdown", str(tmp_path / "new.md")])
    assert r.exit_code == 0 and stat.S_IMODE(real.stat().st_mode) == 0o604


# --------------------------------------------------------------------------- 2: disk full


def test_a_full_disk_is_one_line_and_leaves_no_folder_that_passes(tmp_path, monkeypatch):
    from linebench import writer
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.verify import verify

    real = writer.atomic_write

    def full(path, data, **kw):
        if Path(path).name == "README.md":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(writer, "atomic_write", full)
    out = tmp_path / "full"
    spec = RunSpec("tracing", n=20, seed=1)
    with pytest.raises(UsageError, match="no space left") as e:
        generate(spec, out, shard_size=10)
    assert "--resume" in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
    with pytest.raises(UsageError, match="no manifest.json"):
        verify(out)
    monkeypatch.setattr(writer, "atomic_write", real)
    result = generate(spec, out, shard_size=10, resume=True)  # room made: --resume finishes it
    assert result.written == 0 and verify(out, all_rows=True).ok


def test_a_file_size_limit_mid_shard_is_one_line(tmp_path):
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out = tmp_path / "small"
    r = subprocess.run([CLI, "generate", "--n", "20", "--shard-size", "20", "--out", str(out)], capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode == 2, r.stderr
    assert "no space left" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.tmp"))
    assert not list((out / "data").glob("*.parquet"))  # no truncated shard under its final name


# --------------------------------------------------------------------------- 3 and 6: resume and overwrite


def test_resume_rewrites_a_shard_whose_bytes_changed(small_dataset, tmp_path):
    from linebench.dataset import generate
    from linebench.samples import RunSpec

    ref = sorted((small_dataset / "data").glob("*.parquet"))
    work = tmp_path / "w"
    shutil.copytree(small_dataset, work)
    (work / "manifest.json").unlink()  # as if the run had been interrupted before its end
    shard = sorted((work / "data").glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the middle: the footer (row count) is intact
    shard.write_bytes(bytes(data))
    assert pq.read_metadata(shard).num_rows == 16
    result = generate(RunSpec("tracing", split="train", n=48, seed=7), work, shard_size=16, resume=True)
    assert result.written == 1 and result.damaged == 1
    assert [sha256_file(p) for p in sorted((work / "data").glob("*.parquet"))] == [sha256_file(p) for p in ref]
    assert (work / "manifest.json").read_bytes() == (small_dataset / "manifest.json").read_bytes()


def test_a_run_the_knobs_cannot_finish_takes_back_what_it_wrote(tmp_path):
    out = tmp_path / "mid"
    args = ["generate", "--n", "600", "--shard-size", "50", "--difficulty", "easy", "--knob", "max_attempts=5", "--workers", "1"]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2 and "max_attempts" in r.output and "nothing was written" in r.output, r.output
    assert not out.exists()

    runner.invoke(app, ["generate", "--n", "30", "--shard-size", "10", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    r = runner.invoke(app, [*args, "--out", str(out), "--overwrite"])
    assert r.exit_code == 2 and "untouched" in r.output, r.output
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before  # the old dataset is still there
    assert runner.invoke(app, ["verify", str(out), "--all"]).exit_code == 0
    assert not (out / ".linebench-staging").exists()


def test_overwrite_replaces_the_old_dataset_only_when_the_new_one_is_complete(tmp_path):
    from linebench.dataset import generate
    from linebench.errors import Interrupted
    from linebench.samples import RunSpec
    from linebench.verify import verify

    out = tmp_path / "ds"
    generate(RunSpec("tracing", n=20, seed=1), out, shard_size=10)
    old = (out / "manifest.json").read_bytes()

    def stop(done, total):
        if done >= 20:  # shard 0 is finished, shard 1 is made but not written
            raise KeyboardInterrupt

    new = RunSpec("tracing", n=30, seed=2)
    with pytest.raises(Interrupted, match="untouched"):
        generate(new, out, shard_size=10, overwrite=True, progress=stop)
    assert (out / "manifest.json").read_bytes() == old and verify(out, all_rows=True).ok  # still the old dataset
    result = generate(new, out, shard_size=10, resume=True)  # finishes the interrupted --overwrite
    assert result.rows == 30 and json.loads((out / "manifest.json").read_text())["num_rows"] == 30
    assert verify(out, all_rows=True).ok and not (out / ".linebench-staging").exists()
    assert sorted(p.name for p in (out / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]


def test_interrupted_before_any_shard_keeps_nothing(tmp_path):
    from linebench.dataset import generate
    from linebench.errors import Interrupted
    from linebench.samples import RunSpec

    def stop(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "a" / "b"
    with pytest.raises(Interrupted, match="nothing was kept") as e:
        generate(RunSpec("tracing", n=20, seed=1), out, shard_size=10, progress=stop)
    assert e.value.exit_code == 130 and "resume" not in str(e.value)
    assert not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- 7: the lock


def test_a_second_run_into_the_same_folder_is_refused_with_the_first_ones_pid(small_dataset, tmp_path):
    import fcntl

    out = tmp_path / "ds"
    shutil.copytree(small_dataset, out)
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    with open(out / ".linebench-lock", "w") as fh:  # what a running `generate` holds
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("4242\n")
        fh.flush()
        r = runner.invoke(app, ["generate", "--n", "20", "--out", str(out), "--overwrite"])
    assert r.exit_code == 2 and "another linebench run (pid 4242)" in r.output, r.output
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before


def test_two_concurrent_overwrites_never_mix(tmp_path):
    out = tmp_path / "race"
    args = [CLI, "generate", "--n", "60", "--shard-size", "10", "--workers", "1", "--out", str(out), "--overwrite"]
    procs = [subprocess.Popen([*args, "--seed", str(s)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    winners = [r for r in results if r[0] == 0]
    assert winners, results
    for code, err in results:
        assert code == 0 or (code == 2 and "another linebench run" in err), err
    assert runner.invoke(app, ["verify", str(out), "--all"]).exit_code == 0
    assert len({json.loads((out / "manifest.json").read_text())["specs"][0]["seed"]}) == 1


# --------------------------------------------------------------------------- 4: verify's blind spots


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def _rehash(ds: Path, shard: Path) -> None:
    m = _manifest(ds)
    for s in m["shards"]:
        if ds / s["path"] == shard:
            s["sha256"], s["bytes"] = sha256_file(shard), shard.stat().st_size
    _write_manifest(ds, m)


def _edit_rows(edit):
    """Rewrite the first shard with `edit(table)` and put its new hash in the manifest (a careful forger)."""

    def setup(ds: Path) -> None:
        shard = ds / _manifest(ds)["shards"][0]["path"]
        pq.write_table(edit(pq.read_table(shard)), shard)
        _rehash(ds, shard)

    return setup


def _set_column(name, index, value):
    def edit(table):
        values = table.column(name).to_pylist()
        values[index] = value
        return table.set_column(table.schema.get_field_index(name), name, pa.array(values, table.schema.field(name).type))

    return edit


BLIND_SPOTS = [
    ("readme-flipped", lambda ds: _flip(ds / "README.md"), "README.md"),
    ("readme-appended", lambda ds: (ds / "README.md").write_text((ds / "README.md").read_text() + "\nextra\n"), "README.md"),
    ("readme-deleted", lambda ds: (ds / "README.md").unlink(), "README.md: missing"),
    ("example-flipped", lambda ds: _flip(ds / "assets" / "example.png"), "example.png"),
    ("example-deleted", lambda ds: (ds / "assets" / "example.png").unlink(), "example.png: missing"),
    ("extra-shard", lambda ds: shutil.copy(ds / "data" / "train-00000-of-00003.parquet", ds / "data" / "train-00003-of-00004.parquet"),
     "not in manifest.json"),
    ("command-edited", _edit_manifest(command="linebench generate --n 1"), "command"),
    ("num-rows-edited", _edit_manifest(num_rows=47), "num_rows"),
    ("splits-edited", _edit_manifest(splits={"train": 40}), "splits"),
    ("specs-edited", _edit_manifest(specs=lambda m: [{**m["specs"][0], "n": 32}]), "specs"),
    ("generator-edited", _edit_manifest(generator_version="tracing0"), "generator"),
    ("shards-cut", _edit_manifest(shards=lambda m: m["shards"][:2]), "shard list has 2"),
    ("shards-empty", _edit_manifest(shards=[]), "shard list is empty"),
    ("id-edited", _edit_rows(_set_column("id", 3, "tracing-train-s7-0000099")), "id ="),
    ("index-edited", _edit_rows(_set_column("index", 3, 99)), "index ="),
    ("split-edited", _edit_rows(_set_column("split", 3, "test")), "split ="),
    ("difficulty-edited", _edit_rows(_set_column("difficulty", 3, "ood")), "difficulty ="),
    ("seed-edited", _edit_rows(_set_column("seed", 3, 12345)), "seed ="),
    ("row-duplicated", _edit_rows(lambda t: pa.concat_tables([t.slice(0, 1), t.slice(0, t.num_rows - 1)])), "expected"),
]


@pytest.mark.parametrize("case", BLIND_SPOTS, ids=[c[0] for c in BLIND_SPOTS])
def test_verify_catches(case, small_dataset, tmp_path):
    _, setup, fragment = case
    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    setup(ds)
    r = runner.invoke(app, ["verify", str(ds)])  # the default sample: identity columns are checked for every row
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output and fragment in r.output, r.output


def test_verify_refuses_a_shard_linked_from_outside(small_dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    outside = tmp_path / "outside.parquet"
    shard = ds / "data" / "train-00000-of-00003.parquet"
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    r = runner.invoke(app, ["verify", str(ds)])
    assert r.exit_code == 1 and "outside the folder" in r.output
    r = runner.invoke(app, ["push", str(ds), "--repo-id", "me/x", "--dry-run"])
    assert r.exit_code == 2 and "outside" in r.output


# --------------------------------------------------------------------------- 8 and 10: leaks


def test_a_non_ascii_token_is_one_line_without_the_token(small_dataset, tmp_path, monkeypatch):
    from linebench import hub

    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    monkeypatch.setattr(hub, "_offline", lambda: False)
    token = "hf_abc\u00e9defSECRET"
    with pytest.raises(hub.PushError) as e:
        hub.push(ds, "me/x", token=token)
    assert "token" in str(e.value) and "SECRET" not in str(e.value) and len(str(e.value).splitlines()) == 1


def test_push_keeps_the_folder_verifiable_after_renaming_the_card(small_dataset, tmp_path):
    from linebench.hub import plan, write_card
    from linebench.verify import verify

    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    p = plan(ds, "me/tracing")
    write_card(ds, p.card)  # what push does before uploading
    assert "me/tracing" in (ds / "README.md").read_text()
    assert verify(ds).ok
    assert plan(ds, "me/tracing").card == p.card


# --------------------------------------------------------------------------- 12: degenerate predictions


def test_score_survives_degenerate_predictions_quickly(tmp_path):
    from linebench.answers import MAX_TEXT, parse_cell, parse_number
    from linebench.dataset import generate
    from linebench.samples import RunSpec

    ds = tmp_path / "gp"
    generate(RunSpec("grid_patch", n=20, seed=1), ds, shard_size=20)
    ids = [f"grid_patch-train-s1-{i:07d}" for i in range(20)]
    preds = [
        {"id": ids[0], "prediction": "9" * 400},  # float() would overflow
        {"id": ids[1], "prediction": "(3, 5) " * 140_000},  # 1 MB of repeated cells
        {"id": ids[2], "prediction": "one " * 100_000},  # number words, each with a look-back
        {"id": ids[3], "prediction": "row 1, column 2. " * 40_000},
    ]
    lines = [json.dumps(p) for p in preds]
    lines.append('{"id": "%s", "prediction": %s}' % (ids[4], "1" * 5000))  # an integer over Python's 4,300-digit limit
    lines.append('{"id": "%s", "prediction": %s1%s}' % (ids[5], "[" * 100_000, "]" * 100_000))  # deep nesting
    lines.append('{"id": "%s", "prediction": "%s"}' % (ids[6], "x" * (3 << 20)))  # a 3 MB line
    lines.append('{"id": "%s", "prediction": "(1, 2)"}' % ids[7])
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    r = runner.invoke(app, ["score", str(ds), "-p", str(tmp_path / "p.jsonl")])
    seconds = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "p.score.json").read_text())
    assert report["malformed"] == 3, report["malformed_lines"]  # the huge integer, the deep nesting, the 3 MB line
    assert report["scored"] == 5
    assert seconds < 60, f"scoring 8 degenerate predictions took {seconds:.0f} s"  # generous: linear parsers take ~1 s
    assert parse_number("9" * 400) is None and parse_number("9" * 18) == 10**18 - 1
    long = "The answer is (2, 4). " + "blah " * 100_000 + " so (2, 4)."
    assert len(long) > MAX_TEXT and parse_cell(long) == (2, 4)  # head and tail are what is read


def test_the_parsers_are_linear():
    from linebench.answers import _cell_candidates, _number_candidates, _word_numbers

    def cost(fn, n):
        t0 = time.perf_counter()
        fn(n)
        return time.perf_counter() - t0

    cells = lambda n: _cell_candidates("(3, 5) " * n)  # noqa: E731
    words = lambda n: _number_candidates(_word_numbers("the one line 3 and 4 " * n, counts=True))  # noqa: E731
    for fn in (cells, words):
        small, big = min(cost(fn, 2_000) for _ in range(3)), min(cost(fn, 16_000) for _ in range(3))
        assert big < 24 * small + 0.05, (small, big)  # 8x the input: linear is ~8x, quadratic ~64x


# --------------------------------------------------------------------------- 13: show


def test_show_reports_a_damaged_png_in_one_line(small_dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    shard = ds / "data" / "train-00000-of-00003.parquet"
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    png = bytearray(images[0]["bytes"])
    png[200] ^= 0xFF
    images[0] = {"bytes": bytes(png), "path": None}
    pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, table.schema.field("image").type)), shard)
    r = runner.invoke(app, ["show", str(ds), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "not a readable PNG" in r.output, r.output
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- 14 and 15: signals, logs


def test_sigterm_stops_with_one_line_and_143_then_resume_finishes(tmp_path):
    out = tmp_path / "term"
    args = [CLI, "generate", "--n", "200", "--shard-size", "20", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "data").glob("*.parquet"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "finished shard(s) are kept" in errors[0] and "--resume" in errors[0], err
    assert "Traceback" not in err and "BrokenPipe" not in err
    time.sleep(0.5)
    assert not subprocess.run(["pgrep", "-f", str(out)], capture_output=True).stdout, "workers outlived the run"
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert r.returncode == 0 and runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_progress_off_a_terminal_logs_plain_lines_with_this_runs_rate():
    import io

    from rich.console import Console

    from linebench.cli import LineProgress

    buf = io.StringIO()
    bar = LineProgress(console=Console(file=buf, force_terminal=False, width=200))
    bar.LOG_EVERY = 0.0
    bar.start()
    tid = bar.add_task("tracing/train", total=100, completed=40)  # 40 rows were there already (--resume)
    time.sleep(0.2)
    bar.update(tid, completed=50)
    bar.stop()
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("tracing/train: 50/100")]
    assert lines, buf.getvalue()
    rate = float(lines[0].split(", ")[1].split("/s")[0].replace(",", ""))
    assert 10 <= rate <= 60, lines[0]  # 10 rows in ~0.2 s, not 50 rows (or a burst) in 0.2 s


def test_tasks_table_is_not_cut_at_80_columns_off_a_terminal():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([CLI, "tasks"], capture_output=True, text=True, env=env)
    assert r.returncode == 0
    assert max(len(line) for line in r.stdout.splitlines()) > 80


def test_grids_shows_a_profile_that_cannot_take_the_canvas_as_na():
    r = runner.invoke(app, ["grids", "--canvas", "32x8192", "--markdown"])
    assert r.exit_code == 0, r.output
    rows = [line for line in r.output.splitlines() if line.startswith("| `")]
    assert any("n/a" in line for line in rows) and any("n/a" not in line for line in rows)


def test_a_signal_inside_pyarrow_work_takes_effect_after_it():
    """A SIGTERM (or Ctrl-C) landing while a shard is encoded waits for the encode to finish, then
    raises as it would have: raised inside pyarrow's callbacks into datasets' extension types it was
    dropped half-way and left a broken type (ArrowInvalid, exit 1 instead of 143; seen in CI)."""
    import signal as sig

    from linebench.errors import Terminated, signals_held

    class Boom(Exception):
        pass

    def handler(signum, frame):
        raise Boom(signum)

    old = sig.signal(sig.SIGTERM, handler)
    steps = []
    try:
        with pytest.raises(Boom):
            with signals_held():
                os.kill(os.getpid(), sig.SIGTERM)
                steps.append("after the kill, still inside")
        assert steps == ["after the kill, still inside"] and sig.getsignal(sig.SIGTERM) is handler
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C with Python's own handler
            with signals_held():
                os.kill(os.getpid(), sig.SIGINT)
                steps.append("after Ctrl-C")
        assert steps[-1] == "after Ctrl-C"
        with signals_held():  # nothing caught: nothing raised
            steps.append("quiet")
    finally:
        sig.signal(sig.SIGTERM, old)
    assert issubclass(Terminated, KeyboardInterrupt)
