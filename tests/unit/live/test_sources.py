"""Frame sources on real files; a lost HTTP stream reconnects; the threaded reader's modes."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lensflow.errors import LiveError
from lensflow.live.sources import (
    CaptureSource,
    FolderSource,
    FrameReader,
    open_source,
    source_kind,
)
from lensflow.live.video import write_video
from lensflow.live.view import FrameHub, ViewServer
from tests.unit.live.conftest import REPEAT


def test_source_kind(tmp_path: Path, test_video: Path) -> None:
    assert source_kind("0") == "camera"
    assert source_kind("rtsp://cam/1") == "stream"
    assert source_kind("http://cam/video.mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(test_video)) == "video"
    with pytest.raises(LiveError, match="not found: expected a camera index"):
        source_kind(str(tmp_path / "missing.mp4"))
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    with pytest.raises(LiveError, match="single image"):
        source_kind(str(photo))


def test_video_source_reads_every_frame_then_ends(test_video: Path, video_photos: list) -> None:
    with open_source(str(test_video)) as src:
        frames = list(src)
    assert isinstance(src, CaptureSource) and not src.live
    assert len(frames) == len(video_photos) * REPEAT
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8


def test_unreadable_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(LiveError, match="cannot read video"):
        open_source(str(bad))


def test_folder_source_natural_order_and_skips_unreadable(
    tmp_path: Path, video_photos: list
) -> None:
    for i, photo in enumerate(video_photos[:3]):
        shutil.copy(photo, tmp_path / f"frame{[2, 10, 1][i]}.jpg")
    (tmp_path / "frame5.jpg").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    events: list[str] = []
    with open_source(str(tmp_path), report=events.append) as src:
        names = [f.name for f in src]
    assert isinstance(src, FolderSource)
    assert names == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    assert events == ["skipped unreadable image frame5.jpg"]


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LiveError, match="has no images"):
        open_source(str(tmp_path))


def test_reader_all_every_and_max_frames(test_video: Path) -> None:
    reader = FrameReader(open_source(str(test_video)), mode="all", every=4, max_frames=3)
    assert [f.index for f in reader] == [0, 4, 8]
    reader.stop()


def test_reader_paces_to_fps(test_video: Path) -> None:
    start = time.monotonic()
    reader = FrameReader(open_source(str(test_video)), mode="all", fps=20, max_frames=6)
    assert len(list(reader)) == 6
    assert time.monotonic() - start >= 0.25  # 6 frames at 20/s: at least 5 periods
    reader.stop()


def test_reader_latest_mode_skips_for_a_slow_consumer(test_video: Path) -> None:
    reader = FrameReader(open_source(str(test_video)), mode="latest")
    seen = []
    for frame in reader:
        seen.append(frame.index)
        time.sleep(0.1)  # slower than decoding: the reader drops stale frames
    total = len(seen) + reader.skipped
    assert reader.skipped > 0 and seen == sorted(seen)
    assert seen[-1] == total - 1  # the last frame is never dropped
    reader.stop()


def test_reader_reraises_source_errors() -> None:
    class Broken(FolderSource):
        def __init__(self) -> None:
            self.frames_read = 0

        def read(self):
            raise LiveError("camera exploded")

    with pytest.raises(LiveError, match="camera exploded"):
        list(FrameReader(Broken()))


def _serve_frames(hub: FrameHub, stop: threading.Event) -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    i = 0
    while not stop.is_set():
        frame[:] = i % 255
        hub.update(frame.copy())
        i += 1
        time.sleep(0.02)


def test_lost_stream_is_reopened_with_backoff_and_reported() -> None:
    # A real MJPEG HTTP stream (lensflow's own view server) that goes away and comes back.
    hub = FrameHub()
    stop = threading.Event()
    threading.Thread(target=_serve_frames, args=(hub, stop), daemon=True).start()
    server = ViewServer(hub, "127.0.0.1", 0)
    port = server.port
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    events: list[str] = []
    try:
        src = open_source(url, report=events.append, reconnect_timeout=20)
        assert src.live and src.kind == "stream"
        assert src.read() is not None
        server.close()
        hub2 = FrameHub()
        threading.Thread(target=_serve_frames, args=(hub2, stop), daemon=True).start()

        def restart() -> None:
            time.sleep(1.5)
            nonlocal server
            server = ViewServer(hub2, "127.0.0.1", port)

        threading.Thread(target=restart, daemon=True).start()
        # Reading continues through the outage: frames before, a reconnect, frames after.
        for _ in range(40):
            assert src.read() is not None
        assert src.reconnects >= 1
        assert any("lost; reopening" in e for e in events), events
        assert any("is back after" in e for e in events), events
        src.close()
    finally:
        stop.set()
        server.close()


def test_stream_that_never_comes_back_gives_up() -> None:
    hub = FrameHub()
    hub.update(np.zeros((60, 80, 3), np.uint8))
    server = ViewServer(hub, "127.0.0.1", 0)
    src = CaptureSource(
        f"http://127.0.0.1:{server.port}/frame.jpg",
        "stream",
        reconnect_timeout=1.0,
        min_backoff=0.2,
    )
    server.close()
    with pytest.raises(LiveError, match="did not come back within 1s"):
        for _ in range(100):
            src.read()


def test_write_video_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(LiveError, match="video must end in"):
        write_video([np.zeros((8, 8, 3), np.uint8)], tmp_path / "x.gif")


def test_loop_plays_files_again(test_video: Path, video_photos: list, tmp_path: Path) -> None:
    n = len(video_photos) * REPEAT
    reader = FrameReader(open_source(str(test_video), loop=True), max_frames=n + 5)
    frames = list(reader)
    reader.stop()
    assert [f.index for f in frames] == list(range(n + 5))  # indexes keep counting
    assert np.array_equal(frames[n].image, frames[0].image)  # the video started again
    for i, photo in enumerate(video_photos[:2]):
        shutil.copy(photo, tmp_path / f"{i}.jpg")
    with open_source(str(tmp_path), loop=True) as src:
        names = [src.read().name for _ in range(5)]
    assert names == ["0.jpg", "1.jpg", "0.jpg", "1.jpg", "0.jpg"]
