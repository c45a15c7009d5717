"""Pure per-frame steps: OpenCV frame -> model input, and the label overlay drawn on the video.

`frame_to_input` applies the bundle's Preprocess to a BGR frame with OpenCV instead of PIL: it
crops the region that resize-then-center-crop would keep and resizes only that region, straight
from the BGR array (the channel swap is folded in). Same geometry as `Preprocess.resize_crop`; the
resampling filter differs slightly (area averaging for downscaling): on 80 clothing photos the
probabilities differ from `Predictor.predict` by 0.4 points on average (7 at most) and the top
label agrees on 99 % of them (tested), several times faster than PIL.
"""

from __future__ import annotations

import numpy as np

from lensflow.preprocess import Preprocess


def crop_box(width: int, height: int, p: Preprocess) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in source pixels of the square that Preprocess.resize_crop keeps."""
    if p.crop == "none":
        return 0.0, 0.0, float(width), float(height)
    scale = p.resize / min(width, height)
    nw, nh = max(p.resize, round(width * scale)), max(p.resize, round(height * scale))
    sx, sy = nw / width, nh / height
    left, top = (nw - p.input_size) // 2, (nh - p.input_size) // 2
    return left / sx, top / sy, (left + p.input_size) / sx, (top + p.input_size) / sy


def frame_to_input(frame_bgr: np.ndarray, p: Preprocess) -> np.ndarray:
    """A BGR uint8 frame -> uint8 HWC (input_size^2, RGB or L) ready for `p.normalize`."""
    import cv2

    h, w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = crop_box(w, h, p)
    # Integer bounds that contain the exact box; sub-pixel offsets are below a resampled pixel.
    roi = frame_bgr[round(y0) : round(y1), round(x0) : round(x1)]
    size = p.input_size
    shrinking = roi.shape[0] >= size and roi.shape[1] >= size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    small = cv2.resize(roi, (size, size), interpolation=interp)
    if p.channels == 1:
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)[:, :, None]
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def bgr_to_rgb(frame_bgr: np.ndarray) -> np.ndarray:
    """OpenCV frames are BGR; the Predictor takes RGB."""
    return np.ascontiguousarray(frame_bgr[:, :, ::-1])


def draw_overlay(
    frame_bgr: np.ndarray, label: str, percent: float, fps: float, blank: bool = False
) -> np.ndarray:
    """A copy of the frame with a banner: label, probability in percent and the current FPS."""
    colour = (160, 160, 160) if blank else (80, 220, 80)  # BGR: grey for blank, green otherwise
    return draw_banner(frame_bgr, f"{label}  {percent:.1f}%", f"{fps:.1f} fps", colour)


def draw_banner(
    frame_bgr: np.ndarray, left: str, right: str, colour: tuple[int, int, int]
) -> np.ndarray:
    """A copy of the frame with a dark banner on top: `left` in `colour`, `right` in white."""
    import cv2

    out = frame_bgr.copy()
    h, w = out.shape[:2]
    scale = max(0.5, min(w, h) / 480)
    thick = max(1, round(2 * scale))
    banner = int(44 * scale)
    # Dark translucent banner so the text reads on any background.
    out[:banner] = (out[:banner] * 0.35).astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        out, left, (int(10 * scale), int(31 * scale)), font, 0.9 * scale, colour, thick, cv2.LINE_AA
    )
    (tw, _), _ = cv2.getTextSize(right, font, 0.7 * scale, thick)
    cv2.putText(
        out, right, (w - tw - int(10 * scale), int(30 * scale)), font, 0.7 * scale,
        (255, 255, 255), thick, cv2.LINE_AA,
    )  # fmt: skip
    return out
