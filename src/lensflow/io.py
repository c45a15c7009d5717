"""Atomic file and directory writes, and the JSON cards every artifact carries.

Nothing is ever half-written: files go to a temp name in the same directory and are renamed;
directories are built under a hidden temp name and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from lensflow import __version__
from lensflow.errors import LensflowError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temp path beside `path` (same suffix); on success it becomes `path`.

    For writers that open the file themselves or choose a format by the suffix (OpenCV's
    VideoWriter). The result gets the mode of any file the user creates (0666 minus the umask);
    on any exception the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; outputs should be as readable as any file the user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to stream into (a .rec of thousands of images), renamed to `path` when the
    block ends without an error and deleted otherwise: nobody ever sees half of it.

    fsync=False skips forcing the bytes to disk before the rename: for the many small files of
    a directory that is itself built atomically (dataset images), where a per-file fsync would
    only cost time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> Path:
    with atomic_open(path, fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside `final`; on success it is renamed to `final`.

    On any exception the temp directory is removed, so an interrupted job leaves nothing that
    looks like a finished artifact.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise LensflowError(f"{final} already exists; choose another --out or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp creates 0700
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp file path beside `path` to write (streamed, by any library); on success it
    replaces `path`, on any exception it is removed."""
    with atomic_path(path) as tmp:
        yield tmp


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_card(directory: str | os.PathLike[str], kind: str, **fields: Any) -> Path:
    """Write `card.json`: what made this artifact, from what, with which version."""
    card = {"kind": kind, "lensflow_version": __version__, "created": now_iso(), **fields}
    return atomic_write_json(Path(directory) / "card.json", card)


def read_card(directory: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read `card.json` and check it is of the expected kind, with a message naming the fix."""
    directory = Path(directory)
    path = directory / "card.json"
    if not directory.is_dir():
        raise LensflowError(f"{directory} does not exist or is not a directory")
    if not path.is_file():
        raise LensflowError(
            f"{directory} is not a lensflow {kind.removeprefix('lensflow-')}: no card.json"
        )
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LensflowError(f"{path} is unreadable: {e}") from e
    if card.get("kind") != kind:
        raise LensflowError(f"{directory} is a {card.get('kind')!r}, expected a {kind!r}")
    return card
