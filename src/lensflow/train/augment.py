"""Batch augmentation with torch ops, on whatever device the batch lives on.

SageMaker's `augmentation_type` levels, applied to a whole uint8 NHWC batch at once:

- `crop`: random resized crop (area 35-100 %, aspect 3/4-4/3) and horizontal flip;
- `crop_color`: plus random hue (+-36 degrees), saturation (+-50/255) and lightness (+-50/255);
- `crop_color_transform`: plus rotation (+-10 degrees), shear (+-0.1) and aspect change (+-0.25).

and lensflow's own, for small images where a 35 % crop or a mirror image changes the class
(digits, glyphs):

- `shift`: scale 0.9-1.1, rotation +-10 degrees, shift +-10 % of the side; never mirrored;
- `shift_flip`: the same plus horizontal flip (small clothing-like images, which mirror safely).

`auto` (the default) is resolved per dataset by `lensflow.train.policy`.
All geometry is one affine matrix per image and one `grid_sample` per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lensflow.preprocess import Preprocess


def _uniform(
    n: int, lo: float, hi: float, g: torch.Generator, device: torch.device
) -> torch.Tensor:
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def affine_params(kind: str, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates in [-1, 1] (grid_sample convention)."""
    if kind in ("shift", "shift_flip"):
        return _shift_params(n, g, device, flip=kind == "shift_flip")
    area = _uniform(n, 0.35, 1.0, g, device)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), g, device)
    if kind == "crop_color_transform":
        log_ratio = log_ratio + _uniform(n, math.log(0.75), math.log(1.25), g, device)
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
    sy = (area / ratio).sqrt().clamp(max=1.0)
    tx = _uniform(n, -1, 1, g, device) * (1 - sx)  # keep the crop inside the image
    ty = _uniform(n, -1, 1, g, device) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(device)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = sx * flip
    theta[:, 1, 1] = sy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    if kind == "crop_color_transform":
        angle = _uniform(n, -10, 10, g, device) * math.pi / 180
        shear = _uniform(n, -0.1, 0.1, g, device)
        cos, sin = angle.cos(), angle.sin()
        rot = torch.zeros(n, 2, 2, device=device)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = cos, -sin + shear, sin, cos
        theta[:, :, :2] = rot @ theta[:, :, :2]
    return theta


def _shift_params(n: int, g: torch.Generator, device: torch.device, flip: bool) -> torch.Tensor:
    scale = 1 / _uniform(n, 0.9, 1.1, g, device)  # output -> input: zoom in by 1 / scale
    angle = _uniform(n, -10, 10, g, device) * math.pi / 180
    mirror = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(device)
    if not flip:
        mirror = torch.ones_like(mirror)
    theta = torch.zeros(n, 2, 3, device=device)
    cos, sin = angle.cos() * scale, angle.sin() * scale
    theta[:, 0, 0], theta[:, 0, 1] = cos * mirror, -sin * mirror  # mirror of the rotated x
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, 0, 2] = _uniform(n, -0.2, 0.2, g, device)  # +-10 % of the side ([-1, 1] spans 2)
    theta[:, 1, 2] = _uniform(n, -0.2, 0.2, g, device)
    return theta


def color_jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random hue rotation, saturation and lightness shifts of float RGB in 0..255 (N, 3, H, W)."""
    n, device = x.shape[0], x.device
    hue = _uniform(n, -36, 36, g, device) * math.pi / 180
    sat = 1 + _uniform(n, -50, 50, g, device) / 255 * 2  # +-50 on a 0..255 saturation scale
    light = _uniform(n, -50, 50, g, device)
    # Hue rotation about the grey axis (YIQ), then saturation around the per-pixel grey level.
    cos, sin = hue.cos()[:, None, None], hue.sin()[:, None, None]
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=device
    )
    from_yiq = torch.linalg.inv(to_yiq)
    rot = torch.zeros(n, 3, 3, device=device)
    rot[:, 0, 0] = 1
    rot[:, 1:, 1:] = torch.cat([torch.cat([cos, -sin], 2), torch.cat([sin, cos], 2)], 1)
    rot[:, 1:, 1:] *= sat[:, None, None]
    m = from_yiq @ rot @ to_yiq  # (n, 3, 3)
    y = torch.einsum("nij,njhw->nihw", m, x) + light[:, None, None, None]
    return y.clamp(0, 255)


def augment_batch(
    images: torch.Tensor, kind: str, preprocess: Preprocess, g: torch.Generator
) -> torch.Tensor:
    """uint8 NHWC -> augmented, normalised float32 NCHW (same size), per the SageMaker level."""
    x = images.permute(0, 3, 1, 2).float()
    if kind != "none":
        theta = affine_params(kind, x.shape[0], g, x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Shifted glyphs pad with the background (zeros), not a reflection of their own strokes.
        pad = "zeros" if kind.startswith("shift") else "reflection"
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)
        if kind in ("crop_color", "crop_color_transform") and x.shape[1] == 3:
            x = color_jitter(x, g)
    return normalize(x, preprocess)


def normalize(x: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """float NCHW in 0..255 -> the model's input scale (same numbers as Preprocess.normalize)."""
    mean = torch.tensor(preprocess.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def to_input(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 NHWC -> normalised float32 NCHW with no augmentation (evaluation)."""
    return normalize(images.permute(0, 3, 1, 2).float(), preprocess)
