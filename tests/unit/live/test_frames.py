"""Live frames get exactly the Predictor's preprocessing; the overlay draws its banner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lensflow.live.frames import bgr_to_rgb, draw_overlay
from lensflow.preprocess import Preprocess

LITE = Preprocess()


def test_live_input_is_exactly_the_predictor_preprocessing(sample_folder: Path) -> None:
    path = sorted((sample_folder / "validation" / "hat").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert np.array_equal(LITE.to_uint8(bgr_to_rgb(bgr)), LITE.to_uint8(Image.open(path)))


def test_bgr_to_rgb() -> None:
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 0] = 255  # blue in OpenCV
    assert bgr_to_rgb(frame)[0, 0].tolist() == [0, 0, 255]


def test_overlay_draws_text_in_the_banner_only() -> None:
    frame = np.full((480, 640, 3), 128, np.uint8)
    out = draw_overlay(frame, "t-shirt", 97.3, 15.2)
    assert out.shape == frame.shape and (frame == 128).all()  # input untouched
    banner, rest = out[:44], out[60:]
    assert (rest == 128).all()
    greenish = (banner[..., 1] > 150) & (banner[..., 0] < 120)
    assert greenish.sum() > 50  # the label text (green for a real class)
    blank = draw_overlay(frame, "Blank", 12.0, 15.2, blank=True)
    assert ((blank[:44, :, 1] > 150) & (blank[:44, :, 0] < 120)).sum() == 0  # grey, not green
