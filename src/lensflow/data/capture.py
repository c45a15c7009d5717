"""`lensflow capture`: save frames of a camera/video/stream into OUT/<label>/ for `data import`.

It reuses the live loop's frame sources. A frame is saved when at least `interval` seconds passed
since the last saved one (camera time for live sources, the video's own timeline for files) and it
differs from the last saved frame by at least `min_change` (mean absolute difference of small
grayscale thumbnails, in percent of full scale), so 30 photos are 30 different views rather than
30 copies of one. Each JPEG is written atomically; an interrupted capture keeps what it saved.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.errors import CollectError, LiveError

THUMB = (64, 48)  # thumbnail size for the change test: small enough to ignore sensor noise


@dataclass(frozen=True)
class CaptureConfig:
    source: str  # camera index, video file, image folder or stream URL (as `lensflow live`)
    label: str  # class name: frames go to out/label/
    out: Path
    count: int = 30  # frames to save
    interval: float = 0.5  # seconds between saved frames, at least
    min_change: float = 2.0  # percent mean abs difference from the last saved frame, at least
    view: str | None = None  # HOST:PORT of a preview page
    quality: int = 95  # JPEG quality
    reconnect_timeout: float = 30.0

    def __post_init__(self) -> None:
        check_label(self.label)
        if self.count < 1:
            raise CollectError(f"--count must be >= 1, got {self.count}")
        if self.interval < 0:
            raise CollectError(f"--interval must be >= 0 seconds, got {self.interval}")
        if not 0 <= self.min_change <= 100:
            raise CollectError(f"--min-change must be a percent 0..100, got {self.min_change}")
        if not 1 <= self.quality <= 100:
            raise CollectError(f"JPEG quality must be 1..100, got {self.quality}")


def check_label(label: str) -> None:
    """A label becomes a folder name: no separators, not empty, not hidden."""
    if not label.strip() or label != label.strip():
        raise CollectError(
            f"--label must be a non-empty name without surrounding spaces, got {label!r}"
        )
    if "/" in label or "\\" in label or label.startswith(".") or "\0" in label:
        raise CollectError(
            f"--label {label!r} must be a plain folder name (no '/', '\\' or leading '.'), e.g. hat"
        )


def thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    """Small float32 grayscale copy for the change test (area averaging removes pixel noise)."""
    import cv2

    gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def change_percent(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in percent of full scale (0..100)."""
    return float(np.abs(a - b).mean() / 255.0 * 100.0)


@dataclass
class CaptureSelector:
    """Pure decision: keep this frame or not (interval, then change from the last kept frame)."""

    interval: float
    min_change: float
    last_time: float | None = None
    last_thumb: np.ndarray | None = None
    skipped_interval: int = 0
    skipped_similar: int = 0

    def offer(self, t: float, thumb: np.ndarray) -> bool:
        if self.last_time is not None and t - self.last_time < self.interval:
            self.skipped_interval += 1
            return False
        if self.last_thumb is not None and change_percent(thumb, self.last_thumb) < self.min_change:
            self.skipped_similar += 1
            return False
        self.last_time, self.last_thumb = t, thumb
        return True


@dataclass
class CaptureResult:
    out: str
    label: str
    saved: int = 0
    frames_read: int = 0
    skipped_similar: int = 0
    skipped_interval: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stopped_by: str = "count reached"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _media_clock(source: Any, interval: float) -> Callable[[Any], float]:
    """Seconds of a frame: wall time for cameras/streams, the file's own timeline otherwise."""
    if source.live:
        return lambda frame: frame.ts
    fps = getattr(source, "native_fps", 0.0) or 0.0
    if fps > 0:
        return lambda frame: frame.index / fps
    # Image folders have no timeline: each image counts as one interval later.
    return lambda frame: frame.index * interval


def _next_index(folder: Path, label: str) -> int:
    """Continue numbering after earlier captures into the same folder."""
    pattern = re.compile(rf"^{re.escape(label)}-(\d+)\.jpg$")
    numbers = [int(m.group(1)) for p in folder.glob("*.jpg") if (m := pattern.match(p.name))]
    return max(numbers, default=0) + 1


def capture(
    config: CaptureConfig,
    on_saved: Callable[[CaptureResult], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    hub: Any | None = None,
) -> CaptureResult:
    """Run a capture to the end (count reached, source ended, or Ctrl-C)."""
    import cv2

    from lensflow.io import atomic_write_bytes
    from lensflow.live.frames import draw_banner
    from lensflow.live.sources import FrameReader, open_source

    result = CaptureResult(out=str(config.out), label=config.label)

    def event(message: str) -> None:
        result.events.append(message)
        if on_event is not None:
            on_event(message)

    try:
        source = open_source(
            config.source, report=event, reconnect_timeout=config.reconnect_timeout
        )
    except LiveError as e:
        # The live stage raises LiveError; for capture it is a collection problem.
        raise CollectError(e.message) from e
    folder = Path(config.out) / config.label
    folder.mkdir(parents=True, exist_ok=True)
    number = _next_index(folder, config.label)
    selector = CaptureSelector(config.interval, config.min_change)
    clock = _media_clock(source, config.interval)
    reader = FrameReader(source, mode="latest" if source.live else "all")
    start = time.monotonic()
    try:
        for frame in reader:
            keep = selector.offer(clock(frame), thumbnail(frame.image))
            if keep:
                ok, buf = cv2.imencode(
                    ".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, config.quality]
                )
                if not ok:
                    raise CollectError(f"cannot encode frame {frame.index} as JPEG")
                path = folder / f"{config.label}-{number:04d}.jpg"
                atomic_write_bytes(path, buf.tobytes())
                number += 1
                result.saved += 1
                result.files.append(str(path))
            result.frames_read = source.frames_read
            result.skipped_similar = selector.skipped_similar
            result.skipped_interval = selector.skipped_interval
            if hub is not None:
                colour = (80, 80, 230) if keep else (200, 200, 200)  # BGR: red flash on save
                hub.update(
                    draw_banner(frame.image, f"{config.label}  {result.saved}/{config.count}",
                                f"{result.skipped_similar} similar skipped", colour),
                    label=config.label, probability=100.0 * result.saved / config.count,
                    frames=result.frames_read, classified=result.saved, published=result.saved,
                )  # fmt: skip
            if keep and on_saved is not None:
                on_saved(result)
            if result.saved >= config.count:
                break
        else:
            result.stopped_by = "end of source"
    except KeyboardInterrupt:
        result.stopped_by = "interrupted (Ctrl-C)"
    finally:
        reader.stop()
        source.close()
        result.frames_read = source.frames_read
        result.seconds = round(time.monotonic() - start, 3)
    return result
