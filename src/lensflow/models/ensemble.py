"""EfficientNet-Lite0 + Lite2 as one frozen feature extractor: the default for finetune on a CPU.

Why this and not fine-tuning: on clothing-small, fine-tuning Lite0's last blocks on a 2-core CPU
never beat the linear probe it started from (88.6 %). What did add accuracy, each measured on
train cross-validation and on validation (bench/train_accuracy.py, BENCHMARKS.md):
- two ImageNet networks instead of one (their errors differ): about +1.5 points;
- pooled outputs of the last three stages next to the head, each L2-normalised: about +0.5;
- the whole photo (letterboxed) next to its centre square: about +1 point; a centre crop alone
  cuts off collars, hems and sleeves;
- the mirror image averaged in: about +0.5.

One input serves every view, so export, the Predictor and every inference path stay unchanged:
a photo letterboxed into a 352 x 352 square (`Preprocess(crop="pad")`). The centre 264 x 264 of
that square is the centre square of a 3:4 photo (portrait or landscape), the usual clothing
framing. Both networks see both views, each with its mirror image; the features of the views are
averaged per network and the two networks' features are concatenated (3,864 values).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lensflow.models.efficientnet import EfficientNetLite, build_lite0
from lensflow.models.registry import ModelInfo, register_model
from lensflow.preprocess import LITE_MEAN_STD, Preprocess

INPUT = 352
# 264 of 352: the centre square of a 3:4 photo letterboxed into the input
CROP_NUM, CROP_DEN = 3, 4
MEMBERS = ("lite0", "lite2")

ENSEMBLE_PREPROCESS = Preprocess(
    input_size=INPUT,
    resize=INPUT,
    crop="pad",
    mean=LITE_MEAN_STD[0],
    std=LITE_MEAN_STD[1],
    interpolation="bicubic",
)


class LiteEnsemble(nn.Module):
    """Frozen-feature ensemble with one linear head (`_fc`), the registry's model contract."""

    head_keys = ("_fc.weight", "_fc.bias")
    # The trainer runs the features once (ONNX Runtime) and fits the head with a probe instead of
    # backpropagating through two networks, which a CPU cannot afford.
    frozen_features_on_cpu = True

    def __init__(
        self,
        members: list[EfficientNetLite],
        num_classes: int,
        dropout: float = 0.0,
        flip_tta: bool = True,
    ) -> None:
        super().__init__()
        for m in members:
            m._fc = nn.Identity()  # ImageNet heads are never used; keep checkpoints small
        self.members = nn.ModuleList(members)
        self.taps = [m.stage_ends(3) for m in members]
        self.flip_tta = flip_tta
        dim = sum(
            sum(m._blocks[i]._block_args.output_filters for i in taps) + m._conv_head.out_channels
            for m, taps in zip(members, self.taps)
        )
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(dim, num_classes)

    @property
    def feature_dim(self) -> int:
        return self._fc.in_features

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        side = x.shape[-1]
        crop = side * CROP_NUM // CROP_DEN  # integer ops: traced into the graph, not constants
        lo = (side - crop) // 2
        views = [x, x[:, :, lo : lo + crop, lo : lo + crop]]
        if self.flip_tta:
            # One call per view size with the mirror images in the same batch.
            return [torch.cat([v, v.flip(3)]) for v in views]
        return views

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        per_member = []
        for m, taps in zip(self.members, self.taps):
            feats = [m.forward_pyramid(v, taps) for v in self.views(x)]
            stacked = torch.cat([f.reshape(-1, n, f.shape[1]) for f in feats])
            per_member.append(stacked.mean(0))
        return torch.cat(per_member, 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_ensemble(
    num_classes: int, pretrained: bool = True, dropout: float = 0.0, flip_tta: bool = True
) -> LiteEnsemble:
    members = [build_lite0(1000, pretrained, dropout=0.0, variant=v).eval() for v in MEMBERS]
    return LiteEnsemble(members, num_classes, dropout=dropout, flip_tta=flip_tta)


def _build(num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    return build_ensemble(num_classes, pretrained, **kwargs)


register_model(
    ModelInfo(
        name="efficientnet_lite_ensemble",
        family="ensemble",
        preprocess=ENSEMBLE_PREPROCESS,
        feature_dim=3864,
        pretrained_available=True,
        description=(
            "EfficientNet-Lite0 + Lite2, whole photo + centre view, mirror-averaged, "
            "multi-stage features (8.2 M params, 352 px letterbox); finetune's CPU default"
        ),
        default_kwargs={"dropout": 0.0, "flip_tta": True},
        builder=_build,
    )
)
