"""Paired comparisons of two arms (say NTP and NTP + KLAL) that a reviewer accepts: McNemar on the
rows both arms answered, and across replicates the mean paired difference with a t interval, an
exact sign test and a sign-flip permutation test. Pure functions of plain lists (scipy for the
distributions, as the field does).
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Sequence

import numpy as np

EXACT_PERMUTATION_MAX = 16  # replicates up to which every sign flip is enumerated (2**16 means)
RANDOM_PERMUTATIONS = 100_000


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, float | int]:
    """Exact McNemar test on paired verdicts of the same rows: `a_only` rows only arm A got right,
    `b_only` only arm B; p is the two-sided binomial test of the discordant rows against 1/2."""
    from scipy.stats import binomtest

    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired verdicts differ in length: {len(a_correct)} and {len(b_correct)}")
    a_only = sum(bool(a) and not bool(b) for a, b in zip(a_correct, b_correct))
    b_only = sum(bool(b) and not bool(a) for a, b in zip(a_correct, b_correct))
    n = a_only + b_only
    p = binomtest(min(a_only, b_only), n, 0.5).pvalue if n else 1.0
    return {"rows": len(a_correct), "a_only": a_only, "b_only": b_only, "p": float(p)}


def paired_summary(diffs: Sequence[float], confidence: float = 0.95, seed: int = 0) -> dict[str, float | int | None]:
    """Across replicates, each one's paired difference (B - A): the mean with a Student t interval,
    the exact two-sided sign test (ties dropped) and a two-sided sign-flip permutation test of the
    mean (every flip up to EXACT_PERMUTATION_MAX replicates, else RANDOM_PERMUTATIONS seeded ones)."""
    from scipy.stats import binomtest, t

    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        raise ValueError("no replicates")
    mean = statistics.fmean(d)
    half = None
    if n > 1:
        half = float(t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(d) / math.sqrt(n))
    pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
    sign_p = float(binomtest(min(pos, neg), pos + neg, 0.5).pvalue) if pos + neg else 1.0
    arr = np.asarray(d)
    if n <= EXACT_PERMUTATION_MAX:
        flips = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        flips = np.random.default_rng(seed).choice((1.0, -1.0), size=(RANDOM_PERMUTATIONS, n))
    means = (flips * arr).mean(axis=1)
    perm_p = float(np.mean(np.abs(means) >= abs(mean) - 1e-12))
    return {"replicates": n, "mean": mean, "low": None if half is None else mean - half, "high": None if half is None else mean + half,
            "positive": pos, "negative": neg, "sign_p": sign_p, "permutation_p": perm_p}
