"""Open-set scores: is this input like anything the model was fitted on? (pure numpy)

A classifier always answers one of its classes, even for a blank wall. The model's pooled
features know better: an image that belongs to none of the classes lies far from every training
image. `OpenSetScorer` keeps compact statistics of a feature matrix (any: a bundle's training
features, or frames of an empty scene) and scores new features, higher = more unusual:

    scorer = fit_scorer(train_features, labels)            # labels optional
    scorer = scorer.calibrated(scorer.score(heldout_features), unknown_rate=0.05)
    scores = scorer.score(features)                        # (N,) float32
    unknown = scorer.is_unknown(scores)                    # scores > threshold
    scorer.save("openset.npz"); load_scorer("openset.npz")

Methods (chosen by measurement, see BENCHMARKS.md "Open-set rejection"):
- "knn" (shipped): 1 - cosine similarity to the k-th nearest training feature (Sun et al.,
  ICML 2022). Features are made unit length, then projected onto the top principal directions
  of the unit training features (no centring, no renormalising): the bank is small and the
  score cheap, and an unusual input, whose energy lies outside those directions, still gets a
  low similarity. Measured equal to the exact cosine kNN on every set.
- "mahalanobis": the smallest Mahalanobis distance to a class mean under one shared covariance
  (Lee et al., NeurIPS 2018), in the same projected space; without labels, one mean.

The threshold is a quantile of scores of held-out in-distribution features (never the features
being judged): `unknown_rate` of them lie above it. numpy only, so it runs wherever the
Predictor runs; the file is a plain `.npz` (no pickle).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.errors import OpenSetError

METHODS = ("knn", "mahalanobis")
FORMAT = "lensflow-openset"
FORMAT_VERSION = 1
DEFAULT_UNKNOWN_RATE = 0.05
PCA_ROWS = 1536


@dataclass(frozen=True)
class OpenSetScorer:
    method: str  # one of METHODS
    mean: np.ndarray  # (D,) training mean, subtracted first
    projection: np.ndarray  # (D, d) orthonormal top principal directions (d <= D)
    bank: np.ndarray  # knn: (M, d) unit rows; mahalanobis: (C, d) class means, whitened
    scale: np.ndarray  # mahalanobis: (d,) 1/sqrt(eigenvalue) per direction; knn: unused (ones)
    k: int = 1  # knn: which neighbour's similarity counts
    threshold: float | None = None  # scores above it are unknown; None = not calibrated
    info: dict[str, Any] = field(default_factory=dict)  # calibration facts, JSON-able

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[0])

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) float32, higher = less like the fitted features."""
        if self.method == "knn":
            # Unit length first, then the projection: an input unlike the training features
            # keeps its energy outside the kept directions, so its projection is short and its
            # similarity to every bank row low (normalising after projecting would hide that).
            x = self._checked(features)
            z = (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)) @ self.projection
            sim = z @ self.bank.T
            k = min(self.k, sim.shape[1])
            # k-th largest similarity per row without a full sort
            kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
            return (1.0 - kth).astype(np.float32)
        z = (self._checked(features) - self.mean) @ self.projection * self.scale
        # |z - m|^2 = |z|^2 - 2 z.m + |m|^2, minimum over the class means
        d2 = (z * z).sum(1, keepdims=True) - 2 * z @ self.bank.T + (self.bank**2).sum(1)
        return np.sqrt(np.maximum(d2.min(1), 0)).astype(np.float32)

    @property
    def rejects_nothing(self) -> bool:
        """Calibrated, but on too few held-out images to reject anything (threshold = inf)."""
        return self.threshold is not None and not math.isfinite(self.threshold)

    def is_unknown(self, scores: np.ndarray) -> np.ndarray:
        """Boolean (N,): scores above the calibrated threshold."""
        if self.threshold is None:
            raise OpenSetError("this open-set score is not calibrated: call calibrated() first")
        return np.asarray(scores) > self.threshold

    def calibrated(
        self, heldout_scores: np.ndarray, unknown_rate: float = DEFAULT_UNKNOWN_RATE
    ) -> OpenSetScorer:
        """A copy whose threshold rejects `unknown_rate` of these held-out in-distribution scores."""
        threshold = calibrate_threshold(heldout_scores, unknown_rate)
        heldout = np.asarray(heldout_scores, np.float64)
        info = {
            **self.info,
            "unknown_rate": unknown_rate,
            "calibration_images": len(heldout),
            "calibration_rejected": float((heldout > threshold).mean()),
        }
        if not math.isfinite(threshold):
            need = math.ceil(1 / unknown_rate) - 1 if unknown_rate > 0 else None
            info["calibration_note"] = (
                f"{len(heldout)} held-out images are too few to reject {unknown_rate:.0%}"
                + (f" (needs {need})" if need else "")
                + ": nothing is rejected; ood_score is still reported"
            )
        return replace(self, threshold=threshold, info=info)

    def _checked(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise OpenSetError(
                f"expected features of shape (N, {self.feature_dim}), got {tuple(x.shape)}"
            )
        return x

    # -- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON part (what a card records): method, parameters and the operating point."""
        return {
            "method": self.method,
            "k": self.k,
            "dims": int(self.projection.shape[1]),
            "bank": int(self.bank.shape[0]),
            # JSON has no infinity: a scorer calibrated to reject nothing says so instead.
            "threshold": None if self.rejects_nothing else self.threshold,
            "rejects": not self.rejects_nothing,
            **self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one `.npz` (arrays + a JSON header, no pickle), atomically."""
        import io

        from lensflow.io import atomic_write_bytes

        header = {"format": FORMAT, "version": FORMAT_VERSION, **self.to_dict()}
        buf = io.BytesIO()
        np.savez(
            buf,
            header=np.array(json.dumps(header)),
            mean=self.mean,
            projection=self.projection,
            bank=self.bank,
            scale=self.scale,
        )
        return atomic_write_bytes(Path(path), buf.getvalue())


def load_scorer(path: str | os.PathLike[str]) -> OpenSetScorer:
    """Read a scorer written by `OpenSetScorer.save`."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k].astype(np.float32) for k in ("mean", "projection", "bank", "scale")}
    except (OSError, ValueError, KeyError) as e:
        raise OpenSetError(f"cannot read open-set statistics {path}: {e}") from e
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise OpenSetError(f"{path} is not a version-{FORMAT_VERSION} {FORMAT} file")
    if header.get("method") not in METHODS:
        raise OpenSetError(f"{path}: unknown open-set method {header.get('method')!r}")
    known = {"format", "version", "method", "k", "dims", "bank", "threshold", "rejects"}
    threshold = header.get("threshold")
    if threshold is None and header.get("rejects") is False:
        threshold = math.inf
    return OpenSetScorer(
        method=header["method"],
        k=int(header.get("k", 1)),
        threshold=threshold,
        info={k: v for k, v in header.items() if k not in known},
        **arrays,
    )


def fit_scorer(
    features: np.ndarray,
    labels: np.ndarray | None = None,
    method: str = "knn",
    k: int = 1,
    dims: int = 256,
    max_bank: int = 4096,
    seed: int = 0,
) -> OpenSetScorer:
    """Statistics of `features` (N, D): any feature matrix, labels optional.

    `dims` principal directions are kept (fewer when N or D is smaller); the knn bank keeps at
    most `max_bank` rows (a seeded sample, stratified by label when labels are given).
    """
    x = np.asarray(features, dtype=np.float64)
    if method not in METHODS:
        raise OpenSetError(f"unknown open-set method {method!r}; use one of {', '.join(METHODS)}")
    if x.ndim != 2 or len(x) < 2:
        raise OpenSetError(f"need a feature matrix with at least 2 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise OpenSetError("features contain NaN or infinite values")
    if k < 1 or dims < 1 or max_bank < 1:
        raise OpenSetError(f"k, dims and max_bank must be >= 1, got {k}, {dims}, {max_bank}")
    y = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels)
    if y.shape != (len(x),):
        raise OpenSetError(f"labels must have one entry per feature row ({len(x)}), got {y.shape}")
    if method == "knn":
        # cosine geometry: unit rows, no centring (the decomposition is of the unit rows)
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
        mean = np.zeros(x.shape[1])
        centred = x
    elif method == "mahalanobis":
        # A shared covariance: centre each class on its own mean before the decomposition.
        mean = x.mean(0)
        classes = np.unique(y)
        means = np.stack([x[y == c].mean(0) for c in classes])
        centred = x - means[np.searchsorted(classes, y)]
    # Directions from at most PCA_ROWS rows: the top few hundred are stable by then, and the
    # decomposition's cost grows with the square of the rows.
    directions, variances = _principal_directions(centred[sample_rows(y, PCA_ROWS, seed)], dims)
    info: dict[str, Any] = {"fitted_on": len(x)}
    if method == "knn":
        bank = x[sample_rows(y, max_bank, seed)] @ directions
        scale = np.ones(directions.shape[1])
    else:
        # Shrink the smallest variances towards the mean one: estimated from few images they are
        # too small, and dividing by them would let noise dominate the distance.
        variances = variances + 0.1 * variances.mean()
        scale = 1.0 / np.sqrt(variances)
        bank = ((means - mean) @ directions) * scale
    return OpenSetScorer(
        method=method,
        mean=mean.astype(np.float32),
        projection=directions.astype(np.float32),
        bank=bank.astype(np.float32),
        scale=scale.astype(np.float32),
        k=k,
        info=info,
    )


def calibrate_threshold(scores: np.ndarray, unknown_rate: float = DEFAULT_UNKNOWN_RATE) -> float:
    """The score above which at most `unknown_rate` of new in-distribution images should lie.

    Split-conformal rank: the ceil((n + 1)(1 - rate))-th smallest held-out score, which keeps the
    promise for a new image whatever n is. With too few held-out images (n + 1 < 1 / rate) no
    held-out score keeps it: the threshold is infinite and nothing is rejected, rather than the
    largest held-out score, which would reject about 1 / (n + 1) of the user's own photos.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if not 0 <= unknown_rate < 1:
        raise OpenSetError(f"unknown rate must be in [0, 1), got {unknown_rate}")
    if len(s) == 0 or not np.isfinite(s).all():
        raise OpenSetError("calibration needs at least one finite held-out score")
    rank = math.ceil((len(s) + 1) * (1 - unknown_rate) - 1e-9)
    if rank > len(s):
        return math.inf
    return float(s[rank - 1])


def _principal_directions(centred: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(D, d) top principal directions and their variances; d = min(dims, N - 1, D).

    An eigendecomposition of the smaller of the Gram (N x N) and covariance (D x D) matrices:
    several times faster than an SVD of the data, with the same directions.
    """
    c = centred.astype(np.float64)
    n = len(c)
    d = max(1, min(dims, n - 1, c.shape[1]))
    if n <= c.shape[1]:
        w, u = np.linalg.eigh(c @ c.T)
        w, u = w[::-1][:d], u[:, ::-1][:, :d]
        vectors = c.T @ u / np.sqrt(np.maximum(w, 1e-12))
    else:
        w, v = np.linalg.eigh(c.T @ c)
        w, vectors = w[::-1][:d], v[:, ::-1][:, :d]
    variances = np.maximum(w, 0) / max(n - 1, 1)
    return vectors, np.maximum(variances, 1e-12)


def sample_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """All rows when there are at most n, else a seeded sample of n keeping each label's share."""
    if len(labels) <= n:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    values, counts = np.unique(labels, return_counts=True)
    share = n * counts / len(labels)
    take = np.floor(share).astype(np.int64)
    # largest remainders get the rows that rounding down left over
    take[np.argsort(take - share)[: n - take.sum()]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == v), t, replace=False)
        for v, t in zip(values, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))
