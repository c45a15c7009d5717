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


def test_probe_cv_selection_uses_the_one_standard_error_rule() -> None:
    """select="cv": C comes from k-fold accuracy on train; validation does not choose."""
    from lensflow.train.probe import cv_accuracy, one_standard_error_choice

    rng = np.random.default_rng(1)
    centers = rng.normal(0, 1, (4, 30))
    y = rng.integers(0, 4, 240)
    x = centers[y] + rng.normal(0, 1.5, (240, 30))  # overlapping classes: C matters
    grid = (0.0005, 0.005, 0.05, 0.5)
    folds = cv_accuracy(x[:160], y[:160], 4, grid)
    assert folds.shape == (5, 4) and ((folds >= 0) & (folds <= 1)).all()
    res = fit_probe(x[:160], y[:160], x[160:], y[160:], 4, grid=grid, select="cv")
    assert grid[one_standard_error_choice(folds, grid)] == res.C
    np.testing.assert_allclose(
        [row["cv_acc"] for row in res.sweep], folds.mean(0)[: len(res.sweep)]
    )
    assert res.sweep[-1]["C"] == res.C  # the path stops at the chosen C
    # Shuffled validation labels cannot move a cross-validated choice.
    shuffled = fit_probe(x[:160], y[:160], x[160:], rng.permutation(y[160:]), 4, grid=grid,
                         select="cv")  # fmt: skip
    assert shuffled.C == res.C


def test_one_standard_error_rule_prefers_the_simplest_model_within_noise() -> None:
    from lensflow.train.probe import one_standard_error_choice

    grid = (0.001, 0.01, 0.1, 1.0)
    # Flat curve whose arg-max (C=1) is noise: fold spread 0.02 -> SE ~0.009.
    flat = np.array([[0.90, 0.91, 0.91, 0.92], [0.92, 0.93, 0.93, 0.90],
                     [0.91, 0.92, 0.92, 0.94], [0.90, 0.91, 0.91, 0.92],
                     [0.92, 0.92, 0.93, 0.93]])  # fmt: skip
    assert one_standard_error_choice(flat, grid) == 1  # C=0.01: within one SE of the best
    # A clear optimum beats anything simpler.
    clear = np.array([[0.60, 0.70, 0.90, 0.80]] * 4 + [[0.61, 0.71, 0.91, 0.81]])
    assert one_standard_error_choice(clear, grid) == 2


def test_finetune_default_model_follows_the_time_budget(tmp_path) -> None:
    from lensflow.train.config import TrainConfig
    from lensflow.train.context import ENSEMBLE_IMAGES_PER_S, default_model

    n = 3400
    enough = TrainConfig(time_budget=n / ENSEMBLE_IMAGES_PER_S / 0.7 + 1)
    short = TrainConfig(time_budget=n / ENSEMBLE_IMAGES_PER_S / 0.7 - 1)
    if torch.cuda.is_available():  # full fine-tuning of Lite0 on a GPU
        assert default_model(enough, "finetune", n) == "efficientnet_lite0"
        return
    assert default_model(enough, "finetune", n) == "efficientnet_lite_ensemble"
    assert default_model(short, "finetune", n) == "efficientnet_lite0"
    assert default_model(enough, "quick", n) == "efficientnet_lite0"
    assert default_model(enough, "scratch", n) == "efficientnet_lite0"


def test_images_to_embed_counts_only_what_the_run_uses(tiny_dataset) -> None:
    """The budget check of the default model counts the few-shot sample, not the whole dataset."""
    from lensflow.data import load_dataset
    from lensflow.train.config import TrainConfig
    from lensflow.train.context import images_to_embed

    dataset = load_dataset(tiny_dataset)
    records = dataset.records
    n_val = sum(r.split == "validation" for r in records)
    n_classes = len({r.label for r in records})
    assert images_to_embed(TrainConfig(dataset=tiny_dataset), dataset) == len(records)
    few = TrainConfig(dataset=tiny_dataset, limit_per_class=2)
    assert images_to_embed(few, dataset) == 2 * n_classes + n_val < len(records)
