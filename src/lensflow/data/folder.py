"""Folder source: one sub-folder per class (searched recursively), optionally pre-split.

SRC/dress/a.jpg, SRC/hat/sub/b.png            -> split "all"
SRC/train/dress/a.jpg, SRC/val/dress/c.jpg    -> splits "train", "validation" (also test/)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lensflow.data.validate import IMAGE_EXTENSIONS, Item, is_image_name

# Folder names people use for splits -> the dataset's split names.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class Scan:
    """What a source offers before validation: candidate items and what was passed over."""

    items: list[Item] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    warnings: list[str] = field(default_factory=list)
    ignored: int = 0  # files that are not images by name (README, .DS_Store, ...)


def scan_folder(src: Path) -> Scan:
    scan = Scan()
    subdirs = _subdirs(src)
    split_dirs = [
        (d, SPLIT_ALIASES[d.name.lower()]) for d in subdirs if d.name.lower() in SPLIT_ALIASES
    ]
    if split_dirs:
        others = [d.name for d in subdirs if d.name.lower() not in SPLIT_ALIASES]
        if others:
            scan.warnings.append(
                f"SRC is split into {', '.join(d.name for d, _ in split_dirs)}; "
                f"ignored the other folders: {', '.join(others)}"
            )
        _check_loose_files(src, src, scan)
        for directory, split in split_dirs:
            _scan_classes(src, directory, split, scan)
    else:
        _scan_classes(src, src, "all", scan)
    return scan


def _subdirs(directory: Path) -> list[Path]:
    return sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_loose_files(src: Path, root: Path, scan: Scan) -> None:
    """Images lying directly in a folder that should only hold class folders have no label."""
    for entry in sorted(root.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            if entry.suffix.lower() in IMAGE_EXTENSIONS:
                scan.skipped.append(
                    {
                        "path": _rel(entry, src),
                        "reason": "not inside a class folder (SRC/<class>/image)",
                    }
                )
            else:
                scan.ignored += 1


def _scan_classes(src: Path, root: Path, split: str, scan: Scan) -> None:
    _check_loose_files(src, root, scan)
    for class_dir in _subdirs(root):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if is_image_name(name):
                    scan.items.append(Item(_rel(path, src), class_dir.name, split, path))
                elif not name.startswith("."):
                    scan.ignored += 1


def _rel(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()
