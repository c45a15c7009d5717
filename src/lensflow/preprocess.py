"""The only place image size, crop, mean and std live.

A `Preprocess` travels with every model (registry), run (card) and bundle (`preprocess.json`), so
training, evaluation, export and every inference path apply exactly the same steps:

1. decode to RGB (or L when channels == 1), EXIF orientation applied;
2. resize so the shorter side is `resize` (interpolation as given), then center-crop
   `input_size` x `input_size` (crop="center"), or resize straight to the square (crop="none"),
   or letterbox (crop="pad": the longer side to `input_size`, centred on a square filled with
   the mean colour, so the whole photo is seen undistorted);
3. scale: (pixel - mean) / std per channel, pixel values in 0..255 units; layout NCHW float32.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lensflow.errors import ConfigError, LensflowError

_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

CROPS = ("center", "none", "pad")

ImageInput = bytes | bytearray | memoryview | str | os.PathLike[str] | Image.Image | np.ndarray


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 224  # side of the square the model sees
    resize: int = 256  # shorter side before the center crop
    crop: str = "center"  # "center" | "none" (squash to the square) | "pad" (letterbox)
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)  # per channel, 0..255 units
    std: tuple[float, ...] = (127.5, 127.5, 127.5)  # per channel, 0..255 units
    interpolation: str = "bicubic"
    channels: int = 3  # 1 for grayscale small-image models

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ConfigError(f"crop must be one of {', '.join(CROPS)}, not {self.crop!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ConfigError(
                f"interpolation must be one of {sorted(_INTERPOLATION)}, not {self.interpolation!r}"
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError("mean and std need one value per channel")
        if self.input_size < 1 or self.resize < self.input_size:
            raise ConfigError(
                f"need 1 <= input_size <= resize, got input_size={self.input_size}, resize={self.resize}"
            )

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        from lensflow.config import reject_unknown

        reject_unknown(d.keys(), [f.name for f in dataclasses.fields(cls)], "preprocess key")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)

    # -- image steps ---------------------------------------------------------------------------
    def resize_crop(self, img: Image.Image) -> Image.Image:
        """Steps 1-2: a PIL image of exactly input_size x input_size in the model's colour mode."""
        img = img.convert("L" if self.channels == 1 else "RGB")
        method = _INTERPOLATION[self.interpolation]
        if self.crop == "none":
            return img.resize((self.input_size, self.input_size), method)
        if self.crop == "pad":
            return self._letterbox(img, method)
        w, h = img.size
        scale = self.resize / min(w, h)
        nw, nh = max(self.resize, round(w * scale)), max(self.resize, round(h * scale))
        left = (nw - self.input_size) // 2
        top = (nh - self.input_size) // 2
        if (nw, nh) == (w, h):
            return img.crop((left, top, left + self.input_size, top + self.input_size))
        # Resample only the source region that survives the crop: the same geometry as
        # resize-then-crop (up to filter edge effects) at a fraction of the cost.
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + self.input_size) * sx, (top + self.input_size) * sy)
        return img.resize((self.input_size, self.input_size), method, box=box)

    def _letterbox(self, img: Image.Image, method: Image.Resampling) -> Image.Image:
        w, h = img.size
        side = self.input_size
        scale = side / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        # The mean colour normalises to ~0: the padding adds (almost) nothing to pooled features.
        fill = tuple(round(m) for m in self.mean)
        canvas = Image.new(img.mode, (side, side), fill[0] if self.channels == 1 else fill)
        canvas.paste(img.resize((nw, nh), method), ((side - nw) // 2, (side - nh) // 2))
        return canvas

    def to_uint8(self, image: ImageInput) -> np.ndarray:
        """Steps 1-2 as a uint8 HWC array (H = W = input_size, C = channels)."""
        arr = np.asarray(self.resize_crop(to_pil(image)), dtype=np.uint8)
        return arr[:, :, None] if arr.ndim == 2 else arr

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """Step 3 for a uint8 NHWC (or HWC) batch -> float32 NCHW (or CHW)."""
        x = batch.astype(np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (x - mean) / std
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def __call__(self, image: ImageInput) -> np.ndarray:
        """All three steps for one image: float32 CHW."""
        return self.normalize(self.to_uint8(image))

    def batch(self, images: list[ImageInput]) -> np.ndarray:
        """All three steps for many images: float32 NCHW."""
        if not images:
            return np.zeros((0, self.channels, self.input_size, self.input_size), np.float32)
        return self.normalize(np.stack([self.to_uint8(im) for im in images]))


# EfficientNet-Lite expects [-1, 1]; ImageNet-style models expect these mean/std (0..255 units).
LITE_MEAN_STD = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
IMAGENET_MEAN_STD = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def to_pil(image: ImageInput) -> Image.Image:
    """Decode bytes, a path, a PIL image or an RGB uint8 numpy array (HWC or HW) to a PIL image.

    EXIF orientation is applied. numpy arrays are taken as RGB: OpenCV frames (BGR) must be
    converted by the caller. Undecodable input raises LensflowError with the reason.
    """
    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise LensflowError(f"numpy images must be uint8, got {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise LensflowError(f"numpy images must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
        return Image.fromarray(arr)
    else:
        try:
            if isinstance(image, bytes | bytearray | memoryview):
                img = Image.open(io.BytesIO(bytes(image)))
            else:
                img = Image.open(Path(image))
            img.load()
        except FileNotFoundError as e:
            raise LensflowError(f"image not found: {image}") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            what = "the image bytes" if isinstance(image, bytes | bytearray | memoryview) else image
            raise LensflowError(f"cannot decode {what}: {e}") from e
        except Image.DecompressionBombError as e:
            raise LensflowError(f"image too large to decode safely: {e}") from e
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:
        # A broken EXIF block should not make an otherwise valid image unusable.
        return img
