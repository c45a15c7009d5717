"""Static int8 QDQ export calibrated on real images, and the cached backbone feature bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensflow.export.exporter import export_model, preprocess_paths
from lensflow.predictor import Predictor


@pytest.fixture(scope="module")
def lite0():
    import torch

    from lensflow.models import create_model

    torch.manual_seed(0)
    return create_model("efficientnet_lite0", 5, pretrained=True).eval()


def test_int8_bundle_is_static_qdq_per_channel_and_agrees_with_fp32(lite0, sample_folder, tmp_path):
    import onnx

    train = sorted((sample_folder / "train").rglob("*.jpg"))[::2][:24]
    val = sorted((sample_folder / "validation").rglob("*.jpg"))[:8]
    calib = preprocess_paths(lite0.preprocess, train, "calib", quiet=True)
    parity = preprocess_paths(lite0.preprocess, val, "parity", quiet=True)
    classes = ["dress", "hat", "pants", "shoes", "t-shirt"]
    out = export_model(
        lite0, classes, lite0.preprocess, tmp_path / "b8", parity, calibration_x=calib, quiet=True
    )

    p8 = Predictor.from_bundle(out)
    assert p8.card["precision"] == "int8"
    assert p8.card["quantization"]["calibration_images"] == 24
    assert not (out / "model.fp32.onnx").exists()
    graph = onnx.load(str(out / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format, not QOperator/dynamic
    assert "DynamicQuantizeLinear" not in ops
    # per-channel: the dequantised conv weights carry one scale per output channel
    scale_dims = [
        list(i.dims)
        for i in graph.initializer
        if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1
    ]
    assert scale_dims, "no per-channel weight scales found"
    # int8 stays close to the fp32 torch model on real images (the random head makes top-1
    # fragile, so compare probabilities)
    from lensflow.export.onnx import torch_outputs
    from lensflow.predictor import softmax

    prob32 = softmax(torch_outputs(lite0, p8.preprocess_images(val))[0])
    prob8 = p8.predict_proba(val)
    assert np.abs(prob32 - prob8).max() < 0.1
    fp32_size = 4 * sum(p.numel() for p in lite0.parameters())
    assert (out / "model.onnx").stat().st_size < 0.5 * fp32_size


def test_backbone_bundle_is_built_once_and_embeds(monkeypatch, tmp_path, sample_images):
    from lensflow.export import backbone_bundle

    monkeypatch.setenv("LENSFLOW_CACHE", str(tmp_path))
    path = backbone_bundle()
    assert Path(path).is_relative_to(tmp_path)
    mtime = (path / "model.onnx").stat().st_mtime_ns
    assert backbone_bundle() == path and (path / "model.onnx").stat().st_mtime_ns == mtime
    p = Predictor.from_bundle(path)
    assert len(p.classes) == 1000
    feats = p.embed(sample_images)
    assert feats.shape == (len(sample_images), 1280)
    # features of two different photos are not identical, of the same photo they are
    sims = feats @ feats.T / np.outer(np.linalg.norm(feats, axis=1), np.linalg.norm(feats, axis=1))
    assert np.allclose(np.diag(sims), 1.0, atol=1e-5) and sims[0, 1] < 0.999
