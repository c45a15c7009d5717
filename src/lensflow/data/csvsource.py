"""CSV import source, two layouts (gzip allowed, header optional):

- pixels (Kaggle Fashion-MNIST): `label,pixel1,...,pixelN`, N a square (grey) or 3 x a square
  (RGB, channel-last); values 0..255;
- paths: `path,label` (columns in that order without a header, any order with one; an optional
  `split` column assigns train/validation/test). Paths are relative to the CSV's folder.

Bad rows are skipped and reported as `FILE.csv:row N` with the reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import numpy as np

from lensflow.data.folder import SPLIT_ALIASES, Scan
from lensflow.data.idx import label_names
from lensflow.data.validate import Item
from lensflow.errors import DataError


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8-sig"))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def scan_csv(path: Path, class_names: tuple[str, ...] | None) -> Scan:
    try:
        rows = list(csv.reader(_open_text(path)))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read CSV {path}: {e}") from e
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"{path} is empty")
    first = [c.strip() for c in rows[0]]
    has_header = not all(_is_number(c) for c in first[1:]) or first[0].lower() in ("label", "path")
    header = [c.lower() for c in first] if has_header else None
    body = rows[1:] if has_header else rows
    start = 2 if has_header else 1  # row numbers as a spreadsheet shows them
    if header and "path" in header:
        return _scan_paths(path, header, body, start, class_names)
    if header is None and len(first) == 2 and not _is_number(first[0]):
        return _scan_paths(path, ["path", "label"], body, start, class_names)
    if len(first) < 2:
        raise DataError(f"{path}: expected label,pixel1..pixelN or path,label columns")
    return _scan_pixels(path, header, body, start, class_names)


def _shape(n: int) -> tuple[int, ...]:
    side = math.isqrt(n)
    if side * side == n:
        return (side, side)
    side = math.isqrt(n // 3)
    if n % 3 == 0 and side * side * 3 == n:
        return (side, side, 3)
    raise DataError(
        f"{n} pixel columns is neither a square (e.g. 784 = 28x28) nor 3 x a square (RGB)"
    )


def _scan_pixels(
    path: Path,
    header: list[str] | None,
    body: list[list[str]],
    start: int,
    class_names: tuple[str, ...] | None,
) -> Scan:
    label_col = header.index("label") if header and "label" in header else 0
    n_pixels = (len(header) if header else len(body[0]) if body else 1) - 1
    shape = _shape(n_pixels)
    scan = Scan()
    good: list[tuple[int, str, np.ndarray]] = []
    for k, row in enumerate(body):
        ref = f"{path.name}:row {start + k}"
        if len(row) != n_pixels + 1:
            scan.skipped.append(
                {"path": ref, "reason": f"{len(row)} columns, expected {n_pixels + 1}"}
            )
            continue
        try:
            # numpy parses the strings in C: ~5x faster than float() per cell on 60,000 x 784
            values = np.array(row[:label_col] + row[label_col + 1 :], dtype=np.float64)
        except ValueError:
            scan.skipped.append({"path": ref, "reason": "non-numeric pixel value"})
            continue
        if values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values)):
            scan.skipped.append({"path": ref, "reason": "pixel values must be integers 0..255"})
            continue
        good.append((k, row[label_col].strip(), values.astype(np.uint8).reshape(shape)))
    labels = [g[1] for g in good]
    if labels and all(lab.lstrip("-").isdigit() for lab in labels):
        labels = label_names(np.array([int(lab) for lab in labels]), class_names)
    for (k, _, pixels), label in zip(good, labels, strict=True):
        scan.items.append(Item(f"{path.name}:row {start + k}", label, "all", pixels))
    return scan


def _scan_paths(
    path: Path,
    header: list[str],
    body: list[list[str]],
    start: int,
    class_names: tuple[str, ...] | None,
) -> Scan:
    if "label" not in header:
        raise DataError(f"{path}: a path CSV needs a 'label' column (path,label)")
    p_col, l_col = header.index("path"), header.index("label")
    s_col = header.index("split") if "split" in header else None
    root = path.parent
    scan = Scan()
    for k, row in enumerate(body):
        ref = f"{path.name}:row {start + k}"
        if len(row) <= max(p_col, l_col, s_col or 0):
            scan.skipped.append({"path": ref, "reason": "missing columns"})
            continue
        rel, label = row[p_col].strip(), row[l_col].strip()
        split = "all"
        if s_col is not None:
            split = SPLIT_ALIASES.get(row[s_col].strip().lower(), "")
            if not split:
                scan.skipped.append({"path": ref, "reason": f"unknown split {row[s_col]!r}"})
                continue
        if class_names is not None and label.isdigit():
            if int(label) >= len(class_names):
                scan.skipped.append({"path": ref, "reason": f"label {label} has no class name"})
                continue
            label = class_names[int(label)]
        file = root / rel
        if not file.is_file():
            scan.skipped.append({"path": rel, "reason": "file not found"})
            continue
        scan.items.append(Item(rel, label, split, file))
    return scan
