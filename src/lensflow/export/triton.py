"""A bundle as a Triton Inference Server model repository, for serving beyond one machine.

    REPO/<name>/config.pbtxt        platform onnxruntime_onnx, shapes read from the graph
    REPO/<name>/labels.txt          the bundle's classes (Triton's classification extension)
    REPO/<name>/preprocess.json     how clients must prepare the input tensor
    REPO/<name>/<version>/model.onnx

Triton runs the graph only: a client sends the float32 NCHW tensor that the bundle's
Preprocess produces (`Preprocess.from_dict(json.load(open("preprocess.json")))(image)` in
Python) and reads `logits` (softmax them for probabilities) or `features`. Dynamic batching
merges concurrent requests, as `lensflow serve` does. KServe's Triton runtime serves the same
repository layout.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from lensflow.bundle import LABELS_FILE, PREPROCESS_FILE, read_bundle
from lensflow.errors import ExportError
from lensflow.io import atomic_dir, atomic_write_text

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# onnxruntime tensor types -> Triton data types (the ones an exported bundle can have)
_TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(int64)": "TYPE_INT64",
}


def write_triton_repository(
    bundle_path: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    name: str | None = None,
    version: int = 1,
    max_batch_size: int = 32,
    instances: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write REPO/<name>/ (name: default the bundle directory's) from a bundle; return it."""
    bundle = read_bundle(bundle_path)
    name = name or bundle.path.name
    check_target(repo, name, overwrite)
    if version < 1 or max_batch_size < 1 or instances < 1:
        raise ExportError("--triton version, max batch size and instances must be >= 1")
    pre = bundle.preprocess
    inputs, outputs = graph_signature(
        bundle.model_path, (pre.channels, pre.input_size, pre.input_size)
    )
    logits_dims = dict((n, d) for n, _, d in outputs).get("logits")
    if logits_dims != [len(bundle.classes)]:
        raise ExportError(
            f"{bundle.model_path}: logits output {logits_dims} does not match "
            f"{len(bundle.classes)} classes"
        )
    config = model_config(name, inputs, outputs, max_batch_size, instances)
    with atomic_dir(Path(repo) / name, overwrite=overwrite) as tmp:
        (tmp / str(version)).mkdir()
        shutil.copyfile(bundle.model_path, tmp / str(version) / "model.onnx")
        shutil.copyfile(bundle.path / LABELS_FILE, tmp / LABELS_FILE)
        shutil.copyfile(bundle.path / PREPROCESS_FILE, tmp / PREPROCESS_FILE)
        atomic_write_text(tmp / "config.pbtxt", config)
    return Path(repo) / name


def check_target(repo: str | os.PathLike[str], name: str, overwrite: bool) -> None:
    if not NAME_RE.match(name):
        raise ExportError(f"Triton model name {name!r}: use letters, digits, '_', '.', '-' only")
    if (Path(repo) / name).exists() and not overwrite:
        raise ExportError(f"{Path(repo) / name} already exists; pass --overwrite to replace it")


def graph_signature(
    model_path: Path, input_shape: tuple[int, int, int]
) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """(name, Triton type, dims without the batch axis) of the graph's inputs and outputs.

    Output widths come from running the graph once: ONNX shape inference loses them behind
    the backbone's same-padding, and Triton needs them exact.
    """
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (first,) = session.get_inputs()
    results = session.run(None, {first.name: np.zeros((1, *input_shape), np.float32)})

    def triton_type(name: str, onnx_type: str) -> str:
        if onnx_type not in _TRITON_TYPES:
            raise ExportError(f"{model_path}: {name} has an unsupported type {onnx_type}")
        return _TRITON_TYPES[onnx_type]

    inputs = [(first.name, triton_type(first.name, first.type), list(input_shape))]
    outputs = [(o.name, triton_type(o.name, o.type), list(r.shape[1:]))
               for o, r in zip(session.get_outputs(), results, strict=True)]  # fmt: skip
    return inputs, outputs


def model_config(
    name: str,
    inputs: list[tuple[str, str, list[int]]],
    outputs: list[tuple[str, str, list[int]]],
    max_batch_size: int,
    instances: int,
) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig)."""

    def tensors(items: list[tuple[str, str, list[int]]], labels: str | None) -> str:
        blocks = []
        for tensor, dtype, dims in items:
            lines = [f'    name: "{tensor}"', f"    data_type: {dtype}",
                     f"    dims: [ {', '.join(map(str, dims))} ]"]  # fmt: skip
            if labels and tensor == "logits":
                lines.append(f'    label_filename: "{labels}"')
            blocks.append("  {\n" + "\n".join(lines) + "\n  }")
        return ",\n".join(blocks)

    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{tensors(inputs, None)}\n]\n"
        f"output [\n{tensors(outputs, LABELS_FILE)}\n]\n"
        "dynamic_batching { }\n"
        f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
    )
