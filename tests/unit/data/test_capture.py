"""`lensflow capture` from generated videos of real photos: count, layout, near-duplicate
skipping, interval, and that the output imports with `lensflow data import`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.data.capture import (
    THUMB,
    CaptureConfig,
    CaptureSelector,
    capture,
    change_percent,
    thumbnail,
)
from lensflow.errors import CollectError
from lensflow.live.video import photo_frames, write_video

REPEAT = 10  # identical frames per photo
THUMB_SHAPE = (THUMB[1], THUMB[0])


@pytest.fixture(scope="module")
def photos(sample_folder: Path) -> dict[str, list[Path]]:
    """Three validation photos each of hats and shoes."""
    val = sample_folder / "validation"
    return {c: sorted((val / c).glob("*.jpg"))[:3] for c in ("hat", "shoes")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, photos) -> dict[str, Path]:
    """Per class: 3 photos x REPEAT frames at 10 fps (MJPG: near-lossless, stills stay still)."""
    d = tmp_path_factory.mktemp("capture-videos")
    return {
        c: write_video(photo_frames(ps, (320, 240), REPEAT), d / f"{c}.avi", fps=10)
        for c, ps in photos.items()
    }


def test_selector_interval_then_change() -> None:
    a = np.zeros(THUMB_SHAPE, np.float32)
    b = np.full(THUMB_SHAPE, 255, np.float32)
    s = CaptureSelector(interval=1.0, min_change=5.0)
    assert s.offer(0.0, a)
    assert not s.offer(0.5, b)  # too soon
    assert not s.offer(1.5, a)  # same as the last saved
    assert s.offer(2.0, b)
    assert (s.skipped_interval, s.skipped_similar) == (1, 1)


def test_change_percent_ignores_sensor_noise_but_not_a_new_view(photos) -> None:
    frames = list(photo_frames([photos["hat"][0], photos["shoes"][0]], (320, 240)))
    rng = np.random.default_rng(0)
    noisy = np.clip(frames[0] + rng.normal(0, 4, frames[0].shape), 0, 255).astype(np.uint8)
    assert change_percent(thumbnail(frames[0]), thumbnail(noisy)) < 1.0
    assert change_percent(thumbnail(frames[0]), thumbnail(frames[1])) > 5.0


def test_capture_keeps_one_frame_per_distinct_view(tmp_path: Path, videos, photos) -> None:
    out = tmp_path / "photos"
    config = CaptureConfig(source=str(videos["hat"]), label="hat", out=out, count=30, interval=0)
    result = capture(config)
    files = sorted((out / "hat").iterdir())
    assert [f.name for f in files] == ["hat-0001.jpg", "hat-0002.jpg", "hat-0003.jpg"]
    assert result.saved == 3 and result.frames_read == 3 * REPEAT
    assert result.skipped_similar == 3 * REPEAT - 3
    assert result.stopped_by == "end of source"
    # Each saved file is the first frame of its photo, in order.
    for saved, frame in zip(files, list(photo_frames(photos["hat"], (320, 240))), strict=True):
        img = cv2.imread(str(saved)).astype(np.int16)
        assert np.abs(img - frame).mean() < 4.0


def test_capture_stops_at_count_and_continues_numbering(tmp_path: Path, videos) -> None:
    config = CaptureConfig(
        source=str(videos["hat"]), label="hat", out=tmp_path, count=2, interval=0
    )
    first = capture(config)
    assert first.saved == 2 and first.stopped_by == "count reached"
    second = capture(config)
    assert [Path(f).name for f in second.files] == ["hat-0003.jpg", "hat-0004.jpg"]


def test_capture_interval_uses_the_video_timeline(tmp_path: Path, videos) -> None:
    # 30 frames at 10 fps = 3 s of video; every 0.5 s with no change test -> frames 0, 5, ... 25.
    config = CaptureConfig(
        source=str(videos["shoes"]),
        label="shoes",
        out=tmp_path,
        count=100,
        interval=0.5,
        min_change=0,
    )
    result = capture(config)
    assert result.saved == 6 and result.skipped_interval == 24


def test_capture_preview_hub_shows_progress(tmp_path: Path, videos) -> None:
    from lensflow.live.view import FrameHub

    hub = FrameHub()
    config = CaptureConfig(
        source=str(videos["hat"]), label="hat", out=tmp_path, count=2, interval=0
    )
    capture(config, hub=hub)
    seq, jpeg = hub.jpeg(timeout=0)
    assert seq >= 2 and jpeg is not None and jpeg[:2] == b"\xff\xd8"
    assert json.loads(hub.status_json())["classified"] == 2  # saved count shown on the page


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"label": "../x"}, "plain folder name"),
        ({"label": ""}, "non-empty"),
        ({"count": 0}, "--count"),
        ({"interval": -1}, "--interval"),
        ({"min_change": 200}, "--min-change"),
    ],
)
def test_bad_config(tmp_path: Path, kwargs: dict, fragment: str) -> None:
    base = {"source": "0", "label": "hat", "out": tmp_path}
    with pytest.raises(CollectError, match=re.escape(fragment)):
        CaptureConfig(**{**base, **kwargs})


def _clean(output: str) -> str:
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def test_cli_capture_then_data_import(tmp_path: Path, videos) -> None:
    out = tmp_path / "photos"
    runner = CliRunner()
    saved = {}
    for label, video in videos.items():
        result = runner.invoke(
            app, ["capture", "--source", str(video), "--label", label, "--out", str(out),
                  "--interval", "0", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        saved[label] = json.loads(result.stdout)["saved"]
        assert (out / f".capture-{label}.yaml").is_file()  # the config, hidden from import
    assert saved == {"hat": 3, "shoes": 3}
    ds = tmp_path / "ds"
    result = runner.invoke(
        app, ["data", "import", str(out), "--out", str(ds), "--min-per-class", "1", "-q"]
    )
    assert result.exit_code == 0, result.output
    card = json.loads((ds / "card.json").read_text())
    assert card["classes"] == ["hat", "shoes"]
    assert card["counts"]["all"] == {"hat": 3, "shoes": 3}
    report = json.loads((ds / "report.json").read_text())
    assert report["skipped"] == [] and report["duplicates"] == []


def test_cli_bad_source_and_label(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["capture", "--source", str(tmp_path / "nope.mp4"), "--label", "x", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2 and "not found: expected a camera index" in _clean(result.output)
    result = runner.invoke(
        app, ["capture", "--source", "0", "--label", "a/b", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "plain folder name" in _clean(result.output)
    assert "Traceback" not in result.output
