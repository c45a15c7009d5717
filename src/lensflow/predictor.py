"""The one Predictor: a bundle (model.onnx + labels + preprocess.json) run by onnxruntime.

Every inference path (CLI predict, the server, the live loop, pairing/match) goes through this
class, so preprocessing is always exactly the bundle's. It imports numpy, PIL and onnxruntime
only: never torch (a test checks this in a fresh interpreter).

    from lensflow.predictor import Predictor
    p = Predictor.from_bundle("bundle/")
    p.predict(["shirt.jpg"], top_k=3)[0].label
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.bundle import OPENSET_FILE, Bundle, read_bundle
from lensflow.errors import BundleError, OpenSetError
from lensflow.openset import OpenSetScorer, load_scorer
from lensflow.preprocess import ImageInput, Preprocess

# Images per onnxruntime call. Small chunks keep a conv net's activations in cache: on the 2-core
# bench machine EfficientNet-Lite0 fp32 ran 390 img/s in chunks of 4 vs 283 img/s as one batch of
# 32 (bench/predictor_latency.py). Callers may pass any number of images; they are chunked.
DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float  # 0..1
    index: int
    top_k: list[tuple[str, float]] = field(default_factory=list)
    # Open-set: `unknown` when the image looks like none of the classes (the bundle's calibrated
    # score; always False for bundles without one, whose `ood_score` is None). `label` stays
    # the nearest class either way.
    unknown: bool = False
    ood_score: float | None = None  # higher = more unusual

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probability": self.probability,
            "index": self.index,
            "top_k": [{"label": lab, "probability": p} for lab, p in self.top_k],
            "unknown": self.unknown,
            "ood_score": self.ood_score,
        }

    def _repr_html_(self) -> str:  # Jupyter: label (or "unknown") and top-k bars
        from lensflow.display import prediction_html

        return prediction_html(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def default_threads() -> int:
    """All cores this process may use (respects CPU affinity, e.g. `taskset` or cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Predictor:
    """Classify and embed images with a bundle; thread-safe (onnxruntime sessions are)."""

    def __init__(
        self,
        bundle: Bundle,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        import onnxruntime as ort

        if threads is not None and threads < 1:
            raise BundleError(f"threads must be >= 1, got {threads}")
        if batch_size < 1:
            raise BundleError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = bundle
        self.threads = threads or default_threads()
        self.batch_size = batch_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        # One graph runs at a time per call; parallelism is inside each operator.
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
        try:
            self.session = ort.InferenceSession(
                str(bundle.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"cannot load {bundle.model_path}: {e}") from e
        outputs = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["input"] or "logits" not in outputs or "features" not in outputs:
            raise BundleError(
                f"{bundle.model_path} has inputs {inputs} and outputs {outputs}; a lensflow "
                "bundle needs input 'input' and outputs 'logits' and 'features' "
                "(re-export it with `lensflow export`)"
            )
        self.open_set = _load_open_set(bundle)

    @classmethod
    def from_bundle(
        cls,
        path: str | os.PathLike[str],
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Predictor:
        """Load a bundle directory (or a single-file `.tar.gz` archive made by `--archive`)."""
        return cls(read_bundle(path), threads=threads, batch_size=batch_size)

    # -- what the bundle says --------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    @property
    def preprocess(self) -> Preprocess:
        return self.bundle.preprocess

    @property
    def card(self) -> dict[str, Any]:
        return self.bundle.card

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def version(self) -> str:
        return str(self.bundle.card.get("version", ""))

    # -- arrays in, arrays out -------------------------------------------------------------------
    def run_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (N, C), features (N, D)) for a preprocessed float32 NCHW batch, in chunks."""
        x = self._check_array(x)
        logits, feats = [], []
        for start in range(0, max(len(x), 1), self.batch_size):
            chunk = x[start : start + self.batch_size]
            lo, fe = self.session.run(["logits", "features"], {"input": chunk})
            logits.append(lo)
            feats.append(fe)
        return np.concatenate(logits).astype(np.float32), np.concatenate(feats).astype(np.float32)

    def classify_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, C), open-set scores (N,) or None without a score) for a batch."""
        if self.open_set is None:
            return self.predict_arrays(x), None
        logits, features = self.run_arrays(x)
        return softmax(logits), self.open_set.score(features)

    def is_unknown(self, ood_scores: np.ndarray | None) -> np.ndarray | None:
        """Boolean (N,) for scores from `classify_arrays` (None when the bundle has no score)."""
        if ood_scores is None or self.open_set is None:
            return None
        return self.open_set.is_unknown(ood_scores)

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) float32 for a preprocessed float32 NCHW batch."""
        x = self._check_array(x)
        out = [
            self.session.run(["logits"], {"input": x[s : s + self.batch_size]})[0]
            for s in range(0, max(len(x), 1), self.batch_size)
        ]
        return softmax(np.concatenate(out))

    def _check_array(self, x: np.ndarray) -> np.ndarray:
        p = self.preprocess
        want = (p.channels, p.input_size, p.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise BundleError(f"expected a float32 batch of shape (N, {want}), got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    # -- images in -------------------------------------------------------------------------------
    def preprocess_images(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Decode and preprocess exactly as the bundle says: float32 NCHW."""
        return self.preprocess.batch(_as_list(images))

    def predict_proba(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Class probabilities (N, C) float32 in label order, one row per image."""
        items = _as_list(images)
        if not items:
            return np.zeros((0, len(self.classes)), np.float32)
        # Decode a chunk at a time so a long list of paths never sits in memory as pixels.
        return np.concatenate(
            [
                self.predict_arrays(self.preprocess.batch(items[s : s + self.batch_size]))
                for s in range(0, len(items), self.batch_size)
            ]
        )

    def predict(
        self, images: Sequence[ImageInput] | ImageInput, top_k: int = 5
    ) -> list[Prediction]:
        """One Prediction per image: best label, its probability, the top-k labels and, when the
        bundle has an open-set score, whether the image is one of the classes at all."""
        items = _as_list(images)
        if self.open_set is None or not items:
            return self.decode(self.predict_proba(items), top_k)
        parts = [
            self.classify_arrays(self.preprocess.batch(items[s : s + self.batch_size]))
            for s in range(0, len(items), self.batch_size)
        ]
        proba = np.concatenate([p for p, _ in parts])
        scores = np.concatenate([o for _, o in parts if o is not None])
        return self.decode(proba, top_k, scores)

    def decode(
        self, proba: np.ndarray, top_k: int = 5, ood_scores: np.ndarray | None = None
    ) -> list[Prediction]:
        """Turn probabilities (and open-set scores) into Predictions (shared with the server)."""
        if top_k < 1:
            raise BundleError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, len(self.classes))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        unknown = self.is_unknown(ood_scores)
        preds = []
        for n, (row, idx) in enumerate(zip(proba, order, strict=True)):
            top = [(self.classes[i], float(row[i])) for i in idx]
            extra: dict[str, Any] = {}
            if unknown is not None and ood_scores is not None:
                extra = {"unknown": bool(unknown[n]), "ood_score": float(ood_scores[n])}
            preds.append(Prediction(top[0][0], top[0][1], int(idx[0]), top, **extra))
        return preds

    def embed(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Pooled backbone features (N, D) float32 (the bundle's "features" output)."""
        items = _as_list(images)
        if not items:
            out = next(o for o in self.session.get_outputs() if o.name == "features")
            dim = out.shape[-1]
            return np.zeros((0, dim if isinstance(dim, int) else 0), np.float32)
        return np.concatenate(
            [
                self.run_arrays(self.preprocess.batch(items[s : s + self.batch_size]))[1]
                for s in range(0, len(items), self.batch_size)
            ]
        )

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.path)!r}, classes={len(self.classes)}, "
            f"precision={self.card.get('precision')!r}, threads={self.threads})"
        )


def _load_open_set(bundle: Bundle) -> OpenSetScorer | None:
    """The bundle's open-set score, or None for bundles exported before it existed."""
    path = bundle.path / OPENSET_FILE
    if not path.is_file():
        return None
    try:
        scorer = load_scorer(path)
    except OpenSetError as e:
        raise BundleError(f"{e.message} (re-export the bundle with `lensflow export`)") from None
    if scorer.threshold is None:
        raise BundleError(f"{path} has no calibrated threshold (re-export the bundle)")
    return scorer


def _as_list(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    # A single image is accepted too; a numpy batch (N, H, W, C) is split into its images.
    if isinstance(images, list | tuple):
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images]  # type: ignore[list-item]
