"""ONNX export and its parity check, on real images of the bundled sample."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.errors import ExportError
from lensflow.export.exporter import export_model, preprocess_paths
from lensflow.export.onnx import check_parity, export_onnx, onnx_outputs, torch_outputs


@pytest.fixture(scope="module")
def small_model():
    import torch

    from lensflow.models import create_model

    torch.manual_seed(0)
    # random init: no weights file to read; the pretrained export is covered by tiny_bundle
    return create_model("efficientnet_lite0", 3, pretrained=False).eval()


@pytest.fixture(scope="module")
def real_x(small_model, sample_images):
    return preprocess_paths(small_model.preprocess, sample_images[:3], "x", quiet=True)


@pytest.fixture(scope="module")
def exported(small_model, real_x, tmp_path_factory):
    return export_onnx(small_model, real_x.shape[1:], tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_export_matches_torch_on_real_images(small_model, real_x, exported):
    path = exported
    parity = check_parity(small_model, path, real_x)
    assert parity.images == 3 and parity.top1_agreement == 1.0
    assert parity.max_abs_diff_logits <= 1e-4
    # dynamic batch: other batch sizes than the dummy's run too
    logits, feats = onnx_outputs(path, real_x[:1])
    assert logits.shape == (1, 3) and feats.shape == (1, 1280)


def test_parity_failure_is_loud_and_leaves_nothing(small_model, real_x, exported, tmp_path):
    import copy

    import torch

    path = exported
    drifted = copy.deepcopy(small_model)
    with torch.no_grad():
        drifted._fc.bias += 0.01  # torch now disagrees with the exported graph
    with pytest.raises(ExportError, match="ONNX and torch disagree"):
        check_parity(drifted, path, real_x)

    class Broken(torch.nn.Module):
        """Exports fine but its ONNX differs from torch: forward_head reads a Python-side flag."""

        calls = 0  # on the class: shared with the deep copy the exporter traces

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward_features(self, x):
            return self.inner.forward_features(x)

        def forward_head(self, f):
            type(self).calls += 1  # traced once at export: the graph bakes in the first branch
            return self.inner.forward_head(f) + (0.0 if type(self).calls == 1 else 1.0)

    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="disagree"):
        export_model(
            Broken(small_model), ["a", "b", "c"], small_model.preprocess, out, real_x, quiet=True
        )
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")] == []


def test_torch_outputs_are_logits_and_features(small_model, real_x):
    logits, feats = torch_outputs(small_model, real_x)
    assert logits.shape == (3, 3) and feats.shape == (3, 1280)
    assert np.isfinite(logits).all()
