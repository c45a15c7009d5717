"""The Python façade and the CLI, run on the bundled sample, make the same dataset, the same run
card (apart from timestamps, durations and paths) and the same evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import lensflow as lf
from lensflow.cli import app

runner = CliRunner()
VOLATILE = {"created", "seconds", "images_per_s"}  # timestamps and durations
PATHS = {"path", "dataset", "out", "cache_dir", "report", "source"}  # differ by construction


def comparable(value: Any) -> Any:
    """The value without timestamps, durations and paths; floats rounded (same math, any order)."""
    if isinstance(value, dict):
        return {
            k: comparable(v)
            for k, v in value.items()
            if k not in VOLATILE and not (k in PATHS and isinstance(v, str))
        }
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    return value


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow
def test_facade_and_cli_make_the_same_run_and_evaluation(
    tmp_path: Path, sample_folder: Path
) -> None:
    cache = tmp_path / "cache"  # shared: the second run reads the features the first computed
    cli("data", "import", str(sample_folder), "--out", str(tmp_path / "cli-ds"), "-j", "1", "-q")
    cli("train", str(tmp_path / "cli-ds"), "--out", str(tmp_path / "cli-run"), "--mode", "quick",
        "--cache-dir", str(cache), "--json")  # fmt: skip
    run_dir, eval_dir = str(tmp_path / "cli-run"), str(tmp_path / "cli-eval")
    cli_eval = json.loads(
        cli("evaluate", run_dir, "--split", "validation", "--out", eval_dir, "--json")
    )

    ds = lf.import_dataset(sample_folder, out=tmp_path / "api-ds", workers=1, quiet=True)
    run = lf.train(ds, out=tmp_path / "api-run", mode="quick", cache_dir=cache, quiet=True)
    ev = run.evaluate(split="validation", out=tmp_path / "api-eval", quiet=True)

    assert ds.hash == lf.load(tmp_path / "cli-ds").hash
    cli_card = json.loads((tmp_path / "cli-run" / "card.json").read_text())
    assert comparable(run.card) == comparable(cli_card)
    assert run.card["config"]["dataset"] == str(ds.path)  # the object became its path
    assert run.config["mode"] == "quick" and len(run.metrics) >= 1

    assert comparable(ev.metrics) == comparable(cli_eval)
    assert ev.accuracy == cli_eval["accuracy"]
    assert ev.confusion_matrix.tolist() == cli_eval["confusion_matrix"]
    assert ev.report_path.is_file()
    saved = json.loads((tmp_path / "api-eval" / "metrics.json").read_text())
    assert comparable(saved) == comparable(ev.metrics)
