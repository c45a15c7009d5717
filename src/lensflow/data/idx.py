"""IDX files (MNIST, Fashion-MNIST): `read_idx` and the IDX import source.

IDX layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, one uint32 per dimension,
then the values. Files may be gzip-compressed (detected by content, not by name).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from lensflow.data.folder import Scan
from lensflow.data.validate import Item
from lensflow.errors import DataError

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array, checking the header against the data size."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from e
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: broken gzip data ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}; "
            "expected 0000 08 0N for uint8 images/labels)"
        )
    dtype, ndim = _TYPES[data[2]], data[3]
    if ndim < 1:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: header says {'x'.join(map(str, dims))} values ({expected:,} bytes) "
            f"but the file holds {len(data) - header:,} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def label_names(labels: np.ndarray, class_names: tuple[str, ...] | None) -> list[str]:
    """Integer labels -> class names: the given names, or zero-padded numbers that sort numerically."""
    values = labels.astype(np.int64)
    if values.size and values.min() < 0:
        raise DataError(f"labels must be >= 0, found {values.min()}")
    top = int(values.max()) if values.size else 0
    if class_names is not None:
        if top >= len(class_names):
            raise DataError(
                f"labels go up to {top} but --class-names has only {len(class_names)} names"
            )
        return [class_names[v] for v in values]
    width = len(str(top))
    return [f"{v:0{width}d}" for v in values]


def scan_idx(
    images_path: Path, labels_path: Path | None, class_names: tuple[str, ...] | None
) -> Scan:
    if labels_path is None:
        raise DataError(
            "--format idx needs --labels LABELS_IDX (e.g. t10k-labels-idx1-ubyte.gz) besides the images file"
        )
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(
            f"{images_path}: expected images N x H x W (or N x H x W x 3), got shape {images.shape}"
        )
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 pixels, got {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D labels file, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images):,} images but {labels_path} has {len(labels):,} labels"
        )
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    names = label_names(labels, class_names)
    ref = images_path.name
    return Scan(items=[Item(f"{ref}#{i}", names[i], "all", images[i]) for i in range(len(images))])
