"""Training data: the dataset's pack for the model's preprocessing, and seeded split indices.

Images are decoded once into the pack (`lensflow.data.ensure_packed`); training reads uint8 rows
from it, so no JPEG is decoded twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lensflow.data import Dataset, PackedReader, ensure_packed, load_dataset
from lensflow.errors import TrainError
from lensflow.preprocess import Preprocess
from lensflow.train.config import TrainConfig


@dataclass
class TrainData:
    dataset: Dataset
    reader: PackedReader
    preprocess: Preprocess  # the model's: what evaluation and inference will apply
    train_idx: np.ndarray  # rows of the pack
    val_idx: np.ndarray
    val_source: str  # "validation" or "held out N% of train (seed S)"
    warnings: list[str]

    @property
    def classes(self) -> list[str]:
        return self.reader.classes

    @property
    def labels(self) -> np.ndarray:
        return self.reader.labels

    def images(self, idx: np.ndarray) -> np.ndarray:
        """uint8 NHWC in the model's channel count (grey models get ITU-R 601 luma, as PIL 'L')."""
        return pack_images(self.reader, idx, self.preprocess.channels)


def pack_images(reader: PackedReader, idx: np.ndarray, channels: int = 3) -> np.ndarray:
    """Rows of a pack as uint8 NHWC with `channels` (1: ITU-R 601 luma, as PIL 'L')."""
    x, _ = reader.batch(idx)
    if channels == 1:
        luma = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        x = np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None]
    return x


def load_train_data(
    config: TrainConfig, preprocess: Preprocess, dataset: Dataset | None = None
) -> TrainData:
    """The pack and split indices; `dataset` when the caller has already loaded it."""
    dataset = dataset if dataset is not None else load_dataset(config.dataset)
    reader = ensure_packed(
        dataset,
        size=preprocess.input_size,
        resize=preprocess.resize,
        center_crop=preprocess.crop,
        workers=config.workers,
        interpolation=preprocess.interpolation,
        quiet=config.quiet,
    )
    train_idx, val_idx, val_source = split_rows(
        reader, config.seed, config.val_fraction, config.limit_per_class
    )
    notes = class_balance_warnings(reader.labels[train_idx], reader.classes)
    return TrainData(dataset, reader, preprocess, train_idx, val_idx, val_source, notes)


def split_rows(
    reader: PackedReader, seed: int, val_fraction: float, limit_per_class: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train rows, validation rows, where validation came from): the same for the same seed, so
    export can find exactly the images a run was trained and validated on."""
    rng = np.random.default_rng(seed)
    train_idx = reader.indices("train")
    val_idx = reader.indices("validation")
    val_source = "validation"
    if len(train_idx) == 0:
        train_idx = reader.indices("all")
    if len(train_idx) == 0:
        raise TrainError(
            f"{reader.path.parent.parent} has no train images; import a folder with train/ "
            "(and validation/) or class folders"
        )
    if len(val_idx) == 0:
        train_idx, val_idx = stratified_holdout(train_idx, reader.labels, val_fraction, rng)
        val_source = f"held out {val_fraction:.0%} of train (seed {seed})"
    if limit_per_class:
        train_idx = sample_per_class(train_idx, reader.labels, limit_per_class, rng)
    if len(val_idx) == 0:
        raise TrainError("no validation images: add a validation/ folder or more images per class")
    return train_idx, val_idx, val_source


def stratified_holdout(
    idx: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` per class: `fraction` (at least one image when a class has two) to validation."""
    train, val = [], []
    for c in np.unique(labels[idx]):
        rows = rng.permutation(idx[labels[idx] == c])
        n_val = round(len(rows) * fraction) if len(rows) > 1 else 0
        n_val = max(n_val, 1) if len(rows) > 1 else 0
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def sample_per_class(
    idx: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """A seeded sample of at most n rows of every class."""
    picked = [rng.permutation(idx[labels[idx] == c])[:n] for c in np.unique(labels[idx])]
    return np.sort(np.concatenate(picked))


def class_balance_warnings(train_labels: np.ndarray, classes: list[str]) -> list[str]:
    """Warn about classes that are absent or far rarer than the median class."""
    counts = np.bincount(train_labels, minlength=len(classes))
    median = float(np.median(counts))
    notes = []
    for name, n in zip(classes, counts):
        if n == 0:
            notes.append(f"class {name!r} has no training images: the model can never predict it")
        elif n < max(5.0, median / 5):
            notes.append(
                f"class {name!r} is under-represented ({n} training images, median {median:.0f}); "
                "add images or pass --class-weights auto"
            )
    return notes
