"""Pure per-frame steps: OpenCV BGR frame -> RGB for the Predictor, and the label overlay.

Frames go through the bundle's own `Preprocess` (the same code as every other inference path),
so a live prediction equals `Predictor.predict` on the same pixels.
"""

from __future__ import annotations

import numpy as np


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
