"""The linear head on frozen features: multinomial logistic regression with C chosen on validation
(quick mode: fast) or by k-fold cross-validation on train (finetune: validation stays unbiased).

Solved with full-batch L-BFGS in torch (sklearn's objective: 0.5 |W|^2 + C * sum CE, divided by
C * n), warm-started along an increasing C path, which takes well under a second per C for a few
thousand 1600-d features. The standardisation is folded into the weights, so the result is a
plain `nn.Linear` on raw features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

C_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0)
# Stop the C path after this many values in a row below the best validation accuracy.
PATIENCE = 2


@dataclass
class ProbeResult:
    weight: torch.Tensor  # (classes, D), on raw features
    bias: torch.Tensor  # (classes,)
    C: float
    sweep: list[dict[str, float]] = field(default_factory=list)  # one row per C tried

    @property
    def best(self) -> dict[str, float]:
        return next(row for row in self.sweep if row["C"] == self.C)


def _lbfgs(
    z: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    C: float,
    class_weight: torch.Tensor | None,
) -> None:
    n = len(y)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=100,
        tolerance_grad=1e-4,
        tolerance_change=1e-7,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y, weight=class_weight)
        loss = loss + (w * w).sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(closure)


def _scores(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[float, float]:
    with torch.no_grad():
        logits = z @ w.T + b
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def _standardise(
    train_x: np.ndarray, *others: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    xt = torch.from_numpy(np.asarray(train_x, np.float32))
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    z = [(torch.from_numpy(np.asarray(o, np.float32)) - mu) / sd for o in (train_x, *others)]
    return mu, sd, z


def cv_accuracy(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    grid: tuple[float, ...],
    class_weight: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Accuracy of the probe on each held-out fold for every C: shape (folds, len(grid)).

    Folds are stratified and seeded; each fold's probes are warm-started along the C path.
    """
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), int)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold_of[rows] = np.arange(len(rows)) % folds
    cw = _weight_tensor(class_weight)
    acc = []
    for f in range(folds):
        held = fold_of == f
        if held.all() or not held.any():
            continue
        _, _, (zt, zh) = _standardise(x[~held], x[held])
        yt, yh = torch.from_numpy(y[~held]).long(), torch.from_numpy(y[held]).long()
        w = torch.zeros(num_classes, zt.shape[1], requires_grad=True)
        b = torch.zeros(num_classes, requires_grad=True)
        row = []
        for C in grid:
            _lbfgs(zt, yt, w, b, C, cw)
            row.append(_scores(zh, yh, w, b)[1])
        acc.append(row)
    return np.asarray(acc)


def one_standard_error_choice(fold_acc: np.ndarray, grid: tuple[float, ...]) -> int:
    """Index of the smallest C whose mean CV accuracy is within one standard error of the best.

    The CV curve of a probe on thousands of features is flat over a wide range of C: its
    arg-max is noise, and it drifts to the weakest regularisation, which transfers worst. The
    one-standard-error rule (Hastie et al., as in glmnet) takes the simplest model the data
    cannot tell apart from the best.
    """
    mean = fold_acc.mean(0)
    best = int(np.argmax(mean))
    se = fold_acc[:, best].std(ddof=1) / np.sqrt(len(fold_acc)) if len(fold_acc) > 1 else 0.0
    order = np.argsort(grid)
    return int(next(i for i in order if mean[i] >= mean[best] - se))


def _weight_tensor(class_weight: np.ndarray | None) -> torch.Tensor | None:
    if class_weight is None:
        return None
    return torch.from_numpy(np.asarray(class_weight, np.float32))


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    class_weight: np.ndarray | None = None,
    grid: tuple[float, ...] = C_GRID,
    select: str = "val",
) -> ProbeResult:
    """Fit one probe per C (warm-started) and keep one.

    select="val": the best validation accuracy (then loss); fast, but the reported validation
    accuracy is then slightly optimistic. select="cv": 5-fold cross-validation on train with the
    one-standard-error rule; validation only reports.
    """
    if select not in ("val", "cv"):
        raise ValueError(f"select must be 'val' or 'cv', not {select!r}")
    mu, sd, (zt, zv) = _standardise(train_x, val_x)
    yt, yv = torch.from_numpy(train_y).long(), torch.from_numpy(val_y).long()
    cw = _weight_tensor(class_weight)
    grid = tuple(sorted(grid))
    cv, chosen = None, None
    if select == "cv":
        folds = cv_accuracy(
            np.asarray(train_x, np.float32), train_y, num_classes, grid, class_weight
        )
        chosen = grid[one_standard_error_choice(folds, grid)]
        cv = folds.mean(0)
    w = torch.zeros(num_classes, zt.shape[1], dtype=torch.float32, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float32, requires_grad=True)
    sweep, best, best_key, worse = [], None, None, 0
    for i, C in enumerate(grid):
        if worse >= PATIENCE or (chosen is not None and chosen < C):
            break
        _lbfgs(zt, yt, w, b, C, cw)
        train_loss, train_acc = _scores(zt, yt, w, b)
        val_loss, val_acc = _scores(zv, yv, w, b)
        row = {"C": C, "train_loss": train_loss, "train_acc": train_acc}
        row |= {"val_loss": val_loss, "val_acc": val_acc}
        if cv is not None:
            row["cv_acc"] = float(cv[i])
        sweep.append(row)
        key = (val_acc, -val_loss)
        if chosen is not None:
            best = (C, w.detach().clone(), b.detach().clone())
        elif best_key is None or key > best_key:
            best_key, best, worse = key, (C, w.detach().clone(), b.detach().clone()), 0
        else:
            worse += 1
    assert best is not None
    C, wz, bz = best
    # Fold the standardisation: W z + b = (W / sd) x + (b - W mu / sd)
    weight = wz / sd
    bias = bz - (wz * (mu / sd)).sum(1)
    return ProbeResult(weight.float(), bias.float(), C, sweep)
