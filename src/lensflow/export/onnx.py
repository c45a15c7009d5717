"""torch -> ONNX with a parity check on real images (the exported graph must agree with torch).

The graph has one input "input" (preprocessed float32 NCHW, dynamic batch) and two outputs:
"logits" (N, C) and "features" (N, D), the pooled backbone features used for embeddings.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lensflow.errors import ExportError

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs difference of fp32 logits, ONNX vs torch


def _with_features(model: nn.Module) -> nn.Module:
    """Wrap a lensflow model so one forward returns (logits, features)."""
    from torch import nn

    class LogitsAndFeatures(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            features = self.inner.forward_features(x)
            return self.inner.forward_head(features), features

    for name in ("forward_features", "forward_head"):
        if not callable(getattr(model, name, None)):
            raise ExportError(
                f"{type(model).__name__} has no {name}(); lensflow models need forward_features "
                "and forward_head (see docs/ARCHITECTURE.md, Models)"
            )
    return LogitsAndFeatures(model).eval()


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Write `model` as ONNX (opset 17, TorchScript exporter) with a dynamic batch axis."""
    import torch

    # Export a float32, contiguous-format copy: the caller's model (maybe channels_last) is untouched.
    wrapped = _with_features(copy.deepcopy(model).float().to(memory_format=torch.contiguous_format))
    dummy = torch.zeros((2, *input_shape), dtype=torch.float32)
    batch = {0: "batch"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about constant folding of Slice steps: harmless.
            warnings.simplefilter("ignore", UserWarning)
            # Sizes read as Python ints (band bounds) become constants: by design, since a
            # bundle's input size is fixed.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapped,
                (dummy,),
                str(path),
                input_names=["input"],
                output_names=["logits", "features"],
                dynamic_axes={"input": batch, "logits": batch, "features": batch},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many unrelated types
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {e}") from e
    _check_graph(path)
    return path


def _check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise ExportError(f"the exported graph {path} is invalid: {e}") from e


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_diff_logits: float
    max_abs_diff_features: float
    top1_agreement: float  # fraction of images with the same argmax

    def to_dict(self) -> dict[str, float | int]:
        return {
            "images": self.images,
            "max_abs_diff_logits": self.max_abs_diff_logits,
            "max_abs_diff_features": self.max_abs_diff_features,
            "top1_agreement": self.top1_agreement,
        }


def onnx_outputs(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    logits, features = sess.run(["logits", "features"], {"input": x.astype(np.float32)})
    return logits, features


def torch_outputs(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    wrapped = _with_features(model)
    with torch.no_grad():
        logits, features = wrapped(torch.from_numpy(x.astype(np.float32)))
    return logits.numpy(), features.numpy()


def compare(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> Parity:
    (ref_logits, ref_feats), (logits, feats) = ref, got
    return Parity(
        images=len(ref_logits),
        max_abs_diff_logits=float(np.abs(ref_logits - logits).max()),
        max_abs_diff_features=float(np.abs(ref_feats - feats).max()),
        top1_agreement=float((ref_logits.argmax(1) == logits.argmax(1)).mean()),
    )


def check_parity(
    model: nn.Module, path: Path, x: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> Parity:
    """Run torch and onnxruntime on the same preprocessed real images; fail loudly on drift."""
    if len(x) == 0:
        raise ExportError("the parity check needs at least one real image")
    parity = compare(torch_outputs(model, x), onnx_outputs(path, x))
    if not parity.max_abs_diff_logits <= tolerance:  # also catches NaN
        raise ExportError(
            f"ONNX and torch disagree: max |logits difference| = {parity.max_abs_diff_logits:.3g} "
            f"> {tolerance:g} on {parity.images} images (top-1 agreement "
            f"{parity.top1_agreement:.0%}); the model uses an operator the exporter does not "
            "translate faithfully — nothing was written"
        )
    return parity
