"""Live-stage fixtures: a test video made from real photos of the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.live.video import photo_frames, write_video

REPEAT = 3  # frames per photo in the test video


@pytest.fixture(scope="session")
def video_photos(sample_folder: Path) -> list[Path]:
    """Two validation photos per class, class after class: the order of the test video."""
    classes = sorted(d for d in (sample_folder / "validation").iterdir() if d.is_dir())
    return [p for d in classes for p in sorted(d.glob("*.jpg"))[:2]]


@pytest.fixture(scope="session")
def test_video(tmp_path_factory: pytest.TempPathFactory, video_photos: list[Path]) -> Path:
    """640x480 MJPG .avi, REPEAT frames per photo (near-lossless, so labels are stable)."""
    out = tmp_path_factory.mktemp("live-video") / "photos.avi"
    return write_video(photo_frames(video_photos, (640, 480), REPEAT), out, fps=10)
