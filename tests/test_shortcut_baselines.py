"""The shortcut-baseline predictors (benchmarks/shortcut_baselines.py) can find a leak when there
is one, stay at chance when there is none, and read the features off real scenes."""

import numpy as np
import pytest

import shortcut_baselines as sb


def planted(n=3000, leak=0.0, seed=0):
    """Six balanced answers and three features; feature 0 equals the answer with probability `leak`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    x = rng.normal(size=(n, 3))
    hit = rng.random(n) < leak
    x[hit, 0] = y[hit]
    x[~hit, 0] = rng.integers(0, 6, (~hit).sum())
    return x, y


@pytest.mark.parametrize("predictor", ["majority", "tree"])
def test_a_planted_leak_is_found_and_no_leak_stays_at_chance(predictor):
    for leak, lo, hi in ((0.0, 100 / 6 - 3, 100 / 6 + 3), (0.5, 50.0, 65.0)):
        x, y = planted(leak=leak)
        folds = sb._folds(len(y), 5)
        acc = 100 * (sb.majority_accuracy(x[:, 0], y, folds) if predictor == "majority" else sb.model_accuracy(sb.tree, x, y, folds))
        assert lo < acc < hi, (leak, acc)


def test_row_and_column_are_predicted_separately():
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 8, 2000), rng.integers(0, 8, 2000)
    y = rows * sb.CELL_SPLIT + cols
    x = np.stack([rows, cols + 0.5 * rng.random(2000)], axis=1).astype(float)  # both readable: ~100%
    assert sb.model_accuracy(sb.tree, x, y, sb._folds(2000, 5), sb.CELL_SPLIT) > 0.97


@pytest.mark.parametrize("task", sb.TASKS)
def test_features_come_off_official_release_scenes(task):
    rows = [sb._scene(i, task, "train") for i in range(6)] + [sb._scene(0, task, "ood")]
    assert [r["level"] for r in rows[:3]] == ["easy", "medium", "hard"] and rows[-1]["level"] == "ood"
    for r in rows:
        feats, partial, answer, chance = sb.FEATURES[task](r)
        assert all(np.isfinite(v) for v in feats.values()) and 0 < chance <= 0.5
        if task == "tracing":  # the class is the answer's end rank, and the label there is the answer
            g = r["geometry"]
            ends = sorted((m["center"][1], m["curve"]) for m in g["markers"] if m["kind"] == "end")
            assert g["curves"][ends[answer][1]]["end_label"] == r["answer"]
        elif task == "intersection":
            assert answer == int(r["answer"])
        else:
            assert f"({answer // sb.CELL_SPLIT + 1}, {answer % sb.CELL_SPLIT + 1})" == r["answer"]
