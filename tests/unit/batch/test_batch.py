"""Batch prediction without Ray: sources, resumable CSV/Parquet output, the local engine, CLI."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.batch import BatchConfig, batch_predict
from lensflow.batch.rows import error_row, prediction_row
from lensflow.batch.sources import list_images
from lensflow.batch.store import ResultStore
from lensflow.cli import app as cli_app
from lensflow.errors import LensflowError
from lensflow.predictor import Predictor


@pytest.fixture
def photos(tmp_path, sample_images) -> Path:
    """A folder of 5 real images (one per class), a corrupt JPEG and a non-image file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sample_images:
        (folder / f"{p.parent.name}.jpg").write_bytes(p.read_bytes())
    (folder / "corrupt.jpg").write_bytes(sample_images[0].read_bytes()[:400])
    (folder / "notes.md").write_text("not an image")
    return folder


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def run_cli(*args: str):
    return CliRunner().invoke(cli_app, ["predict", *args])


# -- sources ---------------------------------------------------------------------------------------
def test_sources_folder_list_dataset_and_mistakes(photos, tmp_path, tiny_dataset):
    found = list_images([photos])
    assert len(found) == 6 and all(Path(p).is_absolute() for p in found)
    assert not any(p.endswith("notes.md") for p in found)
    listing = tmp_path / "list.txt"
    listing.write_text("# two images, one missing\nphotos/hat.jpg\n\nphotos/missing.jpg\n")
    assert list_images([listing]) == [
        str((tmp_path / "photos" / "hat.jpg").absolute()),
        str((tmp_path / "photos" / "missing.jpg").absolute()),  # becomes an error row
    ]
    from lensflow.data import load_dataset

    assert len(list_images([tiny_dataset])) == len(load_dataset(tiny_dataset).records)
    assert list_images([photos, photos]) == found  # no repeats
    with pytest.raises(LensflowError, match="source not found"):
        list_images([tmp_path / "nope"])
    with pytest.raises(LensflowError, match="not a folder, an image, a file list"):
        list_images([photos / "notes.md"])


# -- output store ------------------------------------------------------------------------------------
def rows_for(*paths: str, error: str = "", extra: dict | None = None) -> list[dict]:
    pred = {
        "label": "hat",
        "probability": 0.75,
        "index": 1,
        "top_k": [{"label": "hat", "probability": 0.75}],
    }
    if error:
        return [error_row(p, error) for p in paths]
    return [prediction_row(p, {**pred, **(extra or {})}) for p in paths]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_store_resumes_retries_errors_and_merges_new_fields(tmp_path, suffix):
    out = tmp_path / f"p{suffix}"
    store = ResultStore(out)
    store.add(rows_for("/a", "/b"))
    store.add(rows_for("/c", error="cannot decode /c"))
    assert store.done_paths() == {"/a", "/b"}  # the error row is retried
    assert store.finalize() == 3 and not store.parts.exists()
    # a second run: /c now reads, and the bundle has open-set fields
    store = ResultStore(out)
    assert store.done_paths() == {"/a", "/b"}
    store.add(rows_for("/c", "/d", extra={"unknown": True, "ood_score": 0.5}))
    assert store.finalize() == 4
    if suffix == ".csv":
        rows = read_csv(out)
        assert rows["/c"]["error"] == "" and rows["/c"]["unknown"] == "True"
        assert rows["/a"]["unknown"] == ""  # older rows have the new columns, empty
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        rows = {r["path"]: r for r in table.to_pylist()}
        assert str(table.schema.field("ood_score").type) == "double"
        assert rows["/c"]["unknown"] is True and rows["/a"]["unknown"] is None
    assert list(rows) == ["/a", "/b", "/c", "/d"]
    assert json.loads(rows["/d"]["top_k"]) == [{"label": "hat", "probability": 0.75}]


def test_store_refuses_wrong_files(tmp_path, monkeypatch):
    with pytest.raises(LensflowError, match=r"must end in \.csv or \.parquet"):
        ResultStore(tmp_path / "p.json")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(LensflowError, match="not a predictions file"):
        ResultStore(other).done_paths()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as on a core-only install
    with pytest.raises(LensflowError, match=r"pip install 'lensflow\[ray\]'"):
        ResultStore(tmp_path / "p.parquet")


