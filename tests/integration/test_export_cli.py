"""`lensflow export` and `lensflow predict` end to end on the tiny trained run."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.predictor import Predictor

runner = CliRunner()


def test_export_run_writes_a_checked_bundle_with_card_and_archive(
    tiny_run, tmp_path, sample_images
):
    out = tmp_path / "bundle"
    result = runner.invoke(
        app, ["export", str(tiny_run), "--out", str(out), "--archive", "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout.strip().splitlines()[-1])
    assert card["kind"] == "lensflow-bundle" and card["precision"] == "fp32"
    run_card = json.loads((tiny_run / "card.json").read_text())
    assert card["classes"] == run_card["classes"]
    assert card["dataset_hash"] == run_card["dataset"]["hash"]
    assert card["model"] == run_card["model"]
    assert card["train_config"]  # the run's resolved TrainConfig travels with the bundle
    assert card["metrics"].get("val_accuracy") == run_card["best"]["val_accuracy"]
    assert card["parity"]["fp32_vs_torch"]["max_abs_diff_logits"] <= 1e-4
    assert (out / "export.yaml").is_file()
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive) as tar:
        assert {"model.onnx", "labels.txt", "preprocess.json", "card.json"} <= set(tar.getnames())

    # the bundle's predictions match the trained torch model on real images
    from lensflow.train import load_run

    loaded = load_run(tiny_run)
    import torch

    x = Predictor.from_bundle(out).preprocess_images(sample_images)
    with torch.no_grad():
        torch_probs = torch.softmax(loaded.model(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(Predictor.from_bundle(out).predict_arrays(x), torch_probs, atol=1e-4)

    again = runner.invoke(app, ["export", str(tiny_run), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.slow
def test_export_int8_with_calibration_dataset(tiny_run, tiny_dataset, tmp_path):
    out = tmp_path / "int8"
    result = runner.invoke(
        app,
        [
            "export",
            str(tiny_run),
            "--out",
            str(out),
            "--int8",
            "--calibration",
            str(tiny_dataset),
            "--calibration-images",
            "20",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    card = Predictor.from_bundle(out).card
    assert card["precision"] == "int8"
    assert card["quantization"]["calibration_images"] == 20
    assert card["parity"]["int8_vs_fp32"]["top1_agreement"] >= 0.75
    assert "int8 top-1 agreement" in result.output


def test_predict_table_json_and_user_mistakes(tiny_bundle, sample_images, sample_folder, tmp_path):
    table = runner.invoke(app, ["predict", str(tiny_bundle), str(sample_images[0])])
    assert table.exit_code == 0 and "probability" in table.stdout
    folder = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bundle),
            str(sample_folder / "validation" / "hat"),
            "--json",
            "-k",
            "2",
        ],
    )
    lines = [json.loads(line) for line in folder.stdout.strip().splitlines()]
    assert folder.exit_code == 0 and len(lines) == 4
    assert all(len(d["top_k"]) == 2 and 0 <= d["probability"] <= 1 for d in lines)

    (tmp_path / "notes.jpg").write_text("not an image")
    bad = runner.invoke(
        app,
        ["predict", str(tiny_bundle), str(sample_images[0]), str(tmp_path / "notes.jpg"), "--json"],
    )
    assert bad.exit_code == 2
    assert "1 of 2 images could not be read" in bad.output
    assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["predict", str(tmp_path / "nobundle"), str(sample_images[0])])
    assert missing.exit_code == 2 and "bundle not found" in missing.output
    norun = runner.invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "b")])
    assert norun.exit_code == 2 and "Traceback" not in norun.output
