"""Make test videos from real photos (OpenCV VideoWriter), so the expected label of every frame
is known. Used by the live and capture tests and by bench/live_fps.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lensflow.errors import LiveError
from lensflow.io import atomic_path

CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def fit_frame(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to fit inside width x height (keeping the aspect) and pad with black."""
    import cv2

    h, w = image_bgr.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - nh) // 2, (width - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def photo_frames(
    paths: Sequence[str | os.PathLike[str]], size: tuple[int, int] = (640, 480), repeat: int = 1
) -> Iterator[np.ndarray]:
    """Each photo fitted to `size` (width, height), repeated `repeat` times, in order."""
    import cv2

    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise LiveError(f"cannot read image {path}")
        frame = fit_frame(image, *size)
        for _ in range(repeat):
            yield frame


def write_video(
    frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float = 10.0
) -> Path:
    """Write BGR frames (all the same size) to .mp4 (mp4v) or .avi (MJPG); returns the path."""
    import cv2

    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise LiveError(f"video must end in {', '.join(CODECS)}, got {path.name}")
    count = 0
    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    h, w = frame.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(*codec)
                    writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                    if not writer.isOpened():
                        raise LiveError(f"OpenCV cannot write {codec} video to {path}")
                writer.write(frame)
                count += 1
        finally:
            if writer is not None:
                writer.release()
        if count == 0:
            raise LiveError("no frames to write")
    return path


def wall_frame(seed: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A camera-like BGR frame of an empty scene: a plain wall or table top, no object.

    One colour with a lighting gradient, vignetting, sensor noise and a little blur: what a
    camera sees between two objects. Deterministic for a seed, so tests know every frame.
    """
    import cv2

    rng = np.random.default_rng(seed)
    width, height = size
    scale = float(max(width, height))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / scale
    cy, cx = height / scale / 2, width / scale / 2
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)
    # Walls are mostly grey with a tint; light falls off the same way in every channel.
    base = (rng.uniform(40, 230) + rng.normal(0, 18, 3)).astype(np.float32)
    light = (rng.uniform(-90, 90) + rng.normal(0, 8, 3)).astype(np.float32)
    img = base + gradient[..., None] * light
    radius2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
    img *= (1 - rng.uniform(0.05, 0.45) * radius2)[..., None]
    img += rng.normal(0, rng.uniform(1.5, 9), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(0.6, 2.5)))


def wall_frames(
    count: int, seed: int = 0, size: tuple[int, int] = (640, 480)
) -> Iterator[np.ndarray]:
    """`count` different empty-scene frames (see `wall_frame`)."""
    for i in range(count):
        yield wall_frame(seed * 100_003 + i, size)
