"""Defaults that fit the data: the `auto` augmentation policy and the mirror test behind it.

Photos (median side >= 64 px) keep SageMaker's `crop_color` (random crop, mirror, colour).
Small images — digits, glyphs, 28x28 clothing — get `shift` (scale, rotation, shift; a 35 %
crop of a 28 px digit no longer shows the digit), plus the mirror (`shift_flip`) only when a
mirrored image still looks like its class. Colour jitter only ever touches 3-channel images.

The mirror test needs no model: a nearest-class-mean classifier fitted on the training images
classifies the validation images and their mirror images. Digits lose about half of their
accuracy when mirrored (a mirrored 3 is no 3); clothing silhouettes keep nearly all of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lensflow.train.data import TrainData

PHOTO_SIDE = 64  # px: the median shorter side from which images count as photos (as auto mode)
# Mirror augmentation stays when mirrored validation images keep this share of the plain
# nearest-class-mean accuracy (MNIST t10k: 0.57; clothing-small at 28 px grey: 1.03).
MIRROR_KEEPS = 0.9
SAMPLE = 300  # images per class for the class means, and in total for the test


def median_side(data: TrainData) -> float:
    sides = [min(r.width, r.height) for r in data.dataset.records]
    return float(np.median(sides)) if sides else float(PHOTO_SIDE)


def mirror_test(data: TrainData, seed: int = 0) -> dict[str, float]:
    """Nearest-class-mean accuracy of validation images, plain and mirrored."""
    rng = np.random.default_rng(seed)
    labels = data.labels
    picked = [rng.permutation(data.train_idx[labels[data.train_idx] == c])[:SAMPLE]
              for c in range(len(data.classes))]  # fmt: skip
    present = [c for c, rows in enumerate(picked) if len(rows)]
    means = np.stack([_flat(data, picked[c]).mean(0) for c in present])
    val = np.sort(rng.permutation(data.val_idx)[: SAMPLE * 4])
    x, y = _flat(data, val, keep_shape=True), labels[val]

    def accuracy(images: np.ndarray) -> float:
        flat = images.reshape(len(images), -1)
        d = (flat**2).sum(1)[:, None] - 2 * flat @ means.T + (means**2).sum(1)[None]
        return float((np.asarray(present)[d.argmin(1)] == y).mean())

    plain, mirrored = accuracy(x), accuracy(x[:, :, ::-1])
    return {"plain": round(plain, 4), "mirrored": round(mirrored, 4),
            "ratio": round(mirrored / max(plain, 1e-9), 4)}  # fmt: skip


def _flat(data: TrainData, rows: np.ndarray, keep_shape: bool = False) -> np.ndarray:
    x = data.images(np.sort(rows))  # (N, H, W, C) uint8
    step = max(1, x.shape[1] // 32)  # a coarse 32 px view is enough for class means
    x = x[:, ::step, ::step].astype(np.float32) / 255
    return x if keep_shape else x.reshape(len(x), -1)


def resolve_augmentation(requested: str, data: TrainData, seed: int) -> tuple[str, dict[str, Any]]:
    """(concrete augmentation_type, why) for `requested`; only `auto` is decided here."""
    if requested != "auto":
        return requested, {"policy": requested, "chosen_by": "configuration"}
    side = median_side(data)
    if side >= PHOTO_SIDE:
        return "crop_color", {"policy": "crop_color", "chosen_by": f"auto: photos ({side:.0f} px)"}
    test = mirror_test(data, seed)
    policy = "shift_flip" if test["ratio"] >= MIRROR_KEEPS else "shift"
    why = (f"auto: small images ({side:.0f} px); mirrored validation images keep "
           f"{test['ratio']:.0%} of the nearest-class-mean accuracy "
           f"({'>=' if policy == 'shift_flip' else '<'} {MIRROR_KEEPS:.0%})")  # fmt: skip
    return policy, {"policy": policy, "chosen_by": why, "mirror_test": test}


def mirror_choice(plain: float, mirror: float) -> dict[str, Any]:
    """Keep mirror test-time averaging only when it beats the plain image (ties: plain, which
    costs half the inference)."""
    return {
        "kept": mirror > plain,
        "chosen_by": "validation accuracy with and without the mirror image",
        "val_accuracy_plain": round(plain, 4),
        "val_accuracy_mirror": round(mirror, 4),
    }
