"""The real `lensflow evaluate` on the bundled sample: a bundle (and a run, once training exists),
the files it writes, the report in headless Chromium, and user mistakes as clear messages."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from tests.fixtures.browser import screenshot_is_blank

runner = CliRunner()
CLASSES = ["dress", "hat", "pants", "shoes", "t-shirt"]


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *map(str, args)])


@pytest.fixture(scope="module")
def bundle_eval(tiny_bundle: Path, tiny_dataset: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("evaluate") / "bundle-eval"
    result = evaluate(tiny_bundle, "--data", tiny_dataset, "--out", out, "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_help_has_an_example() -> None:
    result = evaluate("--help")
    assert result.exit_code == 0 and "Example: lensflow evaluate" in result.output


def test_json_summary_matches_the_files(bundle_eval) -> None:
    summary, out = bundle_eval
    assert summary["n"] == 20 and summary["split"] == "validation"  # no test split: validation
    assert summary["classes"] == CLASSES and summary["top_k"] == 2
    assert set(summary["per_class"]) == set(CLASSES)
    assert all(m["support"] == 4 for m in summary["per_class"].values())
    assert json.loads((out / "metrics.json").read_text()) == summary
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    assert summary["accuracy"] == pytest.approx(np.mean([int(r["correct"]) for r in rows]))
    cm = np.array(summary["confusion_matrix"])
    assert cm.sum() == 20 and np.trace(cm) == sum(int(r["correct"]) for r in rows)
    for name in (
        "config.yaml", "confusion_matrix.png", "reliability.png", "top_losses.png",
        "samples.png", "embeddings_pca.png", "embeddings_tsne.png", "report.html",
    ):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    projector = out / "projector"
    assert len((projector / "tensors.tsv").read_text().splitlines()) == 20
    assert len((projector / "metadata.tsv").read_text().splitlines()) == 21  # + header
    assert "single_image_dim" in (projector / "projector_config.pbtxt").read_text()
    assert not list(out.parent.glob(".*partial"))  # nothing half-written left behind


def test_probabilities_agree_with_the_predictor(bundle_eval, tiny_bundle: Path) -> None:
    from lensflow.predictor import Predictor

    _, out = bundle_eval
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    proba = Predictor.from_bundle(tiny_bundle).predict_proba([r["path"] for r in rows])
    pred = proba.argmax(1)
    assert [r["predicted"] for r in rows] == [CLASSES[i] for i in pred]
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba.max(1), atol=1e-5)


@pytest.mark.browser
def test_report_renders_in_chromium(bundle_eval, open_page, tmp_path) -> None:
    _, out = bundle_eval
    html = (out / "report.html").read_text()
    assert 'src="data:image/png;base64,' in html and "http" not in html.split("<body>")[0]
    check = open_page((out / "report.html").as_uri())
    shot = tmp_path / "report.png"
    check.page.screenshot(path=str(shot), full_page=True)
    assert not screenshot_is_blank(shot)
    assert check.console_errors == [] and check.failed_requests == []
    assert check.broken_images() == []
    n_images = check.page.evaluate("() => document.images.length")
    assert n_images >= 7  # the pictures plus the worst-mistake thumbnails
    assert "Per-class metrics" in check.page.inner_text("body")


def test_user_mistakes_are_clear_messages(tmp_path, tiny_bundle, tiny_dataset, sample_folder):
    missing = evaluate(tmp_path / "no-run")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert "Traceback" not in missing.output

    no_card = evaluate(tmp_path)
    assert no_card.exit_code == 2 and "neither a training run nor a bundle" in no_card.output

    empty = evaluate(
        tiny_bundle, "--data", tiny_dataset, "--split", "test", "--out", tmp_path / "o"
    )
    assert empty.exit_code == 2 and "'test'" in empty.output and "no images" in empty.output
    assert not (tmp_path / "o").exists()

    # A dataset with a renamed class: the message names both sides of the mismatch.
    src = tmp_path / "src"
    for cls, new in (("dress", "dress"), ("hat", "cap")):
        shutil.copytree(sample_folder / "validation" / cls, src / new)
    from lensflow.data import ImportConfig, import_dataset

    import_dataset(ImportConfig(src=src, out=tmp_path / "other", workers=1), quiet=True)
    mismatch = evaluate(tiny_bundle, "--data", tmp_path / "other", "--out", tmp_path / "o")
    assert mismatch.exit_code == 2
    assert "only in the dataset: cap" in mismatch.output
    assert "only in the model: hat, pants, shoes, t-shirt" in mismatch.output

    (tmp_path / "exists").mkdir()
    exists = evaluate(tiny_bundle, "--data", tiny_dataset, "--out", tmp_path / "exists")
    assert (
        exists.exit_code == 2
        and "already exists" in exists.output
        and "--overwrite" in exists.output
    )

    not_a_dataset = evaluate(tiny_bundle, "--data", tmp_path / "src")
    assert not_a_dataset.exit_code == 2 and "lensflow data import" in not_a_dataset.output

    bad_split = evaluate(tiny_bundle, "--data", tiny_dataset, "--split", "tset")
    assert bad_split.exit_code == 2 and "--split must be one of" in bad_split.output


def test_labels_are_mapped_by_name_not_index(bundle_eval, tiny_bundle, tiny_dataset, tmp_path):
    """A model whose class order differs from the dataset's gives the same per-class numbers."""
    import dataclasses

    from lensflow.evaluate.evaluator import EvaluateConfig, evaluate_source
    from lensflow.evaluate.sources import open_source

    summary, _ = bundle_eval
    source = open_source(tiny_bundle)
    order = [3, 0, 4, 1, 2]  # the model's columns in a shuffled class order
    forward = source.forward

    def shuffled(x):
        proba, features = forward(x)
        return proba[:, order], features

    source = dataclasses.replace(source, classes=[CLASSES[i] for i in order], forward=shuffled)
    config = EvaluateConfig(source=tiny_bundle, data=tiny_dataset, top_k=2, out=tmp_path / "o")
    result = evaluate_source(source, config, quiet=True).summary
    assert result["classes"] == [CLASSES[i] for i in order]
    assert result["accuracy"] == pytest.approx(summary["accuracy"])
    assert result["top_k_accuracy"] == pytest.approx(summary["top_k_accuracy"])
    for name in CLASSES:
        assert result["per_class"][name] == pytest.approx(summary["per_class"][name])