# -- local engine and CLI ------------------------------------------------------------------------------
def test_local_engine_rows_equal_the_predictor_and_bad_files_are_error_rows(
    photos, tiny_bundle, tmp_path
):
    out = tmp_path / "p.csv"
    result = run_cli(str(tiny_bundle), str(photos), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["predicted"] == 5 and summary["errors"] == 1 and summary["rows"] == 6
    rows = read_csv(out)
    bad = rows[str((photos / "corrupt.jpg").absolute())]
    assert bad["label"] == "" and "cannot decode" in bad["error"]
    good = sorted(p for p, r in rows.items() if not r["error"])
    expected = Predictor.from_bundle(tiny_bundle).predict(good, top_k=3)
    for path, want in zip(good, expected, strict=True):
        assert rows[path]["label"] == want.label
        assert float(rows[path]["probability"]) == pytest.approx(want.probability, abs=1e-6)
        got = [t["probability"] for t in json.loads(rows[path]["top_k"])]
        np.testing.assert_allclose(got, [p for _, p in want.top_k], atol=1e-6)


def test_resumed_run_adds_only_missing_rows(photos, tiny_bundle, tmp_path):
    out = tmp_path / "p.csv"
    half = tmp_path / "half.txt"
    half.write_text("\n".join(str(p) for p in sorted(photos.glob("*.jpg"))[:3]))
    assert run_cli(str(tiny_bundle), str(half), "--out", str(out), "--json").exit_code == 0
    # mark a finished row: the resumed run must keep it rather than predict again
    rows = read_csv(out)
    kept = next(p for p, r in rows.items() if not r["error"])
    text = out.read_text().replace(f"{kept},{rows[kept]['label']},", f"{kept},KEPT,")
    out.write_text(text)
    result = run_cli(str(tiny_bundle), str(photos), "--out", str(out), "--json")
    summary = json.loads(result.stdout)
    done_before = sum(not r["error"] for r in rows.values())
    assert summary["skipped"] == done_before
    assert summary["predicted"] + summary["errors"] == 6 - done_before
    assert summary["rows"] == 6 and read_csv(out)[kept]["label"] == "KEPT"


def test_an_interrupted_run_keeps_finished_chunks(photos, tiny_bundle, tmp_path, monkeypatch):
    from lensflow.batch import run as batch_run

    real = batch_run.predict_locally

    def interrupted(config, paths):
        chunks = real(config, paths)
        yield next(chunks)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_run, "predict_locally", interrupted)
    out = tmp_path / "p.csv"
    config = BatchConfig(tiny_bundle, (photos,), out, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        batch_predict(config, quiet=True)
    # the first chunk (sorted: corrupt.jpg, dress.jpg) is on disk; the error will be retried
    assert not out.exists()
    assert ResultStore(out).done_paths() == {str((photos / "dress.jpg").absolute())}
    monkeypatch.setattr(batch_run, "predict_locally", real)
    summary = batch_predict(config, quiet=True)
    assert (summary.skipped, summary.predicted, summary.errors) == (1, 4, 1)
    assert summary.rows == 6 and len(read_csv(out)) == 6


def test_cli_mistakes_are_one_line_errors(photos, tiny_bundle, tmp_path, monkeypatch):
    cases = [
        ([str(photos), "--engine", "ray"], "--engine, --address and --actors need --out"),
        ([str(photos), "--out", str(tmp_path / "p.csv"), "--actors", "2"], "need --engine ray"),
        ([str(photos), "--out", str(tmp_path / "p.csv"), "--engine", "spark"], "must be one of"),
        ([str(photos), "--out", str(tmp_path / "p.txt")], "must end in .csv or .parquet"),
    ]
    for args, message in cases:
        result = run_cli(str(tiny_bundle), *args)
        assert result.exit_code == 2 and message in result.output, result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a core-only install
    result = run_cli(
        str(tiny_bundle), str(photos), "--out", str(tmp_path / "p.csv"), "--engine", "ray"
    )
    assert result.exit_code == 2
    assert "needs Ray, which comes with the [ray] extra: pip install 'lensflow[ray]'" in (
        result.output
    )
