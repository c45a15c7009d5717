"""SageMaker-style ResNet: the pre-activation ResNet of MXNet's image-classification example.

SageMaker's built-in image classifier takes `num_layers` in {18, 34, 50, 101, 152} (ImageNet
style: 7x7 stem, max-pool, four stages) and {20, 32, 44, 56, 110} (small-image style: 3x3 stem,
three stages of 16/32/64 filters). Units are BN-ReLU-conv (pre-activation); the input passes a
batch norm first, as in MXNet's symbol. Random init: these have no offline weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lensflow.errors import ModelError
from lensflow.models.registry import ModelInfo, register_model
from lensflow.preprocess import IMAGENET_MEAN_STD, Preprocess

# num_layers -> units per stage (ImageNet style); >= 50 uses bottleneck units
IMAGENET_UNITS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
SMALL_LAYERS = (20, 32, 44, 56, 110)


class _Unit(nn.Module):
    """One pre-activation residual unit (basic or bottleneck), MXNet `residual_unit`."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        if bottleneck:
            mid = cout // 4
            self.body = nn.ModuleList(
                [
                    nn.Conv2d(cin, mid, 1, bias=False),
                    nn.BatchNorm2d(mid),
                    nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(mid),
                    nn.Conv2d(mid, cout, 1, bias=False),
                ]
            )
        else:
            self.body = nn.ModuleList(
                [
                    nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                ]
            )
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if (cin != cout or stride != 1) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.relu(self.bn1(x))
        short = self.shortcut(act) if self.shortcut is not None else x
        y = act
        for layer in self.body:
            # conv, bn, conv, (bn, conv): a ReLU follows every batch norm
            y = torch.relu(layer(y)) if isinstance(layer, nn.BatchNorm2d) else layer(y)
        return y + short


class ResNet(nn.Module):
    flip_tta: bool = False
    head_keys = ("fc.weight", "fc.bias")

    def __init__(self, num_layers: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if num_layers in IMAGENET_UNITS:
            units = IMAGENET_UNITS[num_layers]
            bottleneck = num_layers >= 50
            filters = [64, 256, 512, 1024, 2048] if bottleneck else [64, 64, 128, 256, 512]
            stem: list[nn.Module] = [
                nn.Conv2d(in_channels, filters[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(filters[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            ]
        elif num_layers in SMALL_LAYERS:
            units = [(num_layers - 2) // 6] * 3
            bottleneck = False
            filters = [16, 16, 32, 64]
            stem = [nn.Conv2d(in_channels, filters[0], 3, 1, 1, bias=False)]
        else:
            raise ModelError(
                f"num_layers must be one of {sorted(IMAGENET_UNITS)} (ImageNet style) or "
                f"{list(SMALL_LAYERS)} (small images), got {num_layers}"
            )
        self.stem = nn.Sequential(nn.BatchNorm2d(in_channels), *stem)
        stages = []
        for i, n in enumerate(units):
            blocks = [_Unit(filters[i], filters[i + 1], 1 if i == 0 else 2, bottleneck)]
            blocks += [_Unit(filters[i + 1], filters[i + 1], 1, bottleneck) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn_out = nn.BatchNorm2d(filters[-1])
        self.feature_dim = filters[-1]
        self.fc = nn.Linear(filters[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta:  # the mirror average; see KerasCNN.flip_tta
            return (self._features_once(x) + self._features_once(x.flip(3))) / 2
        return self._features_once(x)

    def _features_once(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_out(self.stages(self.stem(x))))
        return x.mean((2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _mean_std(channels: int, imagenet: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if channels == 3 and imagenet:
        return IMAGENET_MEAN_STD
    return (127.5,) * channels, (127.5,) * channels


def _preprocess(kw: dict[str, Any]) -> Preprocess:
    size, ch = int(kw["image_size"]), int(kw["in_channels"])
    mean, std = _mean_std(ch, True)
    if size > 64:  # ImageNet-style evaluation crop
        return Preprocess(size, round(size * 256 / 224), "center", mean, std, "bilinear", ch)
    return Preprocess(size, size, "none", mean, std, "bilinear", ch)


def _register(num_layers: int) -> None:
    small = num_layers in SMALL_LAYERS
    defaults = {"in_channels": 3, "image_size": 32 if small else 224, "flip_tta": False}

    def build(
        num_classes: int, pretrained: bool, in_channels: int, image_size: int, flip_tta: bool
    ) -> nn.Module:
        model = ResNet(num_layers, num_classes, in_channels)
        model.flip_tta = flip_tta
        return model

    dim = 64 if small else (2048 if num_layers >= 50 else 512)
    register_model(
        ModelInfo(
            name=f"resnet{num_layers}",
            family="resnet",
            preprocess=_preprocess(defaults),
            feature_dim=dim,
            pretrained_available=False,
            description=f"SageMaker-style pre-activation ResNet-{num_layers} "
            f"({'small images, 32 px' if small else 'ImageNet style, 224 px'}), random init",
            default_kwargs=defaults,
            preprocess_fn=_preprocess,
            builder=build,
        )
    )


for _n in (*IMAGENET_UNITS, *SMALL_LAYERS):
    _register(_n)
