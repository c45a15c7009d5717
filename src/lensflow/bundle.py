"""The bundle layout: write it (atomically) and read it back, with errors that name the fix.

    BUNDLE/
      model.onnx        input "input" float32 [N, C, H, W]; outputs "logits" and "features"
      labels.txt        one class per line, index order
      preprocess.json   Preprocess.to_dict()
      card.json         kind "lensflow-bundle": model, classes, precision, metrics, ...
      openset.npz       optional: open-set statistics (`lensflow.openset`); card "open_set"

A bundle may also travel as one `.tar.gz` file (`lensflow export --archive`); readers extract it
once into the cache and use the directory.

The format sits below every stage that touches it: `export` writes bundles with it, and the
Predictor (predict, serve, live, match, studio), evaluate and the Triton writer read them with it.
It imports only the shared core (io, errors, preprocess): never torch, never a stage package.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensflow.errors import BundleError, LensflowError
from lensflow.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
from lensflow.io import read_card as _read_card
from lensflow.io import write_card as _write_card
from lensflow.preprocess import Preprocess

KIND = "lensflow-bundle"
MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
PREPROCESS_FILE = "preprocess.json"
OPENSET_FILE = "openset.npz"  # optional; bundles made before the open-set score lack it
REQUIRED = (MODEL_FILE, LABELS_FILE, PREPROCESS_FILE, "card.json")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def cache_dir() -> Path:
    """$LENSFLOW_CACHE, else ~/.cache/lensflow: derived artifacts that can be rebuilt."""
    root = os.environ.get("LENSFLOW_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lensflow"


@dataclass(frozen=True)
class Bundle:
    path: Path
    classes: list[str]
    preprocess: Preprocess
    card: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bundle_files(
    directory: Path,
    onnx_path: Path,
    classes: list[str],
    preprocess: Preprocess,
    **card_fields: Any,
) -> dict[str, Any]:
    """Fill `directory` (normally the temp dir of `atomic_dir`) with the bundle files.

    `onnx_path` must already be `directory / model.onnx`; the card's `version` is the first 12
    hex digits of its sha256, so two bundles with the same weights report the same version.
    """
    if onnx_path != directory / MODEL_FILE:
        raise BundleError(f"model must be written to {directory / MODEL_FILE}, not {onnx_path}")
    if not classes or len(set(classes)) != len(classes):
        raise BundleError(f"classes must be unique and non-empty, got {classes}")
    bad = [c for c in classes if "\n" in c or not c.strip()]
    if bad:
        raise BundleError(f"class names must be non-blank single lines, got {bad}")
    atomic_write_text(directory / LABELS_FILE, "\n".join(classes) + "\n")
    atomic_write_json(directory / PREPROCESS_FILE, preprocess.to_dict())
    digest = sha256_file(onnx_path)
    fields = {
        "classes": list(classes),
        "preprocess": preprocess.to_dict(),
        "version": digest[:12],
        "model_sha256": digest,
        **card_fields,
    }
    _write_card(directory, KIND, **fields)
    return json.loads((directory / "card.json").read_text())


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and check a bundle directory or `.tar.gz` archive."""
    path = Path(path)
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        path = extract_archive(path)
    if not path.exists():
        raise BundleError(
            f"bundle not found: {path} (make one with `lensflow export RUN --out {path}`)"
        )
    if not path.is_dir():
        raise BundleError(f"{path} is not a bundle directory nor a .tar.gz bundle archive")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise BundleError(
            f"{path} is not a lensflow bundle: missing {', '.join(missing)} "
            "(make one with `lensflow export RUN --out BUNDLE`)"
        )
    try:
        card = _read_card(path, KIND)
    except BundleError:
        raise
    except LensflowError as e:
        raise BundleError(e.message) from None
    classes = [line for line in (path / LABELS_FILE).read_text().splitlines() if line.strip()]
    try:
        preprocess = Preprocess.from_dict(json.loads((path / PREPROCESS_FILE).read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise BundleError(f"{path / PREPROCESS_FILE} is unreadable: {e}") from e
    except LensflowError as e:
        raise BundleError(f"{path / PREPROCESS_FILE}: {e.message}") from None
    if card.get("classes") and list(card["classes"]) != classes:
        raise BundleError(f"{path}: labels.txt and card.json disagree on the classes")
    if not classes:
        raise BundleError(f"{path / LABELS_FILE} lists no classes")
    return Bundle(path=path, classes=classes, preprocess=preprocess, card=card)


# -- single-file archives --------------------------------------------------------------------------
def write_archive(bundle_dir: Path, archive: Path) -> Path:
    """Pack a bundle directory into one `.tar.gz` (written atomically)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(bundle_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return atomic_write_bytes(archive, buf.getvalue())


def extract_archive(archive: Path) -> Path:
    """Extract once into the cache, keyed by the archive's content hash; return the directory."""
    digest = sha256_file(archive)[:16]
    target = cache_dir() / "archives" / digest
    if (target / "card.json").is_file():
        return target
    try:
        with atomic_dir(target, overwrite=True) as tmp, tarfile.open(archive, "r:gz") as tar:
            # The "data" filter refuses absolute paths, links outside the directory and devices.
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"cannot extract bundle archive {archive}: {e}") from e
    return target
