"""Export stage: run -> bundle (ONNX + labels + preprocess + card), parity check, int8.

Light to import (no torch). The bundle layout itself (writer and reader) lives in `lensflow.bundle`.
"""

from __future__ import annotations

from pathlib import Path


def backbone_bundle(model_name: str = "efficientnet_lite0", quiet: bool = True) -> Path:
    """A cached feature bundle of the pretrained backbone (see `lensflow.export.backbone`)."""
    from lensflow.export.backbone import backbone_bundle as build

    return build(model_name, quiet=quiet)


__all__ = ["backbone_bundle"]
