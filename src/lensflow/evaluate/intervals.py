"""How sure an accuracy is: 95 % intervals and the exact McNemar test, in numpy only.

- `wilson(k, n)`: Wilson score interval of a proportion (accuracy = k right of n);
- `bootstrap_macro_f1(y, pred, C)`: percentile bootstrap of macro-F1 (resampling images);
- `difference_ci95(k1, n1, k2, n2)`: Newcombe's interval for p1 - p2 of two independent
  samples (for figures without per-image results; on the same images it is conservative);
- `mcnemar_exact(b, c)`: two-sided exact McNemar p-value for two classifiers on the same images,
  from the discordant counts (b: only A right, c: only B right); a binomial test of b against
  Binomial(b + c, 1/2).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the 97.5 % normal quantile


def wilson(k: int, n: int, z: float = Z95) -> list[float]:
    """[lo, hi] of the Wilson score interval for k successes in n trials."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def macro_f1_of_counts(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices (B, C, C) over the classes present as true or predicted."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    # F1 = 2 tp / (support + predicted): the same as 2PR / (P + R), defined as 0 when empty.
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    present = denom > 0
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def bootstrap_macro_f1(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, rounds: int = 1000, seed: int = 0
) -> list[float]:
    """[lo, hi]: the 2.5 and 97.5 percentiles of macro-F1 over `rounds` resamples of the images."""
    y, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    n = len(y)
    if n == 0:
        return [0.0, 1.0]
    rng = np.random.default_rng(seed)
    cell = y * num_classes + p
    scores = []
    for start in range(0, rounds, 100):  # 100 resamples at a time bounds the memory
        k = min(100, rounds - start)
        drawn = cell[rng.integers(0, n, size=(k, n))]  # (k, n) confusion cells, with replacement
        flat = (np.arange(k)[:, None] * num_classes**2 + drawn).ravel()
        cm = np.bincount(flat, minlength=k * num_classes**2)
        scores.append(macro_f1_of_counts(cm.reshape(k, num_classes, num_classes)))
    lo, hi = np.percentile(np.concatenate(scores), [2.5, 97.5])
    return [float(lo), float(hi)]


def difference_ci95(k1: int, n1: int, k2: int, n2: int) -> list[float]:
    """[lo, hi] of p1 - p2 (Newcombe 1998, method 10: from the two Wilson intervals)."""
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    d = p1 - p2
    return [d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(a split at least this uneven | no real difference)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def interval_text(ci: list[float], percent: bool = True) -> str:
    """'95% CI 97.6-98.5' for a report line."""
    if percent:
        return f"95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}"
    return f"95% CI {ci[0]:.3f}–{ci[1]:.3f}"
