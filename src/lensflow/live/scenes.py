"""Camera-like scenes made from real photos: objects shown one after another on a table.

Used by the tests and the benchmark of `live --pair-by-appearance`, so the truth of every frame
is known: a wood-like table top (grain, a lighting gradient, sensor noise on every frame), each
photo laid on it at a slightly different place and size per showing, optional lighting flicker
and an optional hand (a skin-coloured blob) that carries the photo in and out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lensflow.errors import LiveError


def table(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A light wooden table top (BGR uint8): wavy grain, a few knots of shade, a soft gradient."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = 6.0 * np.sin(y / 37.0 + rng.uniform(0, 6)) + 3.0 * np.sin(y / 11.0)
    grain = np.sin((x + wave) / rng.uniform(5.0, 8.0)) * 0.5 + 0.5
    shade = cv2.GaussianBlur(rng.normal(0, 1, (height // 16, width // 16)).astype(np.float32),
                             (0, 0), 2.0)  # fmt: skip
    shade = cv2.resize(shade, (width, height), interpolation=cv2.INTER_CUBIC)
    light = 1.0 - 0.15 * (x / width) - 0.1 * (y / height)  # a window on the left, above
    base = np.array([150, 185, 215], np.float32)  # BGR: light oak
    img = base * (0.9 + 0.08 * grain[..., None] + 0.04 * shade[..., None]) * light[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Show:
    """One photo on the table for `frames` frames (None: an empty-table gap)."""

    photo: str | os.PathLike[str] | None
    frames: int
    hand: bool = False  # carried in by a hand that leaves, then picked up and carried out
    light: float = 0.0  # no photo: a soft spot of light (> 0) or shadow (< 0), in grey levels


def _load(path: str | os.PathLike[str]) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise LiveError(f"cannot read image {path}")
    return image


def _paste(frame: np.ndarray, image: np.ndarray, cx: float, cy: float, side: int) -> None:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    sh, sw = small.shape[:2]
    x0, y0 = round(cx - sw / 2), round(cy - sh / 2)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + sw, frame.shape[1]), min(y0 + sh, frame.shape[0])
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = small[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def _hand(frame: np.ndarray, cx: float, cy: float, size: int) -> None:
    import cv2

    skin = (120, 160, 215)  # BGR
    cv2.ellipse(frame, (round(cx), round(cy)), (size, int(size * 0.6)), 20, 0, 360, skin, -1)
    cv2.rectangle(
        frame, (round(cx), round(cy) - size // 3), (frame.shape[1], round(cy) + size // 3), skin, -1
    )  # the arm, from the right


def _spot(image: np.ndarray, cx: float, cy: float, radius: float, amount: float) -> np.ndarray:
    """`image` with a Gaussian spot of light (amount > 0) or shadow added around (cx, cy)."""
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    spot = amount * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius * radius))
    return np.clip(image + spot[..., None], 0, 255).astype(np.uint8)


def _noise_bank(shape: tuple[int, ...], sigma: float, rng: np.random.Generator, n: int = 8):
    """`n` sensor-noise fields as (positive, negative) uint8 parts, for saturating adds."""
    fields = [np.rint(rng.normal(0.0, sigma, shape)).astype(np.int16) for _ in range(n)]
    return [
        (np.clip(f, 0, 255).astype(np.uint8), np.clip(-f, 0, 255).astype(np.uint8)) for f in fields
    ]


def show_frames(
    shows: Sequence[Show],
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    noise: float = 2.0,
    flicker: float = 0.0,
    photo_side: int = 260,
) -> Iterator[np.ndarray]:
    """BGR frames of `shows` in order. `flicker` is the largest relative brightness change of
    the whole frame from one frame to the next (0.15: +-15 %); `noise` the sensor noise sigma
    (a bank of 8 noise fields is cycled: cheap, and still different from frame to frame)."""
    import cv2

    width, height = size
    rng = np.random.default_rng(seed)
    top = table(width, height, seed)
    bank = _noise_bank(top.shape, noise, rng) if noise > 0 else []
    count = 0
    for show in shows:
        image = _load(show.photo) if show.photo is not None else None
        # Each showing lies a little elsewhere, a little larger or smaller.
        cx = width / 2 + rng.uniform(-0.12, 0.12) * width
        cy = height / 2 + rng.uniform(-0.08, 0.08) * height
        side = round(photo_side * rng.uniform(0.9, 1.1))
        moves = min(4, show.frames // 4) if show.hand else 0  # frames carried in / out
        lit = _spot(top, cx, cy, side * 0.4, show.light) if show.light else top
        for i in range(show.frames):
            frame = lit.copy()
            if image is not None:
                # How far off to the right (1 = out of view) while the hand carries it in/out.
                if i < moves:
                    t = (moves - i) / moves
                elif i >= show.frames - moves:
                    t = (i - (show.frames - moves) + 1) / moves
                else:
                    t = 0.0
                px = cx + t * (width - cx + side)
                _paste(frame, image, px, cy, side)
                if show.hand and (t > 0 or i < moves + 2 or i >= show.frames - moves - 2):
                    # The hand holds it while moving, and lets go / grabs just around that.
                    _hand(frame, px + side * 0.45 + (0 if t else 4 * (i % 3)), cy, side // 3)
            if flicker:
                frame = cv2.convertScaleAbs(frame, alpha=1.0 + rng.uniform(-flicker, flicker))
            if bank:
                plus, minus = bank[count % len(bank)]
                frame = cv2.subtract(cv2.add(frame, plus), minus)
            count += 1
            yield frame
