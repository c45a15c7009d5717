"""The open-set score on synthetic feature sets: separation, calibration, files, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lensflow.errors import OpenSetError
from lensflow.openset import calibrate_threshold, fit_scorer, load_scorer


def clusters(n: int, seed: int, dim: int = 32, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """`classes` tight Gaussian clusters around fixed centres (the same centres for every seed)."""
    centres = np.random.default_rng(123).normal(0, 1, (classes, dim)) * 4
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_far_points_score_higher_than_held_out_known_points(method):
    x, y = clusters(600, seed=0)
    known, _ = clusters(200, seed=1)
    far = np.random.default_rng(2).normal(0, 1, (200, 32)).astype(np.float32) * 4 + 20
    scorer = fit_scorer(x, y, method=method, dims=16)
    s_known, s_far = scorer.score(known), scorer.score(far)
    assert s_known.shape == (200,) and s_known.dtype == np.float32
    assert s_far.min() > s_known.max()


def test_knn_works_without_labels_and_scores_a_training_point_zero():
    x, _ = clusters(300, seed=0)
    scorer = fit_scorer(x, method="knn")
    assert np.allclose(scorer.score(x[:5]), 0, atol=1e-5)
    assert (scorer.score(x[:5] + 3) > 0.01).all()


def test_calibration_rejects_the_target_share_of_held_out_scores():
    x, y = clusters(600, seed=0)
    held, _ = clusters(400, seed=1)
    test, _ = clusters(2000, seed=2)
    scorer = fit_scorer(x, y, method="knn", k=5)
    scorer = scorer.calibrated(scorer.score(held), unknown_rate=0.1)
    assert scorer.info["calibration_rejected"] == pytest.approx(0.1, abs=0.01)
    # fresh in-distribution data is rejected at about the same rate
    assert scorer.is_unknown(scorer.score(test)).mean() == pytest.approx(0.1, abs=0.04)


def test_threshold_is_a_quantile_and_zero_rate_keeps_everything():
    s = np.arange(100, dtype=np.float32)
    assert calibrate_threshold(s, 0.05) == 95.0  # the ceil(101 * 0.95) = 96th smallest
    assert calibrate_threshold(s, 0.0) == math.inf
    with pytest.raises(OpenSetError, match="unknown rate"):
        calibrate_threshold(s, 1.0)
    with pytest.raises(OpenSetError, match="at least one"):
        calibrate_threshold(np.array([]), 0.05)


def test_too_few_held_out_images_reject_nothing_and_survive_a_round_trip(tmp_path):
    # 18 held-out scores cannot promise a 5 % rate (the largest would reject ~1/19 = 5.3 %
    # of new in-distribution images); 19 can.
    assert calibrate_threshold(np.arange(19.0), 0.05) == 18.0
    x, y = clusters(200, seed=0)
    scorer = fit_scorer(x, y, method="knn", k=1)
    few = scorer.calibrated(scorer.score(clusters(18, seed=1)[0]), unknown_rate=0.05)
    assert few.rejects_nothing and "too few" in few.info["calibration_note"]
    assert not few.is_unknown(few.score(x[:5] + 100)).any()
    assert few.to_dict()["threshold"] is None and few.to_dict()["rejects"] is False
    loaded = load_scorer(few.save(tmp_path / "openset.npz"))
    assert (
        loaded.rejects_nothing and loaded.info["calibration_note"] == few.info["calibration_note"]
    )


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_save_and_load_give_the_same_scores_and_operating_point(tmp_path, method):
    x, y = clusters(300, seed=0)
    held, _ = clusters(100, seed=1)
    scorer = fit_scorer(x, y, method=method, k=3, dims=8)
    scorer = scorer.calibrated(scorer.score(held), 0.05)
    path = scorer.save(tmp_path / "openset.npz")
    again = load_scorer(path)
    assert again.method == method and again.k == 3 and again.threshold == scorer.threshold
    assert again.to_dict() == scorer.to_dict()
    np.testing.assert_allclose(again.score(held), scorer.score(held), rtol=1e-6)
    with np.load(path, allow_pickle=False) as z:  # a plain npz: no pickled objects inside
        assert set(z.files) == {"header", "mean", "projection", "bank", "scale"}


def test_bank_is_capped_and_stratified():
    x, y = clusters(1000, seed=0)
    scorer = fit_scorer(x, y, method="knn", max_bank=100, dims=8)
    assert scorer.bank.shape == (100, 8)


def test_errors_are_clear():
    x, y = clusters(50, seed=0)
    with pytest.raises(OpenSetError, match="unknown open-set method 'lof'"):
        fit_scorer(x, method="lof")
    with pytest.raises(OpenSetError, match="at least 2 rows"):
        fit_scorer(x[:1])
    with pytest.raises(OpenSetError, match="one entry per feature row"):
        fit_scorer(x, y[:10])
    with pytest.raises(OpenSetError, match="NaN"):
        fit_scorer(np.full((5, 3), np.nan))
    scorer = fit_scorer(x, y)
    with pytest.raises(OpenSetError, match=r"shape \(N, 32\)"):
        scorer.score(np.zeros((2, 5)))
    with pytest.raises(OpenSetError, match="not calibrated"):
        scorer.is_unknown(scorer.score(x))


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "openset.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(OpenSetError, match="cannot read open-set statistics"):
        load_scorer(bad)
