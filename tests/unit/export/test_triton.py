"""The Triton model-repository layout of a bundle (Triton itself is not run here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.bundle import read_bundle
from lensflow.errors import ExportError
from lensflow.export.triton import write_triton_repository


def config_fields(text: str) -> dict[str, object]:
    """The scalar and tensor fields of config.pbtxt, read back as a client would see them."""
    tensors = re.findall(
        r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[ ([\d, ]+) \](?:\s+label_filename: "([^"]+)")?',
        text,
    )
    return {
        "name": re.search(r'^name: "([^"]+)"', text, re.M).group(1),
        "platform": re.search(r'^platform: "([^"]+)"', text, re.M).group(1),
        "max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.M).group(1)),
        "tensors": {n: (t, [int(d) for d in dims.split(",")], lab) for n, t, dims, lab in tensors},
    }


def test_repository_layout_and_config_match_the_graph(tiny_bundle: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    model_dir = write_triton_repository(tiny_bundle, tmp_path / "repo", max_batch_size=8)
    bundle = read_bundle(tiny_bundle)
    assert model_dir == tmp_path / "repo" / tiny_bundle.name
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "1", "1/model.onnx", "config.pbtxt", "labels.txt", "preprocess.json"
    ]  # fmt: skip
    assert (model_dir / "1" / "model.onnx").read_bytes() == bundle.model_path.read_bytes()
    assert (model_dir / "labels.txt").read_text().splitlines() == bundle.classes
    assert json.loads((model_dir / "preprocess.json").read_text()) == bundle.preprocess.to_dict()

    fields = config_fields((model_dir / "config.pbtxt").read_text())
    assert fields["name"] == tiny_bundle.name and fields["platform"] == "onnxruntime_onnx"
    assert fields["max_batch_size"] == 8
    # The declared shapes are the ones the graph really produces for a batch of 3.
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"))
    pre = bundle.preprocess
    x = np.zeros((3, pre.channels, pre.input_size, pre.input_size), np.float32)
    logits, features = session.run(["logits", "features"], {"input": x})
    assert fields["tensors"] == {
        "input": ("TYPE_FP32", [pre.channels, pre.input_size, pre.input_size], ""),
        "logits": ("TYPE_FP32", [len(bundle.classes)], "labels.txt"),
        "features": ("TYPE_FP32", [features.shape[1]], ""),
    }
    assert logits.shape == (3, len(bundle.classes))


def test_bad_names_and_existing_models_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="letters, digits"):
        write_triton_repository(tiny_bundle, tmp_path / "repo", name="my model")
    write_triton_repository(tiny_bundle, tmp_path / "repo", name="socks")
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        write_triton_repository(tiny_bundle, tmp_path / "repo", name="socks")
    write_triton_repository(tiny_bundle, tmp_path / "repo", name="socks", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["socks"]  # no leftovers


def test_export_cli_writes_the_repository(tiny_run: Path, tmp_path: Path) -> None:
    from lensflow.cli import app

    repo = tmp_path / "repo"
    args = ["export", str(tiny_run), "--out", str(tmp_path / "b"), "--triton", str(repo),
            "--triton-name", "clothes", "--parity-images", "4", "--json", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["triton_model"] == str(repo / "clothes")
    assert (repo / "clothes" / "1" / "model.onnx").is_file()
    # A second export into the same name is refused before any work, with the fix named.
    again = CliRunner().invoke(app, [*args[:3], str(tmp_path / "b2"), *args[4:]])
    assert again.exit_code != 0 and "pass --overwrite" in again.output
    assert not (tmp_path / "b2").exists()
