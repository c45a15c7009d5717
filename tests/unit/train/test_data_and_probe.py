"""Seeded sampling, split hold-out, balance warnings, and the quick-mode probe."""

from __future__ import annotations

import numpy as np
import torch

from lensflow.train.data import class_balance_warnings, sample_per_class, stratified_holdout
from lensflow.train.probe import fit_probe


def test_sample_per_class_is_seeded_and_bounded() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 3])
    idx = np.arange(len(labels))
    a = sample_per_class(idx, labels, 5, np.random.default_rng(7))
    b = sample_per_class(idx, labels, 5, np.random.default_rng(7))
    c = sample_per_class(idx, labels, 5, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [5, 5, 3]


def test_holdout_is_stratified_and_disjoint() -> None:
    labels = np.repeat([0, 1], [40, 10])
    idx = np.arange(50)
    train, val = stratified_holdout(idx, labels, 0.2, np.random.default_rng(0))
    assert not set(train) & set(val) and len(train) + len(val) == 50
    assert np.bincount(labels[val]).tolist() == [8, 2]


def test_balance_warnings_name_the_class() -> None:
    notes = class_balance_warnings(np.repeat([0, 1, 2], [100, 90, 3]), ["a", "b", "c", "d"])
    assert any("'c' is under-represented" in n for n in notes)
    assert any("'d' has no training images" in n for n in notes)
    assert not any("'a'" in n for n in notes)


def test_probe_separates_and_folds_standardisation() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 20))
    y = rng.integers(0, 3, 300)
    x = (centers[y] + rng.normal(0, 1, (300, 20))) * 50 + 1000  # far from standardised
    res = fit_probe(x[:200], y[:200], x[200:], y[200:], 3)
    assert res.best["val_acc"] > 0.95
    logits = torch.from_numpy(x[200:]).float() @ res.weight.T + res.bias
    acc = float((logits.argmax(1).numpy() == y[200:]).mean())
    assert abs(acc - res.best["val_acc"]) < 1e-9  # the folded head reproduces the reported accuracy
    assert [row["C"] for row in res.sweep] == sorted(row["C"] for row in res.sweep)
