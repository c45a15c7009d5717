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

runner = CliRunner(env={"COLUMNS": "400"})
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