def test_large_splits_are_subsampled_for_tsne_and_projector(tiny_bundle, tiny_dataset, tmp_path):
    from PIL import Image

    from lensflow.evaluate.evaluator import EvaluateConfig, evaluate

    config = EvaluateConfig(
        source=tiny_bundle,
        data=tiny_dataset,
        out=tmp_path / "o",
        tsne_max_points=6,
        projector_max_points=7,
        n_top_losses=3,
    )
    result = evaluate(config, quiet=True)
    assert result.summary["n"] == 20  # metrics still use every image
    projector = result.out / "projector"
    assert len(np.loadtxt(projector / "tensors.tsv", delimiter="\t")) == 7
    assert len((projector / "metadata.tsv").read_text().splitlines()) == 8
    assert Image.open(projector / "sprite.png").size == (3 * 64, 3 * 64)
    assert (result.out / "embeddings_tsne.png").is_file()


def _predictions(out: Path) -> dict[str, float]:
    with (out / "predictions.csv").open(newline="") as f:
        return {r["id"]: float(r["true_probability"]) for r in csv.DictReader(f)}


def test_run_and_its_bundle_give_the_same_numbers(request, tiny_bundle, tmp_path) -> None:
    """Default dataset and split come from the cards; torch and onnxruntime agree."""
    try:
        run = request.getfixturevalue("tiny_run")
    except pytest.FixtureLookupError:
        pytest.skip("the train stage's tiny_run fixture is not available yet")
    from_run = evaluate(run, "--out", tmp_path / "run-eval", "--json")
    assert from_run.exit_code == 0, from_run.output
    from_bundle = evaluate(tiny_bundle, "--out", tmp_path / "bundle-eval", "--json")
    assert from_bundle.exit_code == 0, from_bundle.output
    a, b = json.loads(from_run.stdout), json.loads(from_bundle.stdout)
    assert a["source"]["kind"] == "run" and b["source"]["kind"] == "bundle"
    assert a["dataset"] == b["dataset"] and a["split"] == b["split"] == "validation"
    assert a["confusion_matrix"] == b["confusion_matrix"]
    for key in ("accuracy", "top_k_accuracy", "loss", "ece"):
        assert a[key] == pytest.approx(b[key], abs=1e-4), key
    pa, pb = _predictions(tmp_path / "run-eval"), _predictions(tmp_path / "bundle-eval")
    assert pa.keys() == pb.keys()
    np.testing.assert_allclose([pa[k] for k in pa], [pb[k] for k in pa], atol=1e-4)
    assert (tmp_path / "run-eval" / "curves.png").is_file()  # from the run's metrics.csv
    assert "Training config" in (tmp_path / "run-eval" / "report.html").read_text()


