"""Frame sources: a camera index, a video file, an image folder or an RTSP/HTTP stream (OpenCV).

Every source yields BGR uint8 frames (OpenCV's order; the loop converts for the Predictor) and
returns None at its end. File sources end at EOF; live sources (cameras, streams) that stop
delivering are reopened with exponential back-off, each attempt reported through `report`, and give
up with a LiveError after `reconnect_timeout` seconds. A stream (rtsp://, http://) that does not
answer, or goes silent, for `stream_timeout` seconds counts as not there / lost: FFmpeg's own
default would block for 30 s on a server that accepts the connection and never replies.

`FrameReader` runs a source in a thread so decoding overlaps classification. Live sources keep only
the newest frame (a slow classifier skips frames instead of lagging behind the camera); files queue
every frame, unless paced with `fps`, in which case they behave like a camera at that rate.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.errors import LiveError

# OpenCV and FFmpeg print warnings for every failed open; our LiveErrors say it better.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpg", ".mjpeg", ".mpg"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

Report = Callable[[str], None]


def _ignore(message: str) -> None:
    pass


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the source (frames read, including skipped ones)
    image: np.ndarray  # BGR uint8 H x W x 3
    ts: float  # time.time() when the frame was read
    name: str = ""  # file name, for image folders


class FrameSource:
    """Base class: `read()` returns the next Frame or None at the end; `close()` releases it."""

    kind = "source"
    live = False  # True: frames arrive in real time and stale ones are worth dropping
    loop = False  # files only: start again at the end (a kiosk, a demo, a page test)

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.frames_read = 0

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.kind} {self.spec}"


def _natural_key(path: Path) -> list[Any]:
    # frame2.jpg before frame10.jpg
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FolderSource(FrameSource):
    """Image files of a folder (not recursive), in natural name order. Unreadable files are skipped
    and reported; a folder without a single readable image is an error."""

    kind = "folder"

    def __init__(self, path: Path, report: Report = _ignore) -> None:
        super().__init__(str(path))
        self.files = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=_natural_key,
        )
        if not self.files:
            raise LiveError(
                f"image folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.report = report
        self.skipped: list[str] = []
        self._next = 0

    def read(self) -> Frame | None:
        import cv2

        while True:
            if self._next >= len(self.files):
                # Loop only if the last pass produced a frame: a folder of broken files ends.
                if not (self.loop and self.frames_read > 0):
                    return None
                self._next = 0
            path = self.files[self._next]
            self._next += 1
            # imread applies EXIF orientation, like lensflow's own decoding.
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append(path.name)
                self.report(f"skipped unreadable image {path.name}")
                continue
            frame = Frame(self.frames_read, image, time.time(), path.name)
            self.frames_read += 1
            return frame


class CaptureSource(FrameSource):
    """cv2.VideoCapture over a video file, a camera index or a stream URL."""

    def __init__(
        self,
        spec: str,
        kind: str,
        report: Report = _ignore,
        reconnect_timeout: float = 30.0,
        min_backoff: float = 0.5,
        max_backoff: float = 8.0,
        stream_timeout: float = 10.0,
    ) -> None:
        super().__init__(spec)
        self.kind = kind
        self.live = kind in ("camera", "stream")
        self.report = report
        self.reconnect_timeout = reconnect_timeout
        self.stream_timeout = stream_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.reconnects = 0
        self._cap = self._open()
        if self._cap is None:
            raise LiveError(self._cannot_open())
        # Check that frames actually come out now: a file with a video extension that is not
        # a video opens fine on some backends and fails only at the first read.
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise LiveError(self._cannot_open("it opened but delivered no frame"))
        self._first: np.ndarray | None = first

    def _target(self) -> int | str:
        return int(self.spec) if self.kind == "camera" else self.spec

    def _open(self) -> Any:
        import cv2

        if self.kind == "stream":
            ms = max(1, round(self.stream_timeout * 1000))
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, timeouts)
        else:
            cap = cv2.VideoCapture(self._target())
        if not cap.isOpened():
            cap.release()
            return None
        if self.live:
            # Keep the driver's queue short so frames are fresh (ignored by backends without it).
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _cannot_open(self, why: str = "") -> str:
        why = f" ({why})" if why else ""
        if self.kind == "camera":
            return (
                f"cannot open camera {self.spec}{why}; check that it is connected and not in use "
                "(`ls /dev/video*`), or pass a video file, image folder or stream URL to --source"
            )
        if self.kind == "stream":
            return (
                f"cannot open stream {self.spec}{why}: no video within {self.stream_timeout:g}s "
                "(--stream-timeout); "
                "check the URL and that the server is up"
            )
        return f"cannot read video {self.spec}{why}; is it a video file OpenCV/FFmpeg can decode?"

    @property
    def native_fps(self) -> float:
        import cv2

        fps = float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0
        return fps if 0 < fps < 1000 else 0.0

    def read(self) -> Frame | None:
        if self._first is not None:
            image, self._first = self._first, None
        else:
            image = self._grab()
            if image is None:
                return None
        frame = Frame(self.frames_read, image, time.time())
        self.frames_read += 1
        return frame

    def _grab(self) -> np.ndarray | None:
        if self._cap is not None:
            ok, image = self._cap.read()
            if ok and image is not None:
                return image
        if not self.live:
            if self.loop and self._cap is not None:
                import cv2

                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # rewind and play again
                ok, image = self._cap.read()
                if ok and image is not None:
                    return image
            return None  # end of file
        return self._reconnect()

    def _reconnect(self) -> np.ndarray:
        """Reopen a lost camera/stream with exponential back-off, or raise LiveError."""
        name = f"{self.kind} {self.spec}"
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        deadline = time.monotonic() + self.reconnect_timeout
        delay, attempt = self.min_backoff, 0
        while time.monotonic() < deadline:
            attempt += 1
            wait = min(delay, max(0.0, deadline - time.monotonic()))
            self.report(f"{name} lost; reopening in {wait:.1f}s (attempt {attempt})")
            time.sleep(wait)
            cap = self._open()
            if cap is not None:
                ok, image = cap.read()
                if ok and image is not None:
                    self._cap = cap
                    self.reconnects += 1
                    self.report(f"{name} is back after {attempt} attempt(s)")
                    return image
                cap.release()
            delay = min(delay * 2, self.max_backoff)
        raise LiveError(
            f"{name} was lost and did not come back within {self.reconnect_timeout:g}s "
            f"({attempt} attempts); check the device or URL and start again"
        )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def source_kind(spec: str) -> str:
    """camera | stream | folder | video, from the --source text; LiveError if it is none of them."""
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        return "camera"
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise LiveError(
                f"{spec} is a single image; put it in a folder and pass the folder to --source "
                "(or use `lensflow predict` for one image)"
            )
        return "video"
    raise LiveError(
        f"source {spec!r} not found: expected a camera index (0), a video file, an image folder "
        "or an rtsp:// / http:// stream URL"
    )


def open_source(
    spec: str,
    report: Report = _ignore,
    reconnect_timeout: float = 30.0,
    loop: bool = False,
    stream_timeout: float = 10.0,
) -> FrameSource:
    """Open --source: `0` (camera), `video.mp4`, `photos/` or `rtsp://...` / `http://...`.

    loop=True plays a video file or image folder again from the start at its end.
    stream_timeout: seconds a stream may take to answer or stay silent before it is lost."""
    kind = source_kind(spec)
    source: FrameSource
    if kind == "folder":
        source = FolderSource(Path(spec).expanduser(), report)
    else:
        target = str(Path(spec).expanduser()) if kind == "video" else spec.strip()
        source = CaptureSource(
            target, kind, report, reconnect_timeout=reconnect_timeout, stream_timeout=stream_timeout
        )
    source.loop = loop and not source.live
    return source


_END = object()


class FrameReader:
    """Read a source in a background thread; iterate to get frames (optionally transformed there).

    mode "all": every frame, in order, through a small queue (a slow consumer slows the reader).
    mode "latest": only the newest frame is kept (a slow consumer skips frames, never lags).
    `fps` paces the reader to that many frames per second (a file then plays like a camera).
    `every` keeps every k-th frame of the source. `transform(frame)` runs in the reader thread
    (preprocessing there overlaps the classifier). Errors in the thread re-raise in the consumer.
    """

    def __init__(
        self,
        source: FrameSource,
        mode: str = "all",
        fps: float | None = None,
        every: int = 1,
        max_frames: int | None = None,
        transform: Callable[[Frame], Any] | None = None,
    ) -> None:
        if mode not in ("all", "latest"):
            raise LiveError(f"reader mode must be 'all' or 'latest', not {mode!r}")
        if every < 1:
            raise LiveError(f"--every must be >= 1, got {every}")
        if fps is not None and fps <= 0:
            raise LiveError(f"--fps must be > 0, got {fps}")
        self.source = source
        self.mode = mode
        self.fps = fps
        self.every = every
        self.max_frames = max_frames
        self.transform = transform
        self.skipped = 0  # frames read but dropped because the consumer was busy
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4 if mode == "all" else 2)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        if self.mode == "latest" and item is not _END:
            # Replace an unconsumed frame with the newer one (the queue holds one frame + END).
            while True:
                try:
                    self._queue.get_nowait()
                    self.skipped += 1
                except queue.Empty:
                    break
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps else 0.0
        next_at = time.monotonic()
        kept = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and kept >= self.max_frames:
                    break
                frame = self.source.read()
                if frame is None:
                    break
                if frame.index % self.every:
                    continue
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        next_at = time.monotonic()  # fell behind: do not burst to catch up
                kept += 1
                self._put(self.transform(frame) if self.transform else frame)
        except BaseException as e:  # re-raised in the consumer thread
            self._error = e
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
