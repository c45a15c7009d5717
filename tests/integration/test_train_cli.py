"""`lensflow train` end to end on the bundled sample: CLI, run directory, load_run, resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.data import load_dataset
from lensflow.train import load_run

runner = CliRunner()
RUN_FILES = {
    "card.json",
    "config.yaml",
    "labels.txt",
    "metrics.csv",
    "best.pt",
    "last.pt",
    "curves.png",
}


def _val_accuracy(run: Path, dataset: Path) -> float:
    loaded = load_run(run)
    records = load_dataset(dataset).split("validation")
    x = torch.from_numpy(loaded.preprocess.batch([r.path for r in records]))
    with torch.no_grad():
        pred = loaded.model(x).argmax(1).numpy()
    return float((np.array(loaded.classes)[pred] == np.array([r.label for r in records])).mean())


def test_tiny_run_directory_matches_the_contract(tiny_run: Path, tiny_dataset: Path) -> None:
    assert {p.name for p in tiny_run.iterdir()} >= RUN_FILES
    card = json.loads((tiny_run / "card.json").read_text())
    assert card["kind"] == "lensflow-run" and card["mode"] == "quick"
    assert card["classes"] == (tiny_run / "labels.txt").read_text().split()
    assert card["dataset"]["hash"] == load_dataset(tiny_dataset).hash
    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                             "seconds", "images_per_s"]  # fmt: skip
    loaded = load_run(tiny_run)
    assert isinstance(loaded.model.forward_head.__self__._fc, torch.nn.Linear)
    assert not loaded.model.training
    # The card's accuracy is the saved torch model's accuracy on the validation images.
    assert _val_accuracy(tiny_run, tiny_dataset) == pytest.approx(card["best"]["val_accuracy"])
    assert card["best"]["val_accuracy"] >= 0.8  # 5 easy classes, 4 images each


def test_quick_cli_json_and_existing_out(tiny_dataset: Path, tmp_path: Path) -> None:
    args = ["train", str(tiny_dataset), "--out", str(tmp_path / "r"), "--mode", "quick",
            "--cache-dir", str(tmp_path / "cache"), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout.strip().splitlines()[-1])
    assert card["best"]["val_accuracy"] > 0.5 and card["quick"]["C"] > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
    assert not (tmp_path / ".r.partial").exists()


def test_cli_rejects_unknown_param_and_non_dataset(tiny_dataset: Path, tmp_path: Path) -> None:
    bad = runner.invoke(app, ["train", str(tiny_dataset), "--out", str(tmp_path / "r"),
                              "-p", "learning_rat=0.1"])  # fmt: skip
    assert bad.exit_code == 2 and "did you mean 'learning_rate'" in bad.output
    assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "r2")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_load_run_names_the_problem(tmp_path: Path) -> None:
    from lensflow.errors import LensflowError

    with pytest.raises(LensflowError, match=r"no card\.json"):
        load_run(tmp_path)


def test_run_without_tiny_copy_is_untouched(tiny_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    assert load_run(copy, which="last").classes == load_run(tiny_run).classes


def _ft_args(dataset: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    # A small finetune: last block + head on cached activations of 2 views, batch 20.
    return ["train", str(dataset), "--out", str(out), "--cache-dir", str(cache), "--quiet",
            "--model", "efficientnet_lite0",
            "--batch-size", "20", "-p", "trainable_blocks=1", "-p", "views=2",
            "-p", "early_stopping=0", *extra]  # fmt: skip


def test_finetune_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    straight = runner.invoke(app, _ft_args(tiny_dataset, tmp_path / "a", cache, "--epochs", "2"))
    assert straight.exit_code == 0, straight.output
    first = runner.invoke(app, _ft_args(tiny_dataset, tmp_path / "b", cache, "--epochs", "1"))
    assert first.exit_code == 0, first.output
    # Epoch 1 is all warm-up, so stopping after it and resuming for 2 replays run "a".
    more = runner.invoke(
        app, _ft_args(tiny_dataset, tmp_path / "b", cache, "--epochs", "2", "--resume")
    )
    assert more.exit_code == 0, more.output
    a_rows = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    b_rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    assert [r["epoch"] for r in b_rows] == ["1", "2"]
    for ra, rb in zip(a_rows, b_rows):  # seeded and resumed exactly: the same numbers
        assert (ra["train_loss"], ra["val_loss"]) == (rb["train_loss"], rb["val_loss"])
    assert {p.name for p in (tmp_path / "b").iterdir()} >= RUN_FILES
    assert load_run(tmp_path / "b", "last").card["mode"] == "finetune"


def test_scratch_is_deterministic_with_a_seed(tiny_dataset: Path, tmp_path: Path) -> None:
    def run(name: str) -> list[dict]:
        args = ["train", str(tiny_dataset), "--out", str(tmp_path / name), "--mode", "scratch",
                "--model", "cnn1", "--image-shape", "1,28,28", "--epochs", "2", "--seed", "3",
                "--batch-size", "16", "--quiet"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader((tmp_path / name / "metrics.csv").open()))
        return [{k: r[k] for k in ("train_loss", "val_loss", "val_acc")} for r in rows]

    assert run("x") == run("y")
    loaded = load_run(tmp_path / "x")
    assert loaded.preprocess.channels == 1 and loaded.preprocess.input_size == 28
    # Defaults decided from the data, written down: photos keep crop_color; the mirror average
    # was measured on validation and the better setting is what best.pt and the card hold.
    choices = loaded.card["choices"]
    assert choices["augmentation"]["policy"] == "crop_color"
    assert choices["augmentation"]["chosen_by"].startswith("auto: photos")
    mirror = choices["mirror_tta"]
    assert loaded.model.flip_tta is mirror["kept"] is loaded.card["model_kwargs"]["flip_tta"]
    chosen = mirror["val_accuracy_mirror" if mirror["kept"] else "val_accuracy_plain"]
    assert loaded.card["best"]["val_accuracy"] == pytest.approx(chosen, abs=1e-4)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tiny_dataset: Path, tmp_path: Path) -> None:
    """gloo on CPU: 2 processes x 10 images = 1 process x 20 per step; the same quality."""

    def run(name: str, devices: int) -> dict:
        args = _ft_args(tiny_dataset, tmp_path / name, tmp_path / "cache", "--epochs", "4",
                        "--devices", str(devices), "--json")  # fmt: skip
        args.remove("--quiet")
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])

    one, two = run("one", 1), run("two", 2)
    assert (one["devices"], two["devices"]) == (1, 2)
    rows1 = list(csv.DictReader((tmp_path / "one" / "metrics.csv").open()))
    rows2 = list(csv.DictReader((tmp_path / "two" / "metrics.csv").open()))
    assert len(rows1) == len(rows2) == 4
    # Same init, data order and global batch; only per-process batch-norm statistics and
    # dropout masks differ, so the curves track each other and end at the same quality.
    for r1, r2 in zip(rows1, rows2):
        assert float(r2["train_loss"]) == pytest.approx(float(r1["train_loss"]), rel=0.15)
    assert one["best"]["val_accuracy"] >= 0.75
    assert abs(one["best"]["val_accuracy"] - two["best"]["val_accuracy"]) <= 0.1


@pytest.mark.slow
def test_auto_reports_what_it_tried(tiny_dataset: Path, tmp_path: Path) -> None:
    args = _ft_args(tiny_dataset, tmp_path / "auto", tmp_path / "cache", "--mode", "auto",
                    "--epochs", "1", "--json")  # fmt: skip
    args.remove("--quiet")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout.strip().splitlines()[-1])
    tried = card["auto"]["tried"]
    assert [(t["mode"], t["model"]) for t in tried] == [
        ("quick", "efficientnet_lite0"),
        ("finetune", "efficientnet_lite_ensemble"),  # finetune's CPU default
    ]
    assert card["mode"] == "auto"
    assert card["best"]["val_accuracy"] == max(t["val_accuracy"] for t in tried)
    assert {p.name for p in (tmp_path / "auto").iterdir()} >= RUN_FILES
    load_run(tmp_path / "auto")


def test_default_finetune_is_the_ensemble_and_its_bundle_agrees(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """No --model, CPU, ample budget: the Lite0 + Lite2 ensemble, C by cross-validation; its
    export predicts the run's probabilities from image files (letterbox done by the Predictor)."""
    if torch.cuda.is_available():
        pytest.skip("on CUDA finetune fully fine-tunes Lite0 instead")
    from lensflow.export.exporter import ExportConfig, export_run
    from lensflow.predictor import Predictor

    args = ["train", str(tiny_dataset), "--out", str(tmp_path / "run"), "--cache-dir",
            str(tmp_path / "cache"), "--quiet", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout.strip().splitlines()[-1])
    assert (card["mode"], card["model"]) == ("finetune", "efficientnet_lite_ensemble")
    assert card["quick"]["C_chosen_by"] == "cross-validation on train"
    assert card["preprocess"]["crop"] == "pad" and card["quick"]["feature_dim"] == 6472
    assert card["best"]["val_accuracy"] >= 0.8  # 5 easy classes, 4 validation images each
    # The card's accuracy is the saved torch model's, on images letterboxed from their files.
    assert _val_accuracy(tmp_path / "run", tiny_dataset) == pytest.approx(
        card["best"]["val_accuracy"]
    )
    bundle = export_run(
        ExportConfig(run=tmp_path / "run", out=tmp_path / "bundle", parity_images=4), quiet=True
    )
    predictor = Predictor.from_bundle(bundle)
    assert predictor.preprocess.crop == "pad"
    paths = [r.path for r in load_dataset(tiny_dataset).split("validation")][:6]
    loaded = load_run(tmp_path / "run")
    with torch.no_grad():
        ref = torch.softmax(loaded.model(torch.from_numpy(loaded.preprocess.batch(paths))), 1)
    np.testing.assert_allclose(predictor.predict_proba(paths), ref.numpy(), atol=1e-4)


def test_a_spent_time_budget_stops_inside_the_first_epoch(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    # A budget that is gone before training starts: one step, then validation and the run files,
    # instead of a whole epoch (which for a large model from scratch on a CPU can take far
    # longer than the budget).
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", str(tiny_dataset), "--out", str(out), "--mode", "scratch", "--model", "cnn3",
        "--batch-size", "2", "--epochs", "3", "--time-budget", "0.001", "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["stopped_by"] == "time budget" and card["epochs_run"] == 1
    steps = -(-card["train_images"] // 2)
    assert steps > 1  # so stopping after 1 step is a cut
    assert f"epoch 1 stopped after 1 of {steps} steps" in " ".join(card["warnings"])
    assert (out / "best.pt").is_file()
