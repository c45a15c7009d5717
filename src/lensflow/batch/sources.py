"""SOURCE -> image paths: a folder, a file list (.txt/.lst), a dataset directory or one image.

Paths are made absolute: resuming matches rows by path, and Ray workers do not share the
driver's working directory.
"""

from __future__ import annotations

from pathlib import Path

from lensflow.errors import LensflowError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LIST_SUFFIXES = {".txt", ".lst"}


def list_images(sources: list[Path]) -> list[str]:
    """Every image path named by `sources`, in order, without repeats."""
    seen: dict[str, None] = {}
    for source in sources:
        for path in _expand(source):
            seen.setdefault(str(path), None)
    if not seen:
        raise LensflowError(f"no images found in {', '.join(str(s) for s in sources)}")
    return list(seen)


def _expand(source: Path) -> list[Path]:
    if source.is_dir():
        if (source / "card.json").is_file() and (source / "manifest.csv").is_file():
            return _dataset_images(source)
        return sorted(p.absolute() for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not source.exists():
        raise LensflowError(f"source not found: {source}")
    if source.suffix.lower() in LIST_SUFFIXES:
        return _file_list(source)
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return [source.absolute()]
    raise LensflowError(
        f"{source} is not a folder, an image, a file list ({', '.join(sorted(LIST_SUFFIXES))}: "
        "one path per line) or a dataset directory"
    )


def _file_list(path: Path) -> list[Path]:
    # Relative entries are relative to the list's folder, so a list travels with its images.
    # Missing files are kept: they become error rows, like unreadable ones.
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            p = Path(entry)
            out.append(p if p.is_absolute() else (path.parent / p).absolute())
    return out


def _dataset_images(directory: Path) -> list[Path]:
    from lensflow.data import load_dataset

    return [r.path.absolute() for r in load_dataset(directory).records]
