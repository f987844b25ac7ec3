"""linebench.evaluate.diagnostics: baselines on the same rows, balanced accuracy, a constant answer
flagged as such, the confusion of answers with predictions; and `evaluate` reporting them."""

import pytest

from linebench.evaluate.diagnostics import chance, describe, diagnose


def test_a_constant_answer_is_flagged_and_scores_the_majority_baseline():
    answers = ["0"] * 16 + ["1"] * 30 + ["4"] * 54
    predicted = ["4"] * 100  # always "4": accuracy = the share of rows whose answer is 4
    correct = [a == p for a, p in zip(answers, predicted)]
    d = diagnose(answers, predicted, correct, [1 / 6] * 100)
    assert d["accuracy"] == pytest.approx(0.54) and d["majority_baseline"] == pytest.approx(0.54) and d["majority_answer"] == "4"
    assert d["constant"] and d["distinct_predictions"] == 1 and d["balanced_accuracy"] == pytest.approx(1 / 3)
    assert d["uniform_baseline"] == pytest.approx(1 / 6)
    assert d["confusion"]["0"] == {"4": 16} and d["confusion"]["4"] == {"4": 54}
    assert "CONSTANT ANSWER: '4'" in describe(d)
    none = diagnose(["1", "2"], [None, None], [False, False])
    assert none["distinct_predictions"] == 0 and "NO PARSEABLE ANSWER" in describe(none) and "CONSTANT" not in describe(none)


def test_a_model_that_tells_classes_apart_is_not_flagged():
    answers = ["0", "0", "1", "1", "2", "2"]
    predicted = ["0", "0", "1", "0", None, "2"]
    correct = [a == p for a, p in zip(answers, predicted)]
    d = diagnose(answers, predicted, correct)
    assert not d["constant"] and d["distinct_predictions"] == 3 and d["unparseable"] == 1
    assert d["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3) and d["accuracy"] == pytest.approx(4 / 6)
    assert d["uniform_baseline"] is None  # no chance given: not invented
    assert d["confusion"]["2"] == {"unparseable": 1, "2": 1}
    assert "CONSTANT" not in describe(d) and "majority answer '0' 33.3%" in describe(d)


def test_chance_is_the_uniform_guess_among_the_answers_a_sample_allows():
    assert chance("tracing", {"curves": 4}) == 0.25
    assert chance("grid_patch", {"grid": 5}) == 1 / 25
    assert chance("intersection", {"params": '{"knobs": {"count": [0, 5]}}'}) == 1 / 6
    assert chance("intersection", {"params": {"knobs": {"count": 3}}}) == 1.0
    assert chance("grounding-box", {}) is None
