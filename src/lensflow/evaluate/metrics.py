"""Classification metrics on arrays: no I/O, no torch, no plotting.

Everything takes `y_true` (N,) class indices and `proba` (N, C) probabilities in the model's class
order, so the same numbers come out whether the probabilities came from a run (torch) or a bundle
(onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lensflow.errors import EvaluateError
from lensflow.evaluate.intervals import bootstrap_macro_f1, wilson

EPS = 1e-12  # log loss clips probabilities here so a confident mistake costs ~27.6, not inf


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise EvaluateError(f"need proba of shape (N, C) with N = {len(y)}, got {p.shape}")
    if len(y) == 0:
        raise EvaluateError("no predictions to evaluate (the split is empty)")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise EvaluateError(f"labels must be in 0..{p.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y, p


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k most probable (ties: lower index first)."""
    y, p = _check(y_true, proba)
    k = max(1, min(k, p.shape[1]))
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log probability of the true class (natural log)."""
    y, p = _check(y_true, proba)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0)).mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall on the diagonal); rows with no samples stay 0."""
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(cm, totals, out=np.zeros(cm.shape, np.float64), where=totals > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def most_confused(
    cm: np.ndarray, classes: list[str], n: int = 10, min_count: int = 1
) -> list[dict[str, Any]]:
    """Off-diagonal (true, predicted) pairs, most frequent first (ties in class order)."""
    pairs = [
        {"true": classes[i], "predicted": classes[j], "count": int(cm[i, j])}
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and cm[i, j] >= min_count
    ]
    pairs.sort(key=lambda d: -d["count"])  # stable: equal counts keep (true, predicted) order
    return pairs[:n]


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    accuracy: float  # fraction correct among rows whose confidence falls in (lower, upper]
    confidence: float  # their mean confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "accuracy": self.accuracy,
            "confidence": self.confidence,
        }


def reliability_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width confidence bins (lower, upper]; the first bin also takes confidence 0.

    Confidence is the top-1 probability; a row is correct when the top-1 class is the true one.
    """
    y, p = _check(y_true, proba)
    if n_bins < 1:
        raise EvaluateError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    # ceil(conf * n) - 1 puts conf in (k/n, (k+1)/n] into bin k; 0 and rounding noise are clipped.
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins = []
    for k in range(n_bins):
        mask = idx == k
        count = int(mask.sum())
        bins.append(
            ReliabilityBin(
                lower=k / n_bins,
                upper=(k + 1) / n_bins,
                count=count,
                accuracy=float(correct[mask].mean()) if count else 0.0,
                confidence=float(conf[mask].mean()) if count else 0.0,
            )
        )
    return bins


def expected_calibration_error(bins: list[ReliabilityBin]) -> float:
    """sum over bins of (bin size / N) * |accuracy - confidence|."""
    total = sum(b.count for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in bins))


def top_losses(
    y_true: np.ndarray, proba: np.ndarray, n: int = 16, wrong_only: bool = True
) -> list[dict[str, Any]]:
    """The n rows with the highest loss (-log p(true)), i.e. the most confidently wrong.

    Each item: index, true, predicted (indices), probability (of the predicted class),
    true_probability, loss.
    """
    y, p = _check(y_true, proba)
    pred = p.argmax(axis=1)
    losses = -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))
    rows = np.flatnonzero(pred != y) if wrong_only else np.arange(len(y))
    order = rows[np.argsort(-losses[rows], kind="stable")][:n]
    return [
        {
            "index": int(i),
            "true": int(y[i]),
            "predicted": int(pred[i]),
            "probability": float(p[i, pred[i]]),
            "true_probability": float(p[i, y[i]]),
            "loss": float(losses[i]),
        }
        for i in order
    ]


@dataclass(frozen=True)
class Metrics:
    """Everything `metrics.json` holds; `to_dict()` is its exact content."""

    classes: list[str]
    n: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    loss: float
    per_class: dict[str, dict[str, float]]
    macro_avg: dict[str, float]
    weighted_avg: dict[str, float]
    confusion_matrix: np.ndarray
    confusion_matrix_normalized: np.ndarray
    most_confused: list[dict[str, Any]]
    ece: float
    reliability: list[ReliabilityBin]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "top_k_accuracy": self.top_k_accuracy,
            "top_k": self.top_k,
            "n": self.n,
            "loss": self.loss,
            "ece": self.ece,
            "macro_avg": self.macro_avg,
            "weighted_avg": self.weighted_avg,
            "per_class": self.per_class,
            "classes": list(self.classes),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "confusion_matrix_normalized": np.round(self.confusion_matrix_normalized, 6).tolist(),
            "most_confused": self.most_confused,
            "reliability": [b.to_dict() for b in self.reliability],
            **self.extra,
        }


def compute_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    top_k: int = 5,
    n_bins: int = 10,
    n_confused: int = 10,
) -> Metrics:
    """All metrics of one evaluation: the single entry point the evaluator and tests use."""
    columns = np.shape(proba)[-1]
    if columns != len(classes):
        raise EvaluateError(f"proba has {columns} columns but there are {len(classes)} classes")
    y, p = _check(y_true, proba)
    if top_k < 1:
        raise EvaluateError(f"--top-k must be >= 1, got {top_k}")
    k = min(top_k, len(classes))
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, len(classes))
    scores = per_class_scores(cm)
    support = scores["support"]
    per_class = {
        c: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    names = ("precision", "recall", "f1")
    # Macro averages over the classes that occur as a true or predicted label (scikit-learn's
    # default): a class absent from a small split would otherwise drag the average down with 0s.
    present = (support > 0) | (cm.sum(axis=0) > 0)
    macro = {m: float(scores[m][present].mean()) for m in names}
    weighted = {m: float((scores[m] * support).sum() / support.sum()) for m in names}
    bins = reliability_bins(y, p, n_bins)
    intervals = {
        "accuracy_ci95": wilson(int((pred == y).sum()), len(y)),
        "macro_f1_ci95": bootstrap_macro_f1(y, pred, len(classes)),
    }
    return Metrics(
        classes=list(classes),
        n=len(y),
        accuracy=float((pred == y).mean()),
        top_k=k,
        top_k_accuracy=top_k_accuracy(y, p, k),
        loss=log_loss(y, p),
        per_class=per_class,
        macro_avg={**macro, "support": int(support.sum())},
        weighted_avg={**weighted, "support": int(support.sum())},
        confusion_matrix=cm,
        confusion_matrix_normalized=normalize_rows(cm),
        most_confused=most_confused(cm, list(classes), n_confused),
        ece=expected_calibration_error(bins),
        reliability=bins,
        extra=intervals,
    )
