"""A model's open-set score, fitted on the images its run was trained on.

Export (every model kind: the exported graph's own features, int8 included) and evaluate (runs)
share this: the run's training rows feed the statistics and its validation rows, which the
model never trained on, set the threshold. The rows are found again from the run's seed and
split settings (`split_rows`), so they are exactly the images training used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.data import PackedReader, ensure_packed
from lensflow.errors import LensflowError, OpenSetError
from lensflow.openset import DEFAULT_UNKNOWN_RATE, OpenSetScorer, fit_scorer, sample_rows
from lensflow.preprocess import Preprocess
from lensflow.progress import track
from lensflow.train.data import pack_images, split_rows

BATCH = 32


@dataclass(frozen=True)
class OpenSetImages:
    """Training rows (fitted) and held-out rows of the same classes (they set the threshold;
    never the images later judged), as pack rows at the model's preprocessing."""

    reader: PackedReader
    preprocess: Preprocess
    fit_rows: np.ndarray
    heldout_rows: np.ndarray
    heldout_source: str  # e.g. "validation"
    unknown_rate: float = DEFAULT_UNKNOWN_RATE

    def batches(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """Preprocessed float32 NCHW batches of these rows, as training saw them."""
        pp = self.preprocess
        for start in range(0, len(rows), BATCH):
            yield pp.normalize(pack_images(self.reader, rows[start : start + BATCH], pp.channels))


def open_set_images(
    dataset: str | Path,
    train_config: Any,
    preprocess: Preprocess,
    max_images: int = 4096,
    unknown_rate: float = DEFAULT_UNKNOWN_RATE,
    quiet: bool = False,
) -> OpenSetImages:
    """The run's training rows (a seeded, class-stratified sample of at most `max_images`) and
    its validation rows, split with the run's own seed and settings."""
    cfg = train_config or {}
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    try:
        reader = ensure_packed(
            dataset, size=preprocess.input_size, resize=preprocess.resize,
            center_crop=preprocess.crop, interpolation=preprocess.interpolation, quiet=quiet,
        )  # fmt: skip
        fit, heldout, source = split_rows(
            reader, int(cfg.get("seed", 0)), float(cfg.get("val_fraction", 0.2)),
            int(cfg.get("limit_per_class") or 0),
        )  # fmt: skip
    except LensflowError as e:
        raise OpenSetError(f"cannot fit the open-set score on {dataset}: {e.message}") from None
    fit = fit[sample_rows(reader.labels[fit], max_images)]
    return OpenSetImages(reader, preprocess, fit, heldout, source, unknown_rate)


def fit_open_set(
    features: Callable[[np.ndarray], np.ndarray], images: OpenSetImages, quiet: bool = False
) -> OpenSetScorer:
    """Fit on `features(batch)` of the training rows, calibrate on the held-out rows."""

    def run(rows: np.ndarray, what: str) -> np.ndarray:
        total = -(-len(rows) // BATCH)
        batches = track(images.batches(rows), what, total=total, unit="batch", quiet=quiet)
        return np.concatenate([features(x) for x in batches])

    labels = images.reader.labels[images.fit_rows]
    scorer = fit_scorer(run(images.fit_rows, "open-set statistics"), labels)
    heldout = scorer.score(run(images.heldout_rows, "open-set calibration"))
    scorer = scorer.calibrated(heldout, images.unknown_rate)
    return dataclasses.replace(
        scorer, info={**scorer.info, "calibration_source": images.heldout_source}
    )
