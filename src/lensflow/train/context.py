"""What every training mode shares: the run context, the model choice, class weights.

`run.py` dispatches to the modes (quick, loop, auto, tasks); they import from here, never from
`run.py`, so the package has no import circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lensflow.data import Dataset, load_dataset
from lensflow.errors import ConfigError
from lensflow.models import create_model, get_model_info
from lensflow.progress import console
from lensflow.train.config import TrainConfig
from lensflow.train.data import TrainData, load_train_data
from lensflow.train.policy import resolve_augmentation


@dataclass
class RunContext:
    config: TrainConfig
    model: nn.Module
    data: TrainData
    stage: Path  # the partial run directory being written
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)  # warnings shown and stored in the card
    choices: dict[str, Any] = field(default_factory=dict)  # defaults decided from the data (card)

    def warn(self, message: str) -> None:
        self.notes.append(message)
        if not self.config.quiet:
            console.print(f"[yellow]warning:[/] {message}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


DEFAULT_MODEL = "efficientnet_lite0"
ENSEMBLE_MODEL = "efficientnet_lite_ensemble"
# Images per second through the ensemble's features (framing window and its mirror, ONNX Runtime)
# on a 2-core laptop CPU; a slower machine simply falls back to Lite0 sooner.
ENSEMBLE_IMAGES_PER_S = 16.0


def default_model(config: TrainConfig, mode: str, n_images: int) -> str:
    """The model when --model is not given.

    finetune on a CPU: the Lite0 + Lite2 ensemble when its one pass over the images fits in
    70 % of the time budget (the rest is the probe and the run files), else Lite0 with its cached
    tail fine-tuning. Every other mode, and CUDA (full fine-tuning), starts from Lite0.
    """
    if mode != "finetune" or torch.cuda.is_available():
        return DEFAULT_MODEL
    seconds = n_images / ENSEMBLE_IMAGES_PER_S
    return ENSEMBLE_MODEL if seconds <= 0.7 * config.time_budget else DEFAULT_MODEL


def resolve_model(
    config: TrainConfig, mode: str, dataset: Dataset
) -> tuple[str, dict[str, Any], bool]:
    """(registry name, model kwargs, pretrained) from the config's SageMaker-style knobs."""
    name = config.model or default_model(config, mode, images_to_embed(config, dataset))
    if name == "resnet" or (config.num_layers and name.startswith("resnet")):
        name = f"resnet{config.num_layers or 18}"
    info = get_model_info(name)
    kwargs: dict[str, Any] = {}
    chw = config.image_chw()
    if chw is not None:
        if "image_size" in info.default_kwargs:
            kwargs.update(in_channels=chw[0], image_size=chw[1])
        elif (chw[0], chw[1]) != (info.preprocess.channels, info.preprocess.input_size):
            raise ConfigError(
                f"{name} takes image_shape {info.preprocess.channels},"
                f"{info.preprocess.input_size},{info.preprocess.input_size} only; "
                f"got {config.image_shape!r}"
            )
    if info.family == "efficientnet" and mode == "quick":
        # Frozen features: the banded stage pyramid, +1.9 points (CV) over head + last block.
        kwargs.update(flip_tta=config.flip_tta, pyramid="bands")
    elif info.family == "efficientnet":
        # Tail fine-tuning trains the last blocks, so its features are the head + last block:
        # mirror averaging + the pooled last block add ~2 points over the plain head.
        kwargs.update(flip_tta=config.flip_tta, multiscale=True)
    elif info.family == "ensemble":
        from lensflow.models.ensemble import framing_of

        sizes = [(r.width, r.height) for r in dataset.records]
        kwargs.update(flip_tta=config.flip_tta, framing=framing_of(sizes))
    pretrained = config.use_pretrained_model and mode != "scratch"
    if pretrained and not info.pretrained_available and config.weights is None and mode == "quick":
        raise ConfigError(
            f"quick mode trains only a head on frozen features, and {name} has no pretrained "
            f"weights; use --mode scratch, --weights PATH or --model {DEFAULT_MODEL}"
        )
    return name, kwargs, pretrained


def class_weights(data: TrainData) -> np.ndarray:
    """Inverse class frequency, normalised to mean 1 (classes without images get 0)."""
    counts = np.bincount(data.labels[data.train_idx], minlength=len(data.classes)).astype(float)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(counts), 0.0)
    return w / w[counts > 0].mean()


def images_to_embed(config: TrainConfig, dataset: Dataset) -> int:
    """How many images a frozen-feature run computes features for (train sample + validation)."""
    records = dataset.records
    if not config.limit_per_class:
        return len(records)
    classes = {r.label for r in records}
    val = sum(r.split == "validation" for r in records)
    return min(len(records), config.limit_per_class * len(classes) + val)


def make_context(config: TrainConfig, mode: str, stage: Path) -> RunContext:
    dataset = load_dataset(config.dataset)
    name, kwargs, pretrained = resolve_model(config, mode, dataset)
    preprocess = get_model_info(name).preprocess_for(**kwargs)
    data = load_train_data(config, preprocess, dataset)
    torch.manual_seed(config.seed)  # the same initial head/weights in every process
    model = create_model(
        name, len(data.classes), pretrained=pretrained, weights=config.weights, **kwargs
    )
    choices: dict[str, Any] = {}
    if mode != "quick":  # quick mode trains on unaugmented features
        augmentation, choices["augmentation"] = resolve_augmentation(
            config.augmentation_type, data, config.seed
        )
        config = replace(config, augmentation_type=augmentation)
    ctx = RunContext(replace(config, mode=mode, model=name), model, data, stage, choices=choices)
    for note in data.warnings:
        ctx.warn(note)
    return ctx
