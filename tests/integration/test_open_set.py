"""Open-set rejection end to end: quick training on the bundled sample with some photos held back,
`lensflow export` (writes the score), `predict` on a generated wall and on the held-back photos,
`evaluate --ood`, and `live` on a video of photos separated by wall frames through `pairs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.live.video import photo_frames, wall_frame, write_video

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def held_back(tmp_path_factory: pytest.TempPathFactory, sample_folder: Path) -> dict:
    """A bundle trained without the last train photo of every class, and those photos."""
    root = tmp_path_factory.mktemp("open-set")
    folder = root / "sample"
    shutil.copytree(sample_folder, folder)
    photos = []
    for d in sorted((folder / "train").iterdir()):
        last = sorted(d.glob("*.jpg"))[-1]
        photos.append(last.rename(root / f"{d.name}-{last.name}"))
    run_cli("data", "import", str(folder), "--out", str(root / "ds"), "-q")
    run_cli("train", str(root / "ds"), "--out", str(root / "run"), "--mode", "quick",
            "--cache-dir", str(root / "cache"), "-q")  # fmt: skip
    card = json.loads(
        run_cli("export", str(root / "run"), "--out", str(root / "bundle"), "--json", "-q")
    )
    walls = root / "walls"
    walls.mkdir()
    for i in range(6):
        cv2.imwrite(str(walls / f"wall{i}.jpg"), wall_frame(1000 + i))
    return {"bundle": root / "bundle", "card": card, "photos": photos, "walls": walls}


def predict_json(bundle: Path, *images: Path) -> list[dict]:
    out = run_cli("predict", str(bundle), *map(str, images), "--json")
    return [json.loads(line) for line in out.splitlines()]


def test_export_writes_a_calibrated_score(held_back):
    osc = held_back["card"]["open_set"]
    assert (held_back["bundle"] / "openset.npz").is_file()
    assert osc["method"] in ("knn", "mahalanobis") and osc["threshold"] > 0
    assert osc["calibration_source"] == "validation" and osc["calibration_images"] == 20
    assert osc["unknown_rate"] == 0.05 and osc["calibration_rejected"] <= 0.05


def test_a_wall_is_unknown_and_held_back_photos_are_not(held_back):
    preds = predict_json(held_back["bundle"], *sorted(held_back["walls"].iterdir()))
    assert all(p["unknown"] for p in preds), [(p["label"], p["ood_score"]) for p in preds]
    photos = predict_json(held_back["bundle"], *held_back["photos"])
    for p in photos:
        assert set(p) >= {"label", "probability", "unknown", "ood_score"}
    known = [p for p in photos if not p["unknown"]]
    # 5 % of photos of known classes may be rejected by design; of these 5, at most one
    assert len(known) >= len(photos) - 1, [(p["image"], p["ood_score"]) for p in photos]
    assert min(p["ood_score"] for p in preds) > max(p["ood_score"] for p in known)


def test_evaluate_ood_reports_separation(held_back, tmp_path):
    out = run_cli("evaluate", str(held_back["bundle"]), "--ood", str(held_back["walls"]),
                  "--out", str(tmp_path / "ev"), "--json", "-q",
                  "--tsne-max", "30", "--projector-max", "30")  # fmt: skip
    osc = json.loads(out)["open_set"]
    assert osc["auroc"] == 1.0 and osc["ood_rejected"] == 1.0
    assert osc["in_distribution_images"] == 20 and osc["ood_images"] == 6
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["open_set"] == osc
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "Open-set rejection" in html and 'alt="Open-set scores"' in html


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "has no images (it is empty)"),
        (lambda d: (d / "notes.txt").write_text("x") and d, "none of them an image"),
        (lambda d: d / "missing", "--ood folder not found"),
    ],
)
def test_bad_ood_folders_give_one_line_errors(tiny_bundle, tmp_path, make, message):
    folder = tmp_path / "ood"
    folder.mkdir()
    target = make(folder)
    result = CliRunner().invoke(
        app, ["evaluate", str(tiny_bundle), "--ood", str(target), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()


def test_live_publishes_walls_as_blank_and_pairs_counts_each_show(held_back, tmp_path):
    """Photos shown 2 s each, 2 s of wall between them, played at 10 fps like a camera (long
    enough that a loaded machine still classifies a frame of every show)."""
    photos = {Path(p).name.split("-")[0]: p for p in held_back["photos"]}
    order = ["hat", "pants", "hat", "shoes"]  # hat twice: a pair; pants and shoes once
    frames = []
    for n, label in enumerate(order):
        frames += list(photo_frames([photos[label]], (640, 480), repeat=20))
        frames += [wall_frame(2000 + n)] * 20
    video = write_video(frames, tmp_path / "show.avi", fps=10)
    out = run_cli("live", str(held_back["bundle"]), "--source", str(video), "--fps", "10",
                  "--stdout", "-q")  # fmt: skip
    messages = tmp_path / "live.jsonl"
    messages.write_text(out)
    labels = [json.loads(line)["image"] for line in out.splitlines()]
    assert "Blank" in labels
    table = json.loads(run_cli("pairs", "--replay", str(messages), "--window", "session:1s",
                               "--json", "-q"))  # fmt: skip
    assert table == {
        "hat": {"number_socks_seen": 2, "pair_seen": "Pair"},
        "pants": {"number_socks_seen": 1, "pair_seen": "Un-matched"},
        "shoes": {"number_socks_seen": 1, "pair_seen": "Un-matched"},
    }, labels
