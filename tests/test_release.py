"""Official split specs: they load, regenerate byte for byte (a slice, against the stored
checksums), and `generate --spec` / `verify --spec` certify a whole (small) release."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linebench.cli import app
from linebench.dataset import generate, read_manifest
from linebench.release import HEAD_ROWS, load_release, split_digests
from linebench.samples import generator_version
from linebench.tasks import get_task, task_names

SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"
OFFICIAL = sorted(p.stem for p in SPLITS_DIR.glob("*.toml"))
runner = CliRunner()


def test_every_task_has_an_official_spec_with_the_default_sizes():
    assert OFFICIAL == task_names()
    for name in OFFICIAL:
        rel = load_release(name)  # by name, as users type it
        assert rel.path.resolve() == (SPLITS_DIR / f"{name}.toml").resolve()
        assert {s: n for s, (n, _) in rel.splits.items()} == {"train": 50000, "validation": 2000, "test": 5000, "ood": 2000}
        assert rel.splits["ood"][1] == "ood"
        assert all(rel.splits[s][1] == "stratified" for s in ("train", "validation", "test"))


def _regenerate_heads(name: str, out: Path) -> dict[str, dict]:
    rel = load_release(name)
    sums = rel.checksums
    specs = [s.__class__(**{**s.__dict__, "n": sums[s.split]["head_rows"]}) for s in rel.run_specs()]
    generate(specs, out, workers=1, shard_size=rel.shard_size)
    return split_digests(out, read_manifest(out), head_rows=HEAD_ROWS)


@pytest.mark.parametrize("name", OFFICIAL)
def test_a_regenerated_slice_matches_the_stored_checksums(name, tmp_path, monkeypatch):
    """The first rows of every official split, regenerated here, have the content the spec
    certifies: every column but the PNG bytes always, whatever the installed OpenCV (its text
    functions are made to raise: a label's metrics must never come from a rasteriser); the PNG
    bytes too with the renderer the checksums were written with (docs/releases.md)."""
    import cv2

    from linebench.font import text_size
    from linebench.render import renderer

    def refuse(*a, **k):
        raise AssertionError("row content asked OpenCV's text functions")

    monkeypatch.setattr(cv2, "getTextSize", refuse)
    monkeypatch.setattr(cv2, "putText", refuse)
    text_size.cache_clear()

    rel = load_release(name)
    sums = rel.checksums
    assert sums, f"splits/{name}.toml has no checksums"
    assert sums["generator_version"] == generator_version(get_task(rel.task)), (
        "the generator changed since the checksums were written: regenerate the release and rewrite them (docs/releases.md)"
    )
    got = _regenerate_heads(name, tmp_path / name)
    for split, d in got.items():
        assert d["head_sha256_no_images"] == sums[split]["head_sha256_no_images"], f"{name}/{split}: regenerated rows differ"
        if renderer() == sums["renderer"]:
            assert d["head_sha256"] == sums[split]["head_sha256"], f"{name}/{split}: regenerated images differ"


_PROBE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from linebench.detmath import simd_targets
from test_release import _regenerate_heads
print(json.dumps({"on": simd_targets()[1], "digests": {name: _regenerate_heads(name, Path(sys.argv[1]) / name) for name in sys.argv[3:]}}), flush=True)
import os
os._exit(0)  # as the console script does: pyarrow's threads can abort the interpreter's teardown (apache/arrow#45214)
"""


def test_release_content_does_not_depend_on_numpys_simd_paths(tmp_path):
    """numpy picks AVX2/AVX-512 kernels at run time, and some give other last bits (arctan2, log,
    exp, power: measured, docs/releases.md); an ulp can flip an audit or a printed digit. The
    official heads, regenerated with numpy limited to its baseline kernels, keep their content."""
    import os
    import subprocess
    import sys

    import numpy as np

    from linebench.detmath import simd_targets

    dispatch, present = simd_targets()
    if not present:
        pytest.skip(f"this CPU has none of numpy {np.__version__}'s dispatched SIMD targets ({', '.join(dispatch)}): nothing to turn off")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(present)}
    r = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path), str(Path(__file__).parent), *OFFICIAL],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["on"] == [], f"NPY_DISABLE_CPU_FEATURES left {got['on']} on"
    for name in OFFICIAL:
        sums = load_release(name).checksums
        for split, d in got["digests"][name].items():
            assert d["head_sha256_no_images"] == sums[split]["head_sha256_no_images"], f"{name}/{split}: content depends on numpy's SIMD kernels"


