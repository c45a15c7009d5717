"""Bundle layout: what the exporter writes, what the reader accepts and the errors it gives."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lensflow.bundle import read_bundle, write_archive
from lensflow.errors import BundleError
from lensflow.predictor import Predictor


def test_bundle_has_the_documented_layout(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert {"model.onnx", "labels.txt", "preprocess.json", "card.json"} <= names
    card = json.loads((tiny_bundle / "card.json").read_text())
    assert card["kind"] == "lensflow-bundle"
    assert card["precision"] == "fp32"
    assert card["classes"] == (tiny_bundle / "labels.txt").read_text().split("\n")[:-1]
    for key in ("model", "metrics", "dataset_hash", "version", "lensflow_version", "created"):
        assert key in card
    assert card["parity"]["fp32_vs_torch"]["max_abs_diff_logits"] <= 1e-4
    assert len(card["version"]) == 12


def test_onnx_graph_io_names_and_dynamic_batch(tiny_bundle):
    import onnx

    graph = onnx.load(str(tiny_bundle / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits", "features"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value


@pytest.mark.parametrize(
    ("remove", "message"),
    [("labels.txt", "missing labels.txt"), ("model.onnx", "missing model.onnx")],
)
def test_reader_names_the_missing_file(tiny_bundle, tmp_path, remove, message):
    broken = tmp_path / "b"
    shutil.copytree(tiny_bundle, broken)
    (broken / remove).unlink()
    with pytest.raises(BundleError, match=message):
        read_bundle(broken)


def test_reader_rejects_other_artifacts_and_disagreeing_labels(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        read_bundle(tmp_path / "nope")
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    card = json.loads((other / "card.json").read_text())
    (other / "labels.txt").write_text("a\nb\n")
    with pytest.raises(BundleError, match="disagree"):
        read_bundle(other)
    card["kind"] = "lensflow-run"
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="expected a 'lensflow-bundle'"):
        read_bundle(other)


def test_archive_round_trip_gives_identical_predictions(
    tiny_bundle, tmp_path, monkeypatch, sample_images
):
    monkeypatch.setenv("LENSFLOW_CACHE", str(tmp_path / "cache"))
    archive = write_archive(tiny_bundle, tmp_path / "bundle.tar.gz")
    from_archive = Predictor.from_bundle(archive)
    assert from_archive.path.is_relative_to(tmp_path / "cache")
    np.testing.assert_array_equal(
        from_archive.predict_proba(sample_images),
        Predictor.from_bundle(tiny_bundle).predict_proba(sample_images),
    )
    # extracted once: a second load reuses the same directory
    assert Predictor.from_bundle(archive).path == from_archive.path
