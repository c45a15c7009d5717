"""cnn1, cnn3, cnn4: the small Keras CNNs of the Fashion-MNIST tutorial, for from-scratch baselines.

Same layers, widths, dropout and batch-norm placement as the Keras originals ('valid' 3x3 convs,
ReLU, 2x2 max-pools, softmax head); sized for 28x28 grey images by default (`image_size`,
`in_channels` change that). `forward_features` is the last hidden dense layer.

    cnn1: conv32 - pool - drop.2 - dense128 - head
    cnn3: conv32 - pool - drop.25 - conv64 - pool - drop.25 - conv128 - drop.4 - dense128 - drop.3 - head
    cnn4: conv32 - bn - conv32 - bn - pool - drop.25 - conv64 - bn - drop.25 - conv128 - bn - pool
          - drop.25 - dense512 - bn - drop.5 - dense128 - bn - drop.5 - head
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lensflow.errors import ModelError
from lensflow.models.registry import ModelInfo, register_model
from lensflow.preprocess import Preprocess


def _conv(cin: int, cout: int, bn: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True), *([nn.BatchNorm2d(cout)] if bn else [])]


def _dense(cin: int, cout: int, bn: bool = False) -> list[nn.Module]:
    return [nn.Linear(cin, cout), nn.ReLU(inplace=True), *([nn.BatchNorm1d(cout)] if bn else [])]


def _layers(name: str, c: int) -> tuple[list[nn.Module], list[tuple[int, bool, float]]]:
    """Conv part, and the dense part as (width, batch norm, dropout after) triples."""
    if name == "cnn1":
        return [*_conv(c, 32), nn.MaxPool2d(2), nn.Dropout(0.2)], [(128, False, 0.0)]
    if name == "cnn3":
        conv = [
            *_conv(c, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
            *_conv(32, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
            *_conv(64, 128), nn.Dropout(0.4),
        ]  # fmt: skip
        return conv, [(128, False, 0.3)]
    conv = [
        *_conv(c, 32, True), *_conv(32, 32, True), nn.MaxPool2d(2), nn.Dropout(0.25),
        *_conv(32, 64, True), nn.Dropout(0.25),
        *_conv(64, 128, True), nn.MaxPool2d(2), nn.Dropout(0.25),
    ]  # fmt: skip
    return conv, [(512, True, 0.5), (128, True, 0.5)]


class KerasCNN(nn.Module):
    head_keys = ("fc.weight", "fc.bias")
    # Average features over the image and its mirror. Off while training; the trainer turns it
    # on only when it measures a gain on the validation split (never for digits).
    flip_tta: bool = False

    def __init__(self, name: str, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        conv, dense = _layers(name, in_channels)
        self.conv = nn.Sequential(*conv, nn.Flatten())
        # He-normal init on the first conv, as in the Keras tutorial
        nn.init.kaiming_normal_(conv[0].weight, nonlinearity="relu")
        with torch.no_grad():
            try:
                flat = self.conv(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
            except RuntimeError as e:
                raise ModelError(f"{name} needs image_size >= 28 or so, got {image_size}") from e
        layers: list[nn.Module] = []
        width = flat
        for out, bn, drop in dense:
            layers += _dense(width, out, bn)
            if drop:
                layers.append(nn.Dropout(drop))
            width = out
        self.dense = nn.Sequential(*layers)
        self.feature_dim = width
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta:
            return (self.dense(self.conv(x)) + self.dense(self.conv(x.flip(3)))) / 2
        return self.dense(self.conv(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _preprocess(kw: dict[str, Any]) -> Preprocess:
    size, ch = int(kw["image_size"]), int(kw["in_channels"])
    # Keras tutorial scaling: pixel / 255
    return Preprocess(size, size, "none", (0.0,) * ch, (255.0,) * ch, "bilinear", ch)


def _register(name: str, convs: int, dim: int) -> None:
    defaults = {"in_channels": 1, "image_size": 28, "flip_tta": False}

    def build(
        num_classes: int, pretrained: bool, in_channels: int, image_size: int, flip_tta: bool
    ) -> nn.Module:
        model = KerasCNN(name, num_classes, in_channels, image_size)
        model.flip_tta = flip_tta
        return model

    register_model(
        ModelInfo(
            name=name,
            family="cnn",
            preprocess=_preprocess(defaults),
            feature_dim=dim,
            pretrained_available=False,
            description=f"Keras Fashion-MNIST tutorial CNN, {convs} conv layer(s), 28x28 grey, random init",
            default_kwargs=defaults,
            preprocess_fn=_preprocess,
            builder=build,
        )
    )


_register("cnn1", 1, 128)
_register("cnn3", 3, 128)
_register("cnn4", 4, 128)