def _small_spec(tmp_path, task="intersection"):
    text = (SPLITS_DIR / f"{task}.toml").read_text()
    text = text[: text.find("[checksums")] if "[checksums" in text else text
    for big, small in (("50000", "20"), ("5000", "12"), ("2000", "6")):
        text = re.sub(rf"^n = {big}$", f"n = {small}", text, flags=re.M)
    text = text.replace("shard_size = 1000", "shard_size = 8")
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_generate_and_certify_a_release_from_a_spec(tmp_path):
    spec = _small_spec(tmp_path)
    out = tmp_path / "release"
    r = runner.invoke(app, ["generate", "--spec", str(spec), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    manifest = read_manifest(out)
    assert manifest["splits"] == {"train": 20, "validation": 6, "test": 12, "ood": 6}
    assert manifest["command"] == "linebench generate --spec spec.toml"  # the name, never the path typed (issue 16)
    assert str(tmp_path) not in (out / "README.md").read_text()
    card = (out / "README.md").read_text()
    for split in manifest["splits"]:
        assert f"path: data/{split}-*" in card
    # levels: stratified splits cycle easy/medium/hard, ood holds only ood
    from datasets import load_dataset

    ds = load_dataset(str(out))
    assert set(ds) == {"train", "validation", "test", "ood"}
    assert ds["test"]["difficulty"] == ["easy", "medium", "hard"] * 4
    assert set(ds["ood"]["difficulty"]) == {"ood"}

    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 1 and "no [checksums] yet" in r.output
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec), "--write-checksums"])
    assert r.exit_code == 0, r.output
    assert "[checksums.train]" in spec.read_text()
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 0 and "content matches" in r.output, r.output

    # A copy made with other parameters is not certified, even with valid shards of its own.
    other = tmp_path / "other"
    specs = load_release(str(spec)).run_specs()
    generate([s.__class__(**{**s.__dict__, "seed": 99}) for s in specs], other, workers=1, shard_size=8)
    r = runner.invoke(app, ["verify", str(other), "--spec", str(spec)])
    assert r.exit_code == 1 and "not generated from" in r.output

    # Pictures alone differing from the release's: content certified; a problem with the same
    # renderer, a one-line note when the checksums were written with another one.
    good = spec.read_text()
    spec.write_text(re.sub(r'(\[checksums\.test\]\nrows = 12\nsha256 = ")[0-9a-f]', r"\g<1>x", good))
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 1 and "test: content certified (every column but the images)" in r.output, r.output
    spec.write_text(re.sub(r'renderer = "[^"]*"', 'renderer = "OpenCV 0.0.0"', spec.read_text()))
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 0 and "note: test: content certified" in r.output and "OpenCV 0.0.0" in r.output, r.output
    # A stored content checksum that does not match is reported per split.
    spec.write_text(re.sub(r'(\[checksums\.test\]\nrows = 12\nsha256 = "[0-9a-fx]+"\nsha256_no_images = ")[0-9a-f]', r"\g<1>x", spec.read_text()))
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 1 and "test: content sha256" in r.output, r.output


def test_content_digest_ignores_shard_size(tmp_path):
    specs = load_release(str(_small_spec(tmp_path, "tracing"))).run_specs()[:1]
    a, b = tmp_path / "a", tmp_path / "b"
    generate(specs, a, workers=1, shard_size=8)
    generate(specs, b, workers=1, shard_size=20)
    assert split_digests(a, read_manifest(a)) == split_digests(b, read_manifest(b))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--spec", "tracing", "--n", "5"], "drop --n"),
        (["--spec", "no-such-spec"], "no official spec"),
    ],
)
def test_spec_errors_are_one_line(args, message, tmp_path):
    r = runner.invoke(app, ["generate", *args, "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


def test_bad_spec_files_are_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, message in (
        ('task = "tracing"\n[splits.train]\nn = 0\n', "positive integer"),
        ('task = "tracing"\n[splits.dev]\nn = 5\n', "not one of"),
        ('task = "tracing"\ncolour = 1\n[splits.train]\nn = 5\n', "unknown key"),
        ('task = "tracing"\n[splits.train\n', "not valid TOML"),
        ('task = "tracing"\nseed = "x"\n[splits.train]\nn = 5\n', "seed"),
        ('task = "tracing"\ncanvas = [448]\n[splits.train]\nn = 5\n', "canvas"),
        ('task = "tracing"\nsplits = 3\n', "must be a table"),
        ('task = "tracing"\n[splits]\ntrain = 5\n', "is a table with keys"),
        ('task = "tracing"\n[splits.train]\nn = 5\ndificulty = "ood"\n', "is a table with keys"),
        ('task = "tracing"\n[splits.train]\nn = true\n', "positive integer"),
        ('task = "tracing"\n[knobs]\ncurves = [3]\n[splits.train]\nn = 5\n', "a range is"),
    ):
        bad.write_text(text)
        r = runner.invoke(app, ["generate", "--spec", str(bad), "--out", str(tmp_path / "x")])
        assert r.exit_code == 2 and message in r.output, (text, r.output)


def test_certification_ignores_split_order_but_not_stray_shards(tmp_path):
    spec = _small_spec(tmp_path)
    out = tmp_path / "release"
    generate(load_release(str(spec)).run_specs(), out, workers=1, shard_size=8)
    assert runner.invoke(app, ["verify", str(out), "--spec", str(spec), "--write-checksums"]).exit_code == 0
    # the same release with its [splits.*] tables in another order certifies the same folder
    text = spec.read_text()
    body, sums = text[: text.index("[checksums")], text[text.index("[checksums") :]
    tables = re.split(r"(?m)^(?=\[splits\.)", body)
    reordered = tmp_path / "reordered.toml"
    reordered.write_text(tables[0] + "".join(reversed(tables[1:])) + "\n" + sums)
    r = runner.invoke(app, ["verify", str(out), "--spec", str(reordered)])
    assert r.exit_code == 0, r.output
    # a shard the manifest does not list would be loaded too: not a faithful copy
    (out / "data" / "train-extra.parquet").write_bytes((out / "data" / "train-00000-of-00003.parquet").read_bytes())
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec)])
    assert r.exit_code == 1 and "does not list" in r.output


def test_write_checksums_refuses_tables_after_them(tmp_path):
    spec = _small_spec(tmp_path)
    out = tmp_path / "release"
    generate(load_release(str(spec)).run_specs(), out, workers=1, shard_size=8)
    assert runner.invoke(app, ["verify", str(out), "--spec", str(spec), "--write-checksums"]).exit_code == 0
    spec.write_text(spec.read_text() + "\n[map_params]\nradius = 1\n")
    before = spec.read_text()
    r = runner.invoke(app, ["verify", str(out), "--spec", str(spec), "--write-checksums"])
    assert r.exit_code == 2 and "must come last" in r.output
    assert spec.read_text() == before
