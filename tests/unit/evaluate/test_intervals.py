"""95 % intervals and the exact McNemar test against hand-computed and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lensflow.evaluate.intervals import (
    bootstrap_macro_f1,
    difference_ci95,
    macro_f1_of_counts,
    mcnemar_exact,
    wilson,
)
from lensflow.evaluate.metrics import compute_metrics, confusion_matrix


def test_wilson_matches_textbook_values() -> None:
    # Newcombe (1998), table I: 0/10 -> 0-0.2775, 1/29 -> 0.0061-0.1718 (method 3).
    assert wilson(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson(1, 29) == pytest.approx([0.0061, 0.1718], abs=1e-4)
    lo, hi = wilson(335, 341)
    assert lo < 335 / 341 < hi and hi <= 1.0


def test_mcnemar_exact_is_a_two_sided_binomial_test() -> None:
    # b=3, c=12: 2 * P(X <= 3), X ~ Binomial(15, 1/2) = 2 * 576 / 32768.
    assert mcnemar_exact(3, 12) == pytest.approx(2 * 576 / 2**15)
    assert mcnemar_exact(12, 3) == mcnemar_exact(3, 12)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 2**10)


def test_macro_f1_of_counts_agrees_with_the_metrics_module() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    proba = np.eye(4)[pred]
    expected = compute_metrics(y, proba, list("abcd")).macro_avg["f1"]
    assert macro_f1_of_counts(confusion_matrix(y, pred, 4)[None])[0] == pytest.approx(expected)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> tuple[float, float, float]:
        y = rng.integers(0, 5, n)
        pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, 5, n))
        f1 = macro_f1_of_counts(confusion_matrix(y, pred, 5)[None])[0]
        lo, hi = bootstrap_macro_f1(y, pred, 5, seed=0)
        assert lo <= f1 <= hi
        return lo, hi, hi - lo

    assert width(2000)[2] < width(100)[2] / 2  # ~1/sqrt(n): 20x the images, ~4.5x narrower
    y = np.arange(50) % 5
    assert bootstrap_macro_f1(y, y, 5) == [1.0, 1.0]  # all right: no uncertainty left to sample


def test_metrics_carry_both_intervals() -> None:
    y = np.array([0, 0, 1, 1, 1])
    m = compute_metrics(y, np.eye(2)[[0, 1, 1, 1, 0]], ["a", "b"]).to_dict()
    assert m["accuracy_ci95"] == pytest.approx(wilson(3, 5))
    lo, hi = m["macro_f1_ci95"]
    assert 0 <= lo <= m["macro_avg"]["f1"] <= hi <= 1 and not math.isnan(lo)


def test_difference_interval_matches_newcombe() -> None:
    # Newcombe (1998), table II example (a): 56/70 - 48/80 -> 0.0524 to 0.3339 (method 10).
    assert difference_ci95(56, 70, 48, 80) == pytest.approx([0.0524, 0.3339], abs=1e-4)
    lo, hi = difference_ci95(300, 341, 302, 341)
    assert lo < 0 < hi  # two points apart on 341 images: not distinguishable
