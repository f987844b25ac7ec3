"""linebench.evaluate.stats: paired tests of two arms, against values computed by hand."""

import math

import pytest

from linebench.evaluate.stats import mcnemar, paired_summary


def test_mcnemar_counts_discordant_rows_and_tests_them_exactly():
    # 47 rows right only with KLAL, 2 only without, 100 right in both, 51 wrong in both
    ntp = [False] * 47 + [True] * 2 + [True] * 100 + [False] * 51
    klal = [True] * 47 + [False] * 2 + [True] * 100 + [False] * 51
    r = mcnemar(ntp, klal)
    assert (r["a_only"], r["b_only"], r["rows"]) == (2, 47, 200)
    # two-sided binomial: 2 * P(X <= 2), X ~ Bin(49, 1/2)
    by_hand = 2 * sum(math.comb(49, k) for k in range(3)) / 2**49
    assert r["p"] == pytest.approx(by_hand, rel=1e-9) and r["p"] < 1e-11
    assert mcnemar([True, False], [True, False])["p"] == 1.0  # no discordant row
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar([True], [True, False])


def test_paired_summary_t_interval_sign_and_permutation_tests():
    s = paired_summary([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert s["mean"] == 2.0 and s["low"] == pytest.approx(2.0 - half) and s["high"] == pytest.approx(2.0 + half)
    assert s["sign_p"] == pytest.approx(0.25)  # 3 of 3 positive: 2 / 2**3
    assert s["permutation_p"] == pytest.approx(0.25)  # of 8 sign flips only all + and all - reach |mean| 2
    eight = paired_summary([0.05, 0.1, 0.02, 0.07, 0.01, 0.04, 0.03, 0.06])
    assert eight["sign_p"] == pytest.approx(2 / 2**8) and eight["permutation_p"] == pytest.approx(2 / 2**8)
    mixed = paired_summary([0.1, -0.1, 0.0, 0.05])
    assert (mixed["positive"], mixed["negative"]) == (2, 1) and mixed["sign_p"] == 1.0 and mixed["permutation_p"] > 0.5
    assert paired_summary([0.3])["low"] is None  # one replicate: no interval
