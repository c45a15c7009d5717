"""The Python façade (lensflow.api): keyword arguments map onto the commands' configs exactly as
the CLI options do; unknown keywords, bad values and missing extras are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import lensflow as lf
from lensflow.api import Evaluation, NotebookPredictor, Run, as_path
from lensflow.cli import app
from lensflow.errors import ConfigError, LensflowError
from lensflow.io import write_card
from lensflow.predictor import Predictor

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


class Captured(Exception):
    """Raised by a stand-in stage function once it has recorded its config."""


def capture(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[Any]:
    """Replace `module.name` by a function that records its first argument and stops."""
    seen: list[Any] = []

    def stand_in(config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(config)
        raise Captured

    monkeypatch.setattr(f"{module}.{name}", stand_in)
    return seen


def fake_run(path: Path) -> Path:
    """A run directory with just a card: enough for Run(), evaluate/export argument mapping."""
    path.mkdir(parents=True)
    write_card(
        path,
        "lensflow-run",
        model="efficientnet_lite0",
        classes=["a", "b"],
        mode="quick",
        best={"val_accuracy": 0.75, "epoch": 1},
        dataset={"path": str(path / "missing"), "hash": "0"},
    )
    return path


def test_import_lensflow_is_lazy_and_torch_free() -> None:
    code = (
        "import sys, lensflow as lf\n"
        "assert 'lensflow.api' not in sys.modules\n"
        "assert callable(lf.train) and callable(lf.load) and callable(lf.import_dataset)\n"
        "lf.Run, lf.Evaluation\n"
        "print('torch' in sys.modules, 'lensflow.api' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = lf.nope  # type: ignore[attr-defined]


def test_train_keywords_build_the_same_config_as_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = capture(monkeypatch, "lensflow.train.run", "train")
    ds, out = tmp_path / "ds", tmp_path / "run"
    cli = runner.invoke(
        app,
        ["train", str(ds), "--out", str(out), "--mode", "quick", "--batch-size", "16",
         "--time-budget", "90s", "-p", "label_smoothing=0.2", "--seed", "3", "--quiet"],
    )  # fmt: skip
    assert isinstance(cli.exception, Captured), cli.output
    with pytest.raises(Captured):
        lf.train(
            str(ds), out, mode="quick", mini_batch_size=16, time_budget="90s",
            label_smoothing=0.2, seed=3, quiet=True,
        )  # fmt: skip
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[1].mini_batch_size == 16 and seen[1].time_budget == 90.0
    assert seen[1].dataset == ds and seen[1].quiet is True


def test_train_takes_a_dataset_object_and_a_yaml_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_dataset: Path
) -> None:
    seen = capture(monkeypatch, "lensflow.train.run", "train")
    (tmp_path / "hp.yaml").write_text("epochs: 7\noptimizer: sgd\n")
    ds = lf.load(tiny_dataset)
    with pytest.raises(Captured):
        lf.train(ds, tmp_path / "run", config=tmp_path / "hp.yaml", optimizer="adam")
    cfg = seen[0]
    assert cfg.dataset == Path(tiny_dataset).resolve()
    assert (cfg.epochs, cfg.optimizer) == (7, "adam")  # keywords override the YAML


def test_unknown_keywords_name_the_closest_field(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown lf.train keyword 'batchsize'; did you mean 'mini_batch_size'"
    ):
        lf.train(tmp_path, tmp_path / "run", batchsize=8)
    with pytest.raises(ConfigError, match=r"'min_per_klass'; did you mean 'min_per_class'"):
        lf.import_dataset(tmp_path, tmp_path / "ds", min_per_klass=3)
    run = Run(fake_run(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"'top_losses'; did you mean 'n_top_losses'"):
        run.evaluate(top_losses=4)
    with pytest.raises(ConfigError, match=r"'int_8'; did you mean 'int8'"):
        run.export(tmp_path / "bundle", int_8=True)


def test_bad_values_fail_like_the_cli(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode must be one of quick, finetune"):
        lf.train(tmp_path, tmp_path / "run", mode="fast")
    with pytest.raises(ConfigError, match="epochs expects int"):
        lf.train(tmp_path, tmp_path / "run", epochs="many")
    run = Run(fake_run(tmp_path / "run"))
    with pytest.raises(LensflowError, match="--split must be one of"):
        run.evaluate(split="holdout")
    with pytest.raises(ConfigError, match="expected a directory"):
        as_path(3.5)


def test_evaluate_keywords_build_the_same_config_as_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = capture(monkeypatch, "lensflow.evaluate.evaluator", "evaluate")
    run = Run(fake_run(tmp_path / "run"))
    cli = runner.invoke(
        app,
        ["evaluate", str(run.path), "--data", str(tmp_path / "ds"), "--split", "validation",
         "--top-k", "3", "--top-losses", "4", "--tsne-max", "50", "--out", str(tmp_path / "ev")],
    )  # fmt: skip
    assert isinstance(cli.exception, Captured), cli.output
    with pytest.raises(Captured):
        run.evaluate(
            data=str(tmp_path / "ds"), split="validation", top_k=3, n_top_losses=4,
            tsne_max_points=50, out=tmp_path / "ev",
        )  # fmt: skip
    assert seen[0] == seen[1] and seen[1].data == tmp_path / "ds"


def test_export_keywords_build_the_same_config_as_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = capture(monkeypatch, "lensflow.export.exporter", "export_run")
    run = Run(fake_run(tmp_path / "run"))
    out = tmp_path / "bundle"
    cli = runner.invoke(
        app, ["export", str(run.path), "--out", str(out), "--int8", "--parity-images", "4"]
    )
    assert isinstance(cli.exception, Captured), cli.output
    with pytest.raises(Captured):
        run.export(out, int8=True, parity_images=4)
    assert seen[0] == seen[1] and seen[1].int8 and seen[1].run == run.path


def test_train_without_torch_names_the_extra(tmp_path: Path) -> None:
    # `sys.modules["torch"] = None` makes `import torch` fail as on an inference-only install.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import lensflow as lf\n"
        "from lensflow.errors import LensflowError\n"
        "try:\n"
        f"    lf.train({str(tmp_path)!r}, {str(tmp_path / 'run')!r}, mode='quick')\n"
        "except LensflowError as e:\n"
        "    print(e.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "lf.train needs torch" in out.stdout
    assert "pip install 'lensflow[train]'" in out.stdout


def test_load_opens_each_artifact_by_its_card(tmp_path: Path, tiny_dataset: Path) -> None:
    from lensflow.data import Dataset

    assert isinstance(lf.load(tiny_dataset), Dataset)
    run = lf.load(fake_run(tmp_path / "run"))
    assert isinstance(run, Run) and run.accuracy == 0.75 and run.classes == ["a", "b"]
    assert isinstance(lf.load(run), Run)  # objects are accepted where paths are
    (tmp_path / "ev").mkdir()
    summary = {"accuracy": 0.5, "split": "validation", "classes": ["a", "b"],
               "confusion_matrix": [[1, 1], [0, 2]], "top_k_accuracy": 1.0,
               "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                             "b": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 2}}}  # fmt: skip
    (tmp_path / "ev" / "metrics.json").write_text(json.dumps(summary))
    ev = lf.load(tmp_path / "ev")
    assert isinstance(ev, Evaluation)
    assert ev.confusion_matrix.tolist() == [[1, 1], [0, 2]]
    assert ev.per_class[0] == {"class": "a", **summary["per_class"]["a"]}
    assert ev.accuracy_ci95 is None
    assert Evaluation(tmp_path / "ev", {**summary, "accuracy_ci95": [0.1, 0.9]}).accuracy_ci95 == (
        0.1,
        0.9,
    )
    with pytest.raises(LensflowError, match="does not exist"):
        lf.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LensflowError, match="not a lensflow dataset, run, bundle or evaluation"):
        lf.load(tmp_path / "empty")


def test_load_bundle_gives_a_predictor_with_thumbnails(
    tiny_bundle: Path, sample_images: list[Path]
) -> None:
    predictor = lf.load(tiny_bundle)
    assert isinstance(predictor, NotebookPredictor)
    preds = predictor.predict(sample_images, top_k=2)
    plain = [p.to_dict() for p in Predictor.predict(predictor, sample_images, 2)]
    assert [p.to_dict() for p in preds] == plain  # same results as the plain Predictor
    assert all(p.thumbnail.startswith("data:image/jpeg;base64,") for p in preds)
    assert [p.source for p in preds] == [p.name for p in sample_images]


def test_quiet_silences_progress(
    tmp_path: Path, sample_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lf.import_dataset(sample_folder, tmp_path / "loud", workers=1)
    loud = capsys.readouterr()
    lf.import_dataset(sample_folder, tmp_path / "quiet", workers=1, quiet=True)
    quiet = capsys.readouterr()
    assert loud.err.strip()  # the progress bar (its layout depends on the width: not checked)
    assert quiet.err == "" and quiet.out == ""
