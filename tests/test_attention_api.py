"""The user-facing map API: linebench.attention_map, map_transform, model maps in generated folders,
and the `grids` / `show` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import linebench
from linebench.dataset import generate, read_row
from linebench.grids import layout
from linebench.maps import MapParams
from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec

CLI = str(Path(sys.executable).parent / "linebench")
MAPS = ("grid24", "qwen2.5-vl", "llava-1.5-pad", "internvl")


@pytest.fixture(scope="module")
def model_maps(tmp_path_factory):
    """8 intersection rows on a wide canvas with model maps (InternVL tiles it: several grids)."""
    out = tmp_path_factory.mktemp("mm") / "ds"
    spec = RunSpec("intersection", n=8, seed=5, params=ParamSpec((896, 448), "mixed", {}), maps=MAPS,
                   map_params=MapParams(0.7, 0.2, 0.1, 2))
    generate(spec, out, workers=1, shard_size=8)
    return out


def test_attention_map_from_a_row_equals_the_stored_columns(model_maps):
    import datasets

    ds = datasets.load_dataset(str(model_maps), split="train")
    assert ds.features["attn_internvl"].shape == (1, layout("internvl", (896, 448)).num_tokens)
    assert ds.features["attn_qwen2.5-vl"].shape == layout("qwen2.5-vl", (896, 448)).grids[0].shape
    for row in ds:
        for name in MAPS:
            m = linebench.attention_map(row, name)  # the row's own map params (0.7/0.2/0.1, radius 2)
            assert m.values.dtype == np.float32 and abs(float(m.values.sum()) - 1) < 1e-5
            assert m.shapes == tuple(g.shape for g in m.layout.grids)
            assert np.array_equal(m.values, np.asarray(row[f"attn_{name}"], dtype=np.float32).ravel()), name
    # overriding map params changes the map; a Scene or a geometry dict works too
    row = ds[0]
    other = linebench.attention_map(row, "grid24", target=0.9, neighbour=0.05, floor=0.05, radius=1)
    assert not np.array_equal(other.values, np.asarray(row["attn_grid24"]).ravel())
    geo = json.loads(row["geometry"])
    assert np.array_equal(linebench.attention_map(geo, "grid24", target=0.7, neighbour=0.2, floor=0.1, radius=2).values,
                          np.asarray(row["attn_grid24"], dtype=np.float32).ravel())
    scene = RowMaker(RunSpec("intersection", n=1, seed=5))
    s = scene.task.sample(np.random.default_rng(0), scene.params[scene.level(0)])
    assert linebench.attention_map(s, "qwen2.5-vl").values.shape == (256,)


def test_attention_map_splits_and_expands_in_token_order(model_maps):
    row = read_row(model_maps, 2)
    m = linebench.attention_map(row, "internvl")
    grids = m.grids()
    assert [g.shape for g in grids] == list(m.shapes) and len(grids) > 1
    assert np.array_equal(np.concatenate([g.ravel() for g in grids]), m.values)
    assert np.array_equal(m.layout.expand(m.values), m.values)  # InternVL has no newline tokens


def test_attention_map_errors():
    with pytest.raises(linebench.errors.UsageError, match="row, a Scene"):
        linebench.attention_map({"foo": 1}, "grid24")
    geo = {"canvas": [100, 100], "targets": [{"type": "disc", "center": [50, 50], "radius": 3}]}
    with pytest.raises(linebench.errors.UsageError, match="canvas"):
        linebench.attention_map(geo, layout("grid4", (200, 100)))
    with pytest.raises(linebench.errors.UsageError, match="sum to 1"):
        linebench.attention_map(geo, "grid4", target=0.5)


def test_map_transform_with_datasets(model_maps):
    import datasets

    ds = datasets.load_dataset(str(model_maps), split="train")
    on_the_fly = ds.with_transform(linebench.map_transform("qwen3-vl"))
    batch = on_the_fly[0:3]
    assert "image" in batch and len(batch["attn_qwen3-vl"]) == 3
    for i in range(3):
        assert np.allclose(batch["attn_qwen3-vl"][i], linebench.attention_map(ds[i], "qwen3-vl").values)
    stored = ds.map(linebench.map_transform("gemma-3", only_new=True), batched=True, batch_size=4)
    assert stored.column_names == ds.column_names + ["attn_gemma-3"]
    assert np.allclose(stored[5]["attn_gemma-3"], linebench.attention_map(ds[5], "gemma-3").values)
    assert stored[5]["image"] == ds[5]["image"] or np.array_equal(np.asarray(stored[5]["image"]), np.asarray(ds[5]["image"]))
    with pytest.raises(linebench.errors.UsageError, match="unknown map profile"):
        linebench.map_transform("qwen9")


def test_grids_command_table_and_json():
    r = subprocess.run([CLI, "grids", "--canvas", "640x360"], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert r.returncode == 0, r.stderr
    for name in ("llava-1.5", "qwen2.5-vl", "internvl", "gemma-3"):
        assert name in r.stdout
    r = subprocess.run([CLI, "grids", "--canvas", "640x360", "--json", "-p", "qwen2.5-vl", "-p", "internvl:max_tiles=1"], capture_output=True, text=True)
    data = json.loads(r.stdout)
    assert [d["profile"] for d in data] == ["qwen2.5-vl", "internvl:max_tiles=1"]
    assert data[0]["tokens"] == 13 * 23 and data[0]["grids"][0]["rows"] == 13
    assert len(data[1]["grids"]) == 1
    r = subprocess.run([CLI, "grids", "-p", "qwen9"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown map profile" in r.stderr and "Traceback" not in r.stderr


def test_show_writes_a_png_with_one_panel_per_grid(model_maps, tmp_path):
    out = tmp_path / "pic.png"
    r = subprocess.run([CLI, "show", str(model_maps), "--index", "7", "--maps", "qwen2.5-vl,internvl", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pic = cv2.imread(str(out))
    assert pic is not None and pic.shape[0] > 300 and pic.shape[1] > 600
    # the target tokens are drawn brightest: some pixels are strongly yellow (inferno's top)
    b, g, rr = pic[..., 0].astype(int), pic[..., 1].astype(int), pic[..., 2].astype(int)
    assert ((rr > 200) & (g > 180) & (b < 150)).sum() > 50
    r = subprocess.run([CLI, "show", str(model_maps)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "show-intersection-train-s5-0000000.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--index", "8"], "--index must be within 0..7"),
    (["--split", "test"], "no split 'test'"),
    (["--maps", "qwen9"], "unknown map profile"),
    (["--out", "x.jpg"], "must end in .png"),
    (["--map-target", "0.5"], "sum to 1"),
])
def test_show_bad_input(model_maps, tmp_path, args, message):
    r = subprocess.run([CLI, "show", str(model_maps), *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_bad_profile_parameter(tmp_path):
    r = subprocess.run([CLI, "generate", "--n", "2", "--maps", "qwen2.5-vl:max_tiles=3", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "no parameter 'max_tiles'" in r.stderr and not (tmp_path / "o").exists()


def test_a_cropping_profile_is_refused_on_a_wide_canvas(tmp_path):
    from linebench.errors import MapError, UsageError

    spec = RunSpec("tracing", n=4, params=ParamSpec((640, 360), "mixed", {}), maps=("llava-1.5",))
    with pytest.raises(UsageError, match="sees only 56% x 100% of a 640x360 canvas"):
        generate(spec, tmp_path / "o", workers=1)
    assert not (tmp_path / "o").exists()
    # padding instead of cropping sees everything
    generate(RunSpec("tracing", n=4, params=ParamSpec((640, 360), "mixed", {}), maps=("llava-1.5-pad",)), tmp_path / "p", workers=1)
    # the API says which profile lost the targets
    geo = {"canvas": [640, 360], "targets": [{"type": "disc", "center": [20, 180], "radius": 5}]}
    with pytest.raises(MapError, match="outside every token of llava-1.5 on a 640x360 canvas"):
        linebench.attention_map(geo, "llava-1.5")


def test_grids_markdown_lists_every_profile():
    from linebench.grids import profile_names

    r = subprocess.run([CLI, "grids", "--markdown"], capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("| profile |") and len(lines) == 2 + len(profile_names())
    assert all(f"| `{n}` |" in r.stdout for n in profile_names())


def test_show_out_errors_leave_nothing(model_maps, tmp_path):
    (tmp_path / "dir.png").mkdir()
    for out, message in [(tmp_path / "dir.png", "is a folder"), (tmp_path / "no" / "x.png", "does not exist")]:
        r = subprocess.run([CLI, "show", str(model_maps), "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["dir.png"] and not any((tmp_path / "dir.png").iterdir())


def test_map_names_are_canonical_and_unique(tmp_path):
    from linebench.errors import UsageError
    from linebench.grids import canonical_maps

    assert canonical_maps(["internvl: max_tiles = 6 ", "qwen2.5-vl:max_pixels=12845056"], (448, 448)) == ("internvl:max_tiles=6", "qwen2.5-vl")
    with pytest.raises(UsageError, match="listed twice"):
        canonical_maps(["qwen2.5-vl", "qwen2.5-vl:max_pixels=12845056"], (448, 448))
    r = subprocess.run([CLI, "generate", "--n", "2", "--maps", "grid24,grid24", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "listed twice" in r.stderr and not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match="unknown map parameter 'radios'"):
        linebench.attention_map({"canvas": [64, 64], "targets": [{"type": "disc", "center": [9, 9], "radius": 2}]}, "grid4", radios=2)


@pytest.mark.parametrize("maps,message", [("[24]", "non-empty list"), ("[]", "non-empty list"), ('["qwen9"]', "unknown map profile")])
def test_release_spec_maps_are_checked(tmp_path, maps, message):
    from linebench.errors import UsageError
    from linebench.release import load_release

    spec = tmp_path / "s.toml"
    spec.write_text(f'task = "tracing"\nmaps = {maps}\n[splits.train]\nn = 2\n')
    with pytest.raises(UsageError, match=message):
        load_release(str(spec))
