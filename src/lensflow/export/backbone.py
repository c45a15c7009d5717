"""A feature bundle of a pretrained backbone with no trained head, for training-free matching.

`lensflow match` embeds photos through the Predictor's "features" output; it needs a bundle even
when nobody has trained a run. This builds one from the registry's ImageNet weights (its logits are
the 1000 ImageNet classes, labelled `imagenet_0000` ...) and caches it, so it is built once per
machine and lensflow version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensflow import __version__
from lensflow.bundle import cache_dir, read_bundle
from lensflow.errors import ExportError, LensflowError
from lensflow.preprocess import Preprocess

IMAGENET_CLASSES = 1000


def backbone_bundle_path(model_name: str) -> Path:
    return cache_dir() / "bundles" / f"{model_name}-imagenet-{__version__}"


def parity_images(preprocess: Preprocess, n: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth synthetic photos-like inputs (no dataset is at hand when building a backbone).

    Low-frequency colour fields upsampled bicubically, so activations look like those of real
    images rather than of white noise; the parity check is the same as for a trained export.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    imgs = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        big = Image.fromarray(small).resize((preprocess.resize, preprocess.resize), Image.BICUBIC)
        imgs.append(preprocess(big))
    return np.stack(imgs).astype(np.float32)


def backbone_bundle(model_name: str = "efficientnet_lite0", quiet: bool = True) -> Path:
    """Path of the cached ImageNet feature bundle of `model_name`, building it on first use."""
    target = backbone_bundle_path(model_name)
    if (target / "card.json").is_file():
        try:
            read_bundle(target)
            return target
        except LensflowError:
            pass  # a broken cache entry is rebuilt below
    from lensflow.export.exporter import export_model
    from lensflow.models import create_model, get_model_info

    info = get_model_info(model_name)
    if not info.pretrained_available:
        raise ExportError(
            f"{model_name} has no pretrained weights, so it has no useful backbone features; "
            "use a model with ImageNet weights (e.g. efficientnet_lite0) or export a trained run"
        )
    model = create_model(model_name, IMAGENET_CLASSES, pretrained=True).eval()
    preprocess = model.preprocess
    classes = [f"imagenet_{i:04d}" for i in range(IMAGENET_CLASSES)]
    card = {
        "model": model_name,
        "purpose": "backbone features (ImageNet head, untrained for any lensflow dataset)",
        "metrics": {},
        "dataset_hash": None,
        "train_config": None,
    }
    return export_model(
        model,
        classes,
        preprocess,
        target,
        parity_images(preprocess),
        card=card,
        overwrite=True,
        quiet=quiet,
    )
