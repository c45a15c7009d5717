"""Golden metrics on a hand-made prediction set; every expected value was computed by hand.

Classes a, b, c; six rows (true -> predicted, confidence):
  0: a -> a 0.70   1: a -> a 0.50   2: a -> b 0.55   3: b -> b 0.90   4: b -> c 0.45   5: c -> c 0.85
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from lensflow.errors import EvaluateError
from lensflow.evaluate.metrics import (
    compute_metrics,
    expected_calibration_error,
    reliability_bins,
    top_losses,
)

CLASSES = ["a", "b", "c"]
Y = np.array([0, 0, 0, 1, 1, 2])
P = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.50, 0.30, 0.20],
        [0.25, 0.55, 0.20],
        [0.10, 0.90, 0.00],
        [0.35, 0.20, 0.45],
        [0.05, 0.10, 0.85],
    ]
)


@pytest.fixture(scope="module")
def m():
    return compute_metrics(Y, P, CLASSES, top_k=2, n_bins=5)


def test_confusion_matrix_counts_and_rows(m) -> None:
    assert m.confusion_matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    np.testing.assert_allclose(
        m.confusion_matrix_normalized, [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]]
    )


def test_accuracy_top_k_and_loss(m) -> None:
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    # Row 4 (true b, probabilities .35/.20/.45) is the only one whose true class is not in the top 2.
    assert m.top_k == 2 and m.top_k_accuracy == pytest.approx(5 / 6)
    expected = -np.mean(np.log([0.70, 0.50, 0.25, 0.90, 0.20, 0.85]))
    assert m.loss == pytest.approx(expected)


def test_per_class_precision_recall_f1(m) -> None:
    want = {
        "a": (1.0, 2 / 3, 0.8, 3),
        "b": (0.5, 0.5, 0.5, 2),
        "c": (0.5, 1.0, 2 / 3, 1),
    }
    for name, (p, r, f1, support) in want.items():
        got = m.per_class[name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1))
        assert got["support"] == support
    assert m.macro_avg["precision"] == pytest.approx(2 / 3)
    assert m.macro_avg["recall"] == pytest.approx(13 / 18)
    assert m.macro_avg["f1"] == pytest.approx(59 / 90)
    assert m.weighted_avg["precision"] == pytest.approx(0.75)
    assert m.weighted_avg["recall"] == pytest.approx(4 / 6)
    assert m.weighted_avg["f1"] == pytest.approx(61 / 90)
    assert m.macro_avg["support"] == 6


def test_calibration_bins_and_ece(m) -> None:
    counts = [b.count for b in m.reliability]
    assert counts == [0, 0, 3, 1, 2]
    mid = m.reliability[2]  # rows 1, 2, 4: confidences .50, .55, .45; one of three correct
    assert (mid.lower, mid.upper) == pytest.approx((0.4, 0.6))
    assert mid.confidence == pytest.approx(0.5) and mid.accuracy == pytest.approx(1 / 3)
    # 3/6 * |1/3 - .5| + 1/6 * |1 - .7| + 2/6 * |1 - .875|
    assert m.ece == pytest.approx(0.175)


def test_most_confused_and_top_losses(m) -> None:
    assert m.most_confused == [
        {"true": "a", "predicted": "b", "count": 1},
        {"true": "b", "predicted": "c", "count": 1},
    ]
    worst = top_losses(Y, P, n=5)
    assert [w["index"] for w in worst] == [4, 2]  # -log .20 > -log .25; correct rows excluded
    assert worst[0]["true"] == 1 and worst[0]["predicted"] == 2
    assert worst[0]["probability"] == pytest.approx(0.45)
    assert worst[0]["loss"] == pytest.approx(-math.log(0.2))


def test_agrees_with_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    logits = rng.normal(size=(300, 7)) + 2 * np.eye(7)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, p, [f"c{i}" for i in range(7)], top_k=3)
    pred = p.argmax(1)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    np.testing.assert_allclose([m.per_class[f"c{i}"]["recall"] for i in range(7)], rec)
    assert [m.per_class[f"c{i}"]["support"] for i in range(7)] == sup.tolist()
    np.testing.assert_allclose([m.per_class[f"c{i}"]["f1"] for i in range(7)], f1)
    np.testing.assert_allclose([m.per_class[f"c{i}"]["precision"] for i in range(7)], prec)
    assert m.macro_avg["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m.weighted_avg["recall"] == pytest.approx(skm.recall_score(y, pred, average="weighted"))
    assert m.top_k_accuracy == pytest.approx(skm.top_k_accuracy_score(y, p, k=3))
    assert m.loss == pytest.approx(skm.log_loss(y, p))
    assert m.confusion_matrix.tolist() == skm.confusion_matrix(y, pred).tolist()


def test_perfect_calibration_has_zero_ece() -> None:
    y = np.array([0, 0, 0, 1])
    p = np.array([[0.75, 0.25]] * 4)  # 75% confident, 3 of 4 right
    assert expected_calibration_error(reliability_bins(y, p, 10)) == pytest.approx(0.0)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(EvaluateError, match="empty"):
        compute_metrics(np.zeros(0, int), np.zeros((0, 3)), CLASSES)
    with pytest.raises(EvaluateError, match="columns"):
        compute_metrics(Y, P[:, :2], CLASSES)
    with pytest.raises(EvaluateError, match="top-k"):
        compute_metrics(Y, P, CLASSES, top_k=0)


def test_to_dict_is_json_ready(m) -> None:
    import json

    d = json.loads(json.dumps(m.to_dict()))
    assert {"accuracy", "top_k_accuracy", "n", "per_class", "confusion_matrix", "ece"} <= set(d)
    assert d["per_class"]["a"]["support"] == 3
