"""OpenCV preprocessing matches the bundle's Preprocess geometry; the overlay draws its banner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lensflow.live.frames import bgr_to_rgb, crop_box, draw_overlay, frame_to_input
from lensflow.preprocess import Preprocess

LITE = Preprocess()


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (256, 256), (1000, 300)])
def test_crop_box_is_the_region_resize_crop_keeps(size: tuple[int, int]) -> None:
    w, h = size
    x0, y0, x1, y1 = crop_box(w, h, LITE)
    # A centered square whose side is input_size / resize of the shorter side.
    side = min(w, h) * LITE.input_size / LITE.resize
    assert (x1 - x0) == pytest.approx(side, rel=0.01)
    assert (y1 - y0) == pytest.approx(side, rel=0.01)
    assert (x0 + x1) / 2 == pytest.approx(w / 2, abs=1.5)
    assert (y0 + y1) / 2 == pytest.approx(h / 2, abs=1.5)
    assert crop_box(w, h, Preprocess(crop="none")) == (0, 0, w, h)


def test_frame_to_input_matches_pil_preprocess_on_a_real_photo(sample_folder: Path) -> None:
    path = sorted((sample_folder / "validation" / "hat").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    fast = frame_to_input(bgr, LITE).astype(np.int16)
    ref = LITE.to_uint8(rgb).astype(np.int16)
    assert fast.shape == ref.shape == (224, 224, 3)
    # Same pixels up to the resampling filter: small mean difference, RGB order (not BGR).
    assert np.abs(fast - ref).mean() < 3.0
    swapped = np.abs(fast[:, :, ::-1] - ref).mean()
    assert swapped > np.abs(fast - ref).mean() or np.allclose(rgb[..., 0], rgb[..., 2])


def test_frame_to_input_grayscale_and_upscaling() -> None:
    small = np.full((40, 60, 3), 200, np.uint8)
    out = frame_to_input(
        small, Preprocess(input_size=28, resize=32, channels=1, mean=(0.0,), std=(1.0,))
    )
    assert out.shape == (28, 28, 1) and int(out.mean()) == 200


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
