"""Dataset folders: load_dataset round trip, determinism across workers, verify, kill and resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from linebench.dataset import generate
from linebench.errors import UsageError
from linebench.verify import verify

CLI = str(Path(sys.executable).parent / "linebench")


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_load_dataset_round_trip(small_dataset):
    import datasets

    ds = datasets.load_dataset(str(small_dataset), split="train")
    assert len(ds) == 48
    assert ds.features["attn_grid24"] == datasets.Array2D((24, 24), "float32")
    assert ds.features["image"] == datasets.Image()
    assert ds.features["curves"].dtype == "int32" and ds.features["same_colour"].dtype == "bool"
    row = ds[0]
    assert row["image"].size == (448, 448) and row["image"].mode == "RGB"
    for name, n in (("attn_grid24", 24), ("attn_llava-1.5", 24), ("attn_qwen2.5-vl", 16), ("attn_internvl", 16)):
        m = np.asarray(row[name], dtype=np.float32)
        assert m.shape == (n, n) and abs(m.sum() - 1) < 1e-5
    assert len(set(ds["id"])) == 48
    assert ds["index"] == list(range(48))
    geometry = json.loads(row["geometry"])
    assert geometry["canvas"] == [448, 448] and "targets" in geometry
    assert json.loads(row["params"])["base_seed"] == 7


def test_card_and_manifest(small_dataset):
    card = (small_dataset / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "dataset_info:" in card
    assert "linebench generate --task tracing --split train --n 48 --seed 7" in card
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, 16]
    assert manifest["shards"][0]["path"] == "data/train-00000-of-00003.parquet"
    assert (small_dataset / "assets" / "example.png").read_bytes()[:4] == b"\x89PNG"

    from huggingface_hub import DatasetCard

    data = DatasetCard(card).data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["configs"][0]["data_files"][0]["path"] == "data/train-*"


def test_non_square_canvas_loads_at_its_size(tmp_path, tiny_spec):
    import datasets

    out = tmp_path / "wide"
    generate(tiny_spec(n=6, canvas=(640, 400)), out, workers=1, shard_size=6)
    ds = datasets.load_dataset(str(out), split="train")
    assert ds[0]["image"].size == (640, 400)
    assert np.asarray(ds[0]["attn_grid24"]).shape == (24, 24)


def test_bytes_do_not_depend_on_worker_count(tmp_path, tiny_spec):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(tiny_spec(n=30), a, workers=1, shard_size=7)
    generate(tiny_spec(n=30), b, workers=2, shard_size=7)
    assert folder_bytes(a) == folder_bytes(b)


def test_verify_passes_and_catches_tampering(small_dataset, tmp_path):
    report = verify(small_dataset, all_rows=True)
    assert report.ok and report.rows_checked == 48 and report.shards == 3

    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    shard = copy / "data" / "train-00001-of-00003.parquet"
    table = pq.read_table(shard)
    answers = table.column("answer").to_pylist()
    answers[2] = "99"
    import pyarrow as pa

    table = table.set_column(table.schema.get_field_index("answer"), "answer", pa.array(answers))
    pq.write_table(table, shard)
    report = verify(copy, all_rows=True)
    assert not report.ok
    assert any("sha256" in p for p in report.problems)
    assert any("answer differs" in p for p in report.problems)
    shard.write_bytes(b"not parquet")  # a corrupt shard is reported, not a crash
    assert any("unreadable" in p for p in verify(copy).problems)


def test_verify_measures_pictures_another_renderer_drew(tmp_path, tiny_spec, monkeypatch):
    """A folder whose pictures alone differ from a re-render: one line with how many pixels by how
    much; a note when another renderer version made it, a problem when the same one did."""
    import linebench.dataset
    import linebench.samples
    from linebench import render

    def other_rasterise(canvas, prims, background=(255, 255, 255)):
        img = render.rasterise(canvas, prims, background)
        img[5, 5:8] = (img[5, 5:8].astype(int) - 3).clip(0, 255)  # 3 pixels, 3 levels darker
        return img

    with monkeypatch.context() as m:
        m.setattr(linebench.samples, "rasterise", other_rasterise)
        m.setattr(linebench.dataset, "renderer", lambda: "OpenCV 0.0.0")
        generate(tiny_spec(n=6), tmp_path / "d", workers=1, shard_size=6)
    report = verify(tmp_path / "d", all_rows=True)
    assert report.ok, report.problems
    assert report.image_diffs and all(d[1:] == (3, 3) for d in report.image_diffs)
    assert len(report.notes) == 1 and "6 of 6 re-rendered image(s) differ" in report.notes[0]
    assert "at most 3 pixel(s) by at most 3 level(s)" in report.notes[0] and "OpenCV 0.0.0" in report.notes[0]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    manifest["renderer"] = render.renderer()  # the same renderer: now the pictures are wrong
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(manifest))
    report = verify(tmp_path / "d", sample=2)
    assert not report.ok and report.problems == [f"2 of 2 re-rendered image(s) differ from the stored ones, at most 3 pixel(s) by at most 3 level(s); every other column matches ({render.renderer()}, the renderer that made the folder)"]


def test_existing_folder_needs_overwrite_or_resume(tmp_path, tiny_spec):
    out = tmp_path / "x"
    generate(tiny_spec(n=4), out, workers=1, shard_size=4)
    with pytest.raises(UsageError, match="exists and is not empty"):
        generate(tiny_spec(n=4), out, workers=1)
    with pytest.raises(UsageError, match="other arguments"):
        generate(tiny_spec(n=5), out, workers=1, shard_size=4, resume=True)
    with pytest.raises(UsageError, match="other arguments"):
        generate(tiny_spec(n=4), out, workers=1, shard_size=2, resume=True)
    generate(tiny_spec(n=4, seed=9), out, workers=1, shard_size=4, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["specs"][0]["seed"] == 9
    other = tmp_path / "not-ours"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    (other / "manifest.json").write_text("{}")  # a manifest alone does not make a folder ours
    with pytest.raises(UsageError, match="refusing to overwrite"):
        generate(tiny_spec(n=4), other, workers=1, overwrite=True)
    assert (other / "precious.txt").exists()
    (out / "notes.txt").write_text("mine")  # --overwrite removes only what a run writes
    generate(tiny_spec(n=4), out, workers=1, shard_size=4, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_kill_and_resume_is_byte_identical(tmp_path):
    args = ["generate", "--n", "240", "--shard-size", "20", "--seed", "5", "--workers", "1"]
    ref = tmp_path / "ref"
    subprocess.run([CLI, *args, "--out", str(ref)], check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen([CLI, *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "data").glob("*.parquet"))) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shards = list((out / "data").glob("*.parquet"))
    assert 2 <= len(shards) < 12, "the run should have been killed part-way"
    for shard in shards:  # every visible shard is complete
        assert pq.read_metadata(shard).num_rows == 20
    assert not (out / "manifest.json").exists()

    done = subprocess.run([CLI, *args, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "--resume" in done.stderr
    shards[0].write_bytes(b"truncated")  # a damaged shard is rewritten, not trusted
    subprocess.run([CLI, *args, "--out", str(out), "--resume"], check=True, capture_output=True)
    assert folder_bytes(out) == folder_bytes(ref)


def test_knob_order_does_not_change_the_folder(tmp_path, tiny_spec):
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    a, b = tmp_path / "a", tmp_path / "b"
    generate(RunSpec("tracing", n=3, params=ParamSpec(overrides={"curves": 4, "bends": 2, "crossings": [3, 5]})), a, shard_size=3)
    generate(RunSpec("tracing", n=3, params=ParamSpec(overrides={"crossings": [3, 5], "bends": 2, "curves": 4})), b, shard_size=3)
    assert folder_bytes(a) == folder_bytes(b)