def test_tensorboard_serves_the_projector_export(bundle_eval) -> None:
    """The real `tensorboard --logdir OUT/projector` finds the export and serves every file."""
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("tensorboard", reason="tensorboard is in the [test] extra")
    from tests.fixtures.mqtt import free_port

    summary, out = bundle_eval
    projector = out / "projector"
    features = np.loadtxt(projector / "tensors.tsv", delimiter="\t", dtype=np.float32, ndmin=2)
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(projector),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/data/plugin/projector"

    def get(path: str) -> bytes:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.read()

    try:
        deadline = time.monotonic() + 60
        while True:  # TensorBoard takes a few seconds to start and to scan the logdir
            try:
                if json.loads(get("/runs")) == ["."]:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "tensorboard did not list the projector run"
            time.sleep(0.5)
        (embedding,) = json.loads(get("/info?run=."))["embeddings"]
        assert embedding["tensorShape"] == list(features.shape)
        name = embedding["tensorName"]
        served = np.frombuffer(get(f"/tensor?run=.&name={name}"), np.float32)
        np.testing.assert_array_equal(served.reshape(features.shape), features)
        metadata = get(f"/metadata?run=.&name={name}").decode()
        assert metadata == (projector / "metadata.tsv").read_text()
        assert len(metadata.splitlines()) == summary["n"] + 1  # header + one row per image
        sprite = get(f"/sprite_image?run=.&name={name}")
        assert sprite == (projector / "sprite.png").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_intervals_are_in_the_json_the_table_and_the_report(bundle_eval) -> None:
    summary, out = bundle_eval
    lo, hi = summary["accuracy_ci95"]
    assert lo <= summary["accuracy"] <= hi and hi - lo > 0.1  # 20 images: a wide interval
    f1_lo, f1_hi = summary["macro_f1_ci95"]
    assert f1_lo <= summary["macro_avg"]["f1"] <= f1_hi
    assert f"{100 * lo:.1f}–{100 * hi:.1f}%" in (out / "report.html").read_text()


def test_compare_reports_both_models_and_mcnemar(tiny_bundle, tiny_run, tiny_dataset, tmp_path):
    out = tmp_path / "a"
    result = evaluate(tiny_bundle, "--data", tiny_dataset, "--out", out, "--json",
                      "--compare", tiny_run)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    c = summary["compare"]
    assert c == json.loads((out / "compare.json").read_text())
    assert c["n"] == summary["n"] == 20 and c["a"]["accuracy"] == summary["accuracy"]
    assert c["only_a_right"] + c["only_b_right"] <= c["disagreements"] == len(c["images"])
    assert 0 < c["mcnemar_exact_p"] <= 1
    with (out / "predictions.csv").open(newline="") as f:
        by_id = {r["id"]: r["predicted"] for r in csv.DictReader(f)}
    assert all(by_id[i["id"]] == i["a"] != i["b"] for i in c["images"])
    # The run alone, evaluated the ordinary way, has the accuracy the comparison gives B.
    alone = evaluate(tiny_run, "--data", tiny_dataset, "--out", tmp_path / "b", "--json")
    assert json.loads(alone.stdout)["accuracy"] == pytest.approx(c["b"]["accuracy"])
    # A quick run is one pass: its report shows the sweep over C that it measured.
    assert "C sweep" in (tmp_path / "b" / "report.html").read_text()


def test_compare_with_itself_finds_no_difference(tiny_bundle, tiny_dataset, tmp_path):
    result = evaluate(tiny_bundle, "--data", tiny_dataset, "--out", tmp_path / "a", "-q",
                      "--compare", tiny_bundle)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "0 predicted differently" in lines[2] and "p = 1 " in lines[2]
