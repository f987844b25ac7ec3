"""Maps from grounding annotations (issue 17): points, boxes, polygons, masks on real image sizes,
and `linebench maps` on small fake datasets in the PixMo-Points and RefCOCO layouts (built here)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from linebench import attention_map
from linebench.annotations import annotation_geometry, box_xyxy, mask_cell_areas
from linebench.cli import app
from linebench.errors import UsageError
from linebench.grids import layout, profile_names
from linebench.maps import target_areas

runner = CliRunner()
SIZES = [(640, 427), (1024, 683)]


def _visible(lay, targets):
    return sum(float(target_areas(targets, g, lay.canvas).sum()) for g in lay.grids)


@pytest.mark.parametrize("size", SIZES)
def test_box_area_per_token_sums_to_the_boxes_visible_area_for_every_profile(size):
    w, h = size
    boxes = [[10.5, 20.25, 200.0, 100.0], [w - 50.0, h - 40.0, 80.0, 90.0]]  # the second reaches far past the corner
    with pytest.raises(UsageError, match="reaches outside"):
        annotation_geometry(size, boxes=boxes, box_format="xywh")
    boxes[1] = [w - 50.0, h - 40.0, 50.0 + 0.004 * w, 40.0]  # within the rounding slack: clipped to the image
    g = annotation_geometry(size, boxes=boxes, box_format="xywh")
    clipped = [t["box"] for t in g["targets"]]
    assert clipped[1][2] == w
    checked = 0
    for name in profile_names():
        try:
            lay = layout(name, size)
        except UsageError:
            continue
        for grid in lay.grids:  # each grid sees the part of every box inside its extent (and the image)
            x0, x1 = max(0.0, grid.x_edges[0]), min(float(w), grid.x_edges[-1])
            y0, y1 = max(0.0, grid.y_edges[0]), min(float(h), grid.y_edges[-1])
            want = sum(max(0.0, min(b[2], x1) - max(b[0], x0)) * max(0.0, min(b[3], y1) - max(b[1], y0)) for b in clipped)
            assert float(target_areas(g["targets"], grid, lay.canvas).sum()) == pytest.approx(want, rel=1e-9, abs=1e-9), (name, grid.label)
        m = attention_map(g, name)
        assert m.values.sum() == pytest.approx(1.0, abs=1e-5) and m.values.dtype == np.float32
        checked += 1
    assert checked >= 14


def test_coordinate_conventions_round_trip():
    size = (640, 427)
    px = [64.0, 42.7, 320.0, 213.5]
    norm = [v / s for v, s in zip(px, (640, 427, 640, 427))]
    pct = [100 * v for v in norm]
    a = box_xyxy(px, size)
    assert box_xyxy(norm, size, coords="norm") == pytest.approx(a)
    assert box_xyxy(pct, size, coords="percent") == pytest.approx(a)
    xywh = [px[0], px[1], px[2] - px[0], px[3] - px[1]]
    assert box_xyxy(xywh, size, box_format="xywh") == pytest.approx(a)
    p = annotation_geometry(size, points=[{"x": 50.0, "y": 50.0}], coords="percent")["targets"][0]
    assert p["center"] == pytest.approx([320.0, 213.5]) and p["radius"] == pytest.approx(0.02 * 427)
    assert annotation_geometry(size, points=[[3, 4]], point_radius=7)["targets"][0]["radius"] == 7.0


def test_box_mode_centre_is_the_middle_half_each_way():
    g = annotation_geometry((640, 427), boxes=[[100, 100, 300, 200]], box_mode="centre")
    assert g["targets"][0]["box"] == pytest.approx([150, 125, 250, 175])


def test_masks_are_exact_by_pixel_and_agree_with_boxes_and_polygons():
    rng = np.random.default_rng(0)
    mask = (rng.random((427, 640)) < 0.3).astype(np.uint8)
    edges_x, edges_y = np.array([0, 10.5, 33.25, 640.0]), np.array([0.0, 7.75, 400.0, 427.0])
    got = mask_cell_areas(mask, edges_x, edges_y)
    fine = np.kron(mask, np.ones((4, 4)))  # quarter pixels: the fractional edges fall on the fine lattice
    want = np.array([[fine[int(4 * y0):int(4 * y1), int(4 * x0):int(4 * x1)].sum() / 16 for x0, x1 in zip(edges_x, edges_x[1:])]
                     for y0, y1 in zip(edges_y, edges_y[1:])])
    assert np.allclose(got, want, atol=1e-9)

    rect = np.zeros((427, 640), np.uint8)
    rect[50:150, 100:300] = 1
    box = annotation_geometry((640, 427), boxes=[[100, 50, 300, 150]])
    poly = annotation_geometry((640, 427), polygons=[[100, 50, 300, 50, 300, 150, 100, 150]])
    for kind, value in (("masks", [rect]), ("masks", [{"size": [427, 640], "counts": _rle_counts(rect)}])):
        g = annotation_geometry((640, 427), **{kind: value})
        for name in ("qwen2.5-vl", "internvl", "llava-1.5-pad"):
            a, b, c = (attention_map(x, name).values for x in (g, box, poly))
            assert np.allclose(a, b, atol=1e-7) and np.allclose(b, c, atol=1e-7), name


def _rle_counts(mask):
    from pycocotools import mask as cmask

    return cmask.encode(np.asfortranarray(mask))["counts"].decode("ascii")


def _rect_counts() -> str:
    rect = np.zeros((427, 640), np.uint8)
    rect[100:300, 200:500] = 1
    return _rle_counts(rect)


_RECT_COUNTS = _rect_counts()


def test_rle_runs_agree_with_pycocotools():
    from pycocotools import mask as cmask

    from linebench.annotations import _rle_runs

    rng = np.random.default_rng(3)
    for shape in ((1, 1), (7, 5), (427, 640)):
        m = (rng.random(shape) < 0.4).astype(np.uint8)
        m[: shape[0] // 2] = 0  # long runs too (multi-group numbers)
        enc = cmask.encode(np.asfortranarray(m))
        runs = _rle_runs(enc["counts"].decode("ascii"))
        assert sum(runs) == m.size
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)  # column-major, starting with zeros
        assert np.array_equal(flat.reshape(shape[::-1]).T, m)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(boxes=[[float("nan"), 0, 10, 10]]), "finite"),
        (dict(boxes=[[10, 10, -5, 5]], box_format="xywh"), "negative"),
        (dict(boxes=[[100, 100, 50, 30]]), "use box format xywh"),  # xywh read as xyxy
        (dict(boxes=[[700, 10, 800, 20]]), "outside"),
        (dict(boxes=[[10, 10, 20]]), "4 numbers"),
        (dict(points=[[700, 10]]), "outside"),
        (dict(points=[{"x": 1}]), "needs x and y"),
        (dict(polygons=[[1, 2, 3, 4]]), "at least 3"),
        (dict(masks=[np.zeros((10, 10))]), "the image 640x427"),
        (dict(masks=[{"size": [427, 640], "counts": [100, 50]}]), "counts do not match the size"),  # decoded to a slanted shape before
        (dict(masks=[{"size": [427, 640], "counts": _RECT_COUNTS[:-2]}]), "do not match the size|middle of a number"),
        (dict(masks=[{"size": [427, 641], "counts": _RECT_COUNTS}]), "counts do not match the size"),
        (dict(masks=[{"size": [427, 640], "counts": [-5, 273285]}]), "non-negative"),
        (dict(masks=[{"size": [427, 640], "counts": "ab{}"}]), "compressed string"),
        (dict(masks=[{"size": "big", "counts": [1]}]), "height, width"),
        (dict(boxes=[[1, 2, 3, 4]], coords="pixels"), "coords must be"),
        (dict(), "no annotation"),
    ],
)
def test_bad_annotations_are_one_line(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment) as e:
        annotation_geometry((640, 427), **kwargs)
    assert len(str(e.value).splitlines()) == 1


# --------------------------------------------------------------------------- `linebench maps`


def _jpeg(size, seed=0) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(b, format="JPEG")
    return b.getvalue()


def _refcoco(path, n=30, *, xyxy=False, sizes=SIZES):
    """lmms-lab/RefCOCO-style rows: image, bbox [x, y, w, h] px, question (the referring expression), answer."""
    import datasets

    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        x, y, bw, bh = float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2)), float(rng.uniform(20, w / 2)), float(rng.uniform(20, h / 2))
        box = [x, y, x + bw, y + bh] if xyxy else [x, y, bw, bh]
        rows.append({"image": {"bytes": _jpeg((w, h), i), "path": None}, "bbox": box, "question": f"the object {i}", "answer": ["it"]})
    feats = datasets.Features({"image": datasets.Image(), "bbox": datasets.List(datasets.Value("float64")),
                               "question": datasets.Value("string"), "answer": datasets.List(datasets.Value("string"))})
    datasets.Dataset.from_list(rows, features=feats).to_parquet(str(path))


def _pixmo(folder, n=12):
    """allenai/pixmo-points-style rows (with the images fetched): points [{x, y}] in percent, label."""
    import datasets

    rng = np.random.default_rng(2)
    rows = [{"image": {"bytes": _jpeg(SIZES[i % 2], i % 2), "path": None},
             "points": [{"x": float(rng.uniform(1, 99)), "y": float(rng.uniform(1, 99))} for _ in range(1 + i % 3)],
             "label": "dog", "count": 1 + i % 3} for i in range(n)]
    feats = datasets.Features({"image": datasets.Image(), "points": datasets.List({"x": datasets.Value("float64"), "y": datasets.Value("float64")}),
                               "label": datasets.Value("string"), "count": datasets.Value("int32")})
    folder.mkdir()
    datasets.Dataset.from_list(rows, features=feats).to_parquet(str(folder / "train.parquet"))


def _load(folder):
    import datasets

    return datasets.load_dataset(str(folder), split="train")


def test_maps_refcoco_preset_end_to_end(tmp_path):
    src = tmp_path / "refcoco.parquet"
    _refcoco(src)
    out = tmp_path / "out"
    r = runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl,llava-1.5-pad", "--out", str(out), "--shard-size", "10", "-w", "2"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "annotations" and manifest["num_rows"] == 30 and len(manifest["shards"]) == 3
    assert str(tmp_path / "out") not in manifest["command"]
    ds = _load(out)
    assert ds.column_names[:5] == ["id", "image", "bbox", "question", "answer"] and ds[0]["id"] == "train-0000000"  # id added: the source has none
    for i in (0, 7, 29):
        row = ds[i]
        for p in ("qwen2.5-vl", "llava-1.5-pad"):
            assert np.array_equal(np.asarray(row[f"attn_{p}"], np.float32), attention_map(row, p).values)
        x, y, bw, bh = row["bbox"]
        box = json.loads(row["geometry"])["targets"][0]["box"]  # centre mode: the middle half of the box
        assert box == pytest.approx([x + bw / 4, y + bh / 4, x + 3 * bw / 4, y + 3 * bh / 4])
    assert attention_map(ds[3], "internvl").values.sum() == pytest.approx(1.0, abs=1e-5)  # any other model, later
    # workers do not change the bytes; a second run into the same folder is refused
    one = tmp_path / "one"
    r = runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl,llava-1.5-pad", "--out", str(one), "--shard-size", "10", "-w", "1"])
    assert r.exit_code == 0, r.output
    for s in manifest["shards"]:
        assert (one / s["path"]).read_bytes() == (out / s["path"]).read_bytes()
    r = runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(out)])
    assert r.exit_code == 2 and "not empty" in r.output


def test_maps_pixmo_points_preset(tmp_path):
    src = tmp_path / "pixmo"
    _pixmo(src)
    out = tmp_path / "out"
    r = runner.invoke(app, ["maps", str(src), "--preset", "pixmo-points", "--maps", "molmo2,qwen2.5-vl", "--out", str(out), "-w", "1"])
    assert r.exit_code == 0, r.output
    ds = _load(out)
    row = ds[2]
    targets = json.loads(row["geometry"])["targets"]
    w, h = row["image"].size
    assert len(targets) == len(row["points"]) == 3
    assert targets[0]["center"] == pytest.approx([row["points"][0]["x"] * w / 100, row["points"][0]["y"] * h / 100])
    assert np.array_equal(np.asarray(row["attn_molmo2"], np.float32), attention_map(row, "molmo2").values)


def test_maps_resume_after_an_interruption_gives_the_same_bytes(tmp_path):
    from linebench.annotate import PRESETS, add_maps
    from linebench.errors import Interrupted

    src = tmp_path / "refcoco.parquet"
    _refcoco(src)
    ref = add_maps(str(src), tmp_path / "ref", maps=("qwen2.5-vl",), opts=PRESETS["refcoco"], shard_size=10)

    def stop(done, total):
        if done >= 10:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    with pytest.raises(Interrupted, match="--resume"):
        add_maps(str(src), out, maps=("qwen2.5-vl",), opts=PRESETS["refcoco"], shard_size=10, progress=stop)
    assert not (out / "manifest.json").exists()
    kept = sorted((out / "data").glob("*.parquet"))
    assert len(kept) == 1  # the shard finished before the interruption
    stamp = kept[0].stat().st_mtime_ns
    res = add_maps(str(src), out, maps=("qwen2.5-vl",), opts=PRESETS["refcoco"], shard_size=10, resume=True)
    # the resume kept that shard as it was and made only the rest
    assert kept[0].stat().st_mtime_ns == stamp
    assert (res.written, res.rows_written) == (ref.shards - 1, ref.rows - 10)
    for p in sorted((ref.out / "data").iterdir()):
        assert (out / "data" / p.name).read_bytes() == p.read_bytes()
    assert (out / "manifest.json").read_bytes() == (ref.out / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--preset", "refcoco", "--box-format", "xyxy"], "use box format xywh"),  # the data is xywh
        (["--boxes-column", "box"], "has no column 'box'"),
        (["--preset", "refcoco", "--image-column", "picture"], "has no column 'picture'"),
        (["--preset", "refcoco", "--coords", "norm"], "reaches outside"),
        (["--preset", "nope"], "--preset must be one of"),
        (["--boxes-column", "bbox", "--points-column", "bbox"], "name one annotation column"),
        (["--preset", "refcoco", "--box-mode", "middle"], "--box-mode must be one of"),
    ],
)
def test_maps_bad_input_is_one_line_and_writes_nothing(tmp_path, extra, fragment):
    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=6)
    out = tmp_path / "out"
    r = runner.invoke(app, ["maps", str(src), "--maps", "qwen2.5-vl", "--out", str(out), *extra])
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], r.output
    assert not out.exists()


def test_a_bad_row_mid_run_takes_back_what_was_written(tmp_path):
    import datasets

    src = tmp_path / "mixed.parquet"
    rows = [{"image": {"bytes": _jpeg((640, 427)), "path": None}, "bbox": [10.0, 10.0, 50.0, 50.0]} for _ in range(30)]
    rows[25]["bbox"] = [10.0, 10.0, -50.0, 50.0]  # past the probed rows
    feats = datasets.Features({"image": datasets.Image(), "bbox": datasets.List(datasets.Value("float64"))})
    datasets.Dataset.from_list(rows, features=feats).to_parquet(str(src))
    out = tmp_path / "out"
    r = runner.invoke(app, ["maps", str(src), "--boxes-column", "bbox", "--box-format", "xywh", "--maps", "qwen2.5-vl",
                            "--out", str(out), "--shard-size", "10", "-w", "1", "--question-column", "", "--answer-column", ""])
    assert r.exit_code == 2 and "row 25" in r.output and "nothing was written" in r.output, r.output
    assert not out.exists()


def test_other_commands_say_what_an_annotation_folder_is(tmp_path):
    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=4)
    out = tmp_path / "out"
    assert runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "grid24", "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code == 2 and "linebench maps" in r.output


# --------------------------------------------------------------------------- answers: parsing and scoring


class _near:
    """Nested lists of numbers equal within 1e-6."""

    def __init__(self, want):
        self.want = np.asarray(want, dtype=float)

    def __eq__(self, got):
        got = np.asarray(got, dtype=float)
        return got.shape == self.want.shape and np.allclose(got, self.want, atol=1e-6)


def test_the_answer_formats_models_emit():
    from linebench.pointing import parse_boxes, parse_points

    size = (640, 427)
    assert parse_boxes('```json\n[{"bbox_2d": [12, 40, 200, 310], "label": "dog"}]\n```', size) == [[12, 40, 200, 310]]  # Qwen2.5-VL
    assert parse_boxes("[0.1, 0.2, 0.5, 0.6]", size) == _near([[64, 85.4, 320, 256.2]])  # LLaVA, normalised
    assert parse_boxes("<|box_start|>(100,200),(500,800)<|box_end|>", size) == _near([[64, 85.4, 320, 341.6]])  # Qwen2-VL, 0-1000
    assert parse_boxes("The box is [120, 30, 20, 300].", size) == [[20, 30, 120, 300]]  # corners in either order
    assert parse_boxes("no box here", size) == [] and parse_boxes(None, size) == []
    assert parse_points('<point x="50.0" y="25.0" alt="dog">dog</point>', size) == _near([[320, 106.75]])  # Molmo, percent
    assert parse_points('<points x1="10" y1="20" x2="30" y2="40" alt="d">d</points>', size) == _near([[64, 85.4], [192, 170.8]])
    assert parse_points('[{"point_2d": [120, 88], "label": "cup"}]', size) == [[120, 88]]  # Qwen2.5-VL
    assert parse_points("(0.5, 0.5)", size) == [[320, 213.5]] and parse_points("(12, 40), (30, 50)", size) == [[12, 40], [30, 50]]
    import time

    t0 = time.perf_counter()
    for junk in ("[" * 50_000, "{" * 50_000, '{"a": ' * 10_000, "[1, 2, 3, 4]" * 10_000):  # capped, linear, no recursion error
        parse_boxes(junk, size), parse_points(junk, size)
    assert time.perf_counter() - t0 < 2.0  # generous: ~0.05 s


def test_judging_boxes_by_iou_and_points_by_matching():
    from linebench.pointing import judge

    g = annotation_geometry((640, 427), boxes=[[100, 100, 200, 150]], box_format="xywh", box_mode="centre")
    assert judge('{"bbox_2d": [100, 100, 300, 250]}', g)[0] is True  # against the whole box, not the map's centre region
    assert judge('{"bbox_2d": [150, 125, 250, 175]}', g)[0] is False  # IoU 0.25
    assert judge("I cannot tell", g)[0] is None
    g = annotation_geometry((640, 427), points=[{"x": 50, "y": 50}, {"x": 10, "y": 10}], coords="percent")
    assert judge('<points x1="50.5" y1="50" x2="10" y2="11" alt="d">d</points>', g)[:3] == (True, 2, 2)
    assert judge('<point x="50" y="50" alt="d">d</point>', g)[:2] == (False, 1)  # one target missed
    assert judge('<points x1="50" y1="50" x2="10" y2="10" x3="90" y3="90">d</points>', g)[0] is False  # an extra point
    mask = np.zeros((427, 640), np.uint8)
    mask[100:200, 300:400] = 1
    g = annotation_geometry((640, 427), masks=[mask])
    assert judge("(390, 110)", g)[0] is True and judge("(410, 110)", g)[0] is False  # inside the mask, or not


def test_score_a_maps_folder(tmp_path):
    from linebench.pointing import answer_text

    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=20)
    out = tmp_path / "out"
    assert runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(out), "-w", "1"]).exit_code == 0
    ds = _load(out)
    lines = []
    for i, row in enumerate(ds):
        g = json.loads(row["geometry"])
        x1, y1, x2, y2 = g["annotations"]["boxes"][0]
        w, h = g["canvas"]
        pred = [answer_text(g), json.dumps([{"bbox_2d": [x1, y1, x2, y2]}]), f"[{x1 / w:.4f}, {y1 / h:.4f}, {x2 / w:.4f}, {y2 / h:.4f}]",
                f"[{x2 + 5}, {y2 + 5}, {x2 + 50}, {y2 + 50}]", "I do not know"][i % 5]
        lines.append(json.dumps({"id": row["id"], "prediction": pred}))
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["score", str(out), "-p", str(tmp_path / "p.jsonl")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "p.score.json").read_text())
    assert rep["tasks"] == ["grounding-boxes"] and rep["correct"] == 12 and rep["unparseable"] == 4 and rep["scored"] == 20


def test_eval_on_a_maps_folder_against_a_fake_server(tmp_path):
    import hashlib

    pytest.importorskip("openai")
    from fake_openai import FakeServer

    from linebench.pointing import answer_text

    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=12)
    out = tmp_path / "maps"
    assert runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(out), "-w", "1"]).exit_code == 0
    from datasets import Image

    ds = _load(out).cast_column("image", Image(decode=False))
    truth = {hashlib.sha256(r["image"]["bytes"]).hexdigest(): answer_text(json.loads(r["geometry"])) for r in ds}
    server = FakeServer(truth).start()
    try:
        r = runner.invoke(app, ["eval", str(out), "--split", "train", "--model", "fake-vlm", "--base-url", server.url, "--out", str(tmp_path / "ev")])
    finally:
        server.stop()
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ev" / "score.json").read_text())["groups"][0]["accuracy"] == 1.0
    assert len(server.requests) == 12
    asked = server.bodies[0]["messages"][-1]["content"]
    assert asked[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")  # the rows' own JPEG bytes, typed as such
    assert asked[1]["text"].startswith('Give the bounding box of "the object')


def test_train_with_klal_on_a_maps_folder(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    monkeypatch.setenv("LINEBENCH_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=20, sizes=[(224, 224)])  # the tiny LLaVA sees 224 px squares
    out = tmp_path / "maps"
    assert runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "grid16", "--out", str(out), "-w", "1"]).exit_code == 0
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--klal", "--data", str(out), "--split", "train", "--eval-n", "4", "--steps", "2", "--batch-size", "4",
                            "--out", str(run), "--klal-backend", "torch"])
    assert r.exit_code == 0, r.output
    ev = json.loads((run / "eval.json").read_text())
    assert ev["after"]["rows"] == 4 and ev["profile"] == "llava-1.5:side=224"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(x.get("klal", 0) > 0 for x in lines)  # the KL attention loss ran on the real-image maps


def test_attention_map_and_map_transform_take_annotations_as_they_are(tmp_path):
    import datasets

    from linebench.maps import map_transform

    m = attention_map({"size": (640, 427), "boxes": [[10, 20, 100, 50]], "box_format": "xywh"}, "qwen2.5-vl")
    g = annotation_geometry((640, 427), boxes=[[10, 20, 100, 50]], box_format="xywh")
    assert np.array_equal(m.values, attention_map(g, "qwen2.5-vl").values)

    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=6)
    ds = datasets.load_dataset("parquet", data_files=str(src), split="train")
    fn = map_transform("internvl", only_new=True, annotations={"column": "bbox", "kind": "boxes", "box_format": "xywh"})
    added = ds.map(fn, batched=True, batch_size=4)
    out = tmp_path / "out"
    r = runner.invoke(app, ["maps", str(src), "--boxes-column", "bbox", "--box-format", "xywh", "--maps", "internvl", "--out", str(out), "-w", "1"])
    assert r.exit_code == 0, r.output
    stored = _load(out)
    for i in range(6):  # the on-the-fly transform and the stored column are the same maps
        assert np.array_equal(np.asarray(added[i]["attn_internvl"], np.float32), np.asarray(stored[i]["attn_internvl"], np.float32))
    with pytest.raises(UsageError, match="'column'"):
        map_transform("internvl", annotations={"kind": "boxes"})


def test_a_maps_folder_can_be_pushed(tmp_path):
    from linebench.hub import plan, write_card

    src = tmp_path / "refcoco.parquet"
    _refcoco(src, n=6)
    out = tmp_path / "out"
    assert runner.invoke(app, ["maps", str(src), "--preset", "refcoco", "--maps", "qwen2.5-vl", "--out", str(out), "-w", "1"]).exit_code == 0
    r = runner.invoke(app, ["push", str(out), "--repo-id", "me/refcoco-maps", "--dry-run"])
    assert r.exit_code == 0 and "card: valid" in r.output, r.output
    p = plan(out, "me/refcoco-maps")
    assert 'load_dataset("me/refcoco-maps"' in p.card and p.tag is None
    assert [f for f, _ in p.files][:3] == ["README.md", "manifest.json", "assets/example.png"] and len(p.files) == 4
    write_card(out, p.card)  # what push does before uploading: the folder still plans (and loads)
    assert plan(out, "me/refcoco-maps").card == p.card and len(_load(out)) == 6
    (out / "assets" / "example.png").write_bytes(b"x")
    r = runner.invoke(app, ["push", str(out), "--repo-id", "me/refcoco-maps", "--dry-run"])
    assert r.exit_code == 2 and "differs from manifest.json" in r.output
