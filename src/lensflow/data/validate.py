"""Decode every image fully, reject what cannot be used, normalise what can.

Runs inside worker processes during import: `process_item` decodes one source image, decides
whether it is usable, converts odd-but-valid images to plain RGB and writes the result into the
dataset being built. It returns a small dict (picklable) instead of raising, so one bad file never
stops an import.

Rules:
- skipped: zero bytes, not an image, undecodable or truncated data, more than `MAX_PIXELS`
  pixels (a decompression bomb: the header is checked before any pixel is decoded);
- converted to RGB: CMYK, palette (with or without transparency), RGBA/LA (composited on white,
  the usual product-photo background), 16-bit, 1-bit, grayscale photos; EXIF orientation applied;
  animated images keep their first frame;
- stored as-is (byte-identical copy): JPEG and PNG files that are already upright 8-bit RGB;
  everything else is re-encoded losslessly as PNG.
- single-channel arrays (IDX, pixel CSV) stay grayscale PNGs so their pixels equal the source.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lensflow.io import atomic_write_bytes

# 100 megapixels: above any phone or DSLR photo (200 MP sensors bin to 50 MP), and still a
# bounded ~300 MB to decode; headers claiming more are refused before any pixel is decoded.
MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pnm",
    }
)
_KEEP_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Item:
    """One candidate image: where it came from (for the report), its label, split and payload."""

    ref: str  # path relative to SRC (or "file.csv:row 12", "data.rec#42"): shown in the report
    label: str
    split: str
    source: Path | bytes | np.ndarray  # a file, encoded bytes, or a uint8 HxW / HxWx3 array


class Rejected(Exception):
    """A source image that cannot be used; the message is the reason shown in the report.

    `kind` classifies it for callers that report by category: not_image, too_large or corrupt.
    """

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind


def process_item(item: Item, out_root: Path, rel_stem: str) -> dict[str, Any]:
    """Validate one item and write it to out_root/rel_stem.<ext>; never raises for bad input."""
    try:
        if isinstance(item.source, np.ndarray):
            img, keep_bytes, note = _from_array(item.source), None, None
        else:
            img, keep_bytes, note = decode_image(item.source)
        arr = np.asarray(img)
        if keep_bytes is not None:
            data, ext = keep_bytes
        else:
            data, ext = _encode_png(img), ".png"
    except Rejected as e:
        return {"ok": False, "ref": item.ref, "reason": str(e)}
    rel = f"{rel_stem}{ext}"
    # Datasets are built inside an atomic_dir; Studio's uploads write straight into the model.
    atomic_write_bytes(out_root / rel, data, fsync=False)
    pixel_hash = hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()
    return {
        "ok": True,
        "ref": item.ref,
        "path": rel,
        "sha256": hashlib.sha256(data).hexdigest(),
        "pixel_hash": pixel_hash,
        "width": img.width,
        "height": img.height,
        "note": note,
    }


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise Rejected(f"unsupported pixel array {arr.dtype} {arr.shape}")
    return Image.fromarray(arr)


def _read(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise Rejected(f"unreadable file: {e.strerror or e}") from e


def decode_image(
    source: Path | bytes,
) -> tuple[Image.Image, tuple[bytes, str] | None, str | None]:
    """Decode fully; return (RGB image, original bytes+ext if they can be kept, conversion note).

    Raises Rejected (with its `kind`) for anything the importer would skip.
    """
    data = _read(source)
    if not data:
        raise Rejected("empty file (0 bytes)")
    img = _open_checked(data)
    fmt = img.format or "?"
    notes = []
    if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
        img.seek(0)
        notes.append(f"multi-frame {fmt}: first of {img.n_frames} frames kept")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise Rejected(f"truncated or corrupt {fmt} data: {e}") from e
    orientation = _orientation(img)
    mode = img.mode
    if orientation not in (None, 1):
        img = ImageOps.exif_transpose(img) or img
        notes.append(f"EXIF orientation {orientation} applied")
    rgb = _to_rgb(img)
    if mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    note = "; ".join(notes) or None
    if fmt in _KEEP_FORMATS and note is None:
        return rgb, (data, _KEEP_FORMATS[fmt]), None
    if note is None:
        note = f"{fmt} re-encoded as PNG"
    return rgb, None, note


def _open_checked(data: bytes) -> Image.Image:
    """Open lazily (header only) and refuse absurd sizes before decoding any pixel."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels
    try:
        with warnings.catch_warnings():
            # our own MAX_PIXELS check below decides; PIL still refuses > 2x its own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise Rejected(f"too large to decode safely (decompression bomb?): {e}", "too_large") from e
    except UnidentifiedImageError as e:
        raise Rejected("not an image (unrecognised format)", "not_image") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise Rejected(f"cannot decode: {e}") from e
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise Rejected(
            f"too large: {w}x{h} = {w * h:,} pixels exceeds the {MAX_PIXELS:,} limit (decompression bomb?)",
            "too_large",
        )
    if w < 1 or h < 1:
        raise Rejected(f"invalid size {w}x{h}")
    return img


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return None  # a broken EXIF block: keep the pixels as they are
    return int(value) if isinstance(value, int) else None


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grey: scale the full range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # compress_level 1: import speed matters more than a few percent of disk.
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")
