"""The dataset directory (kind `lensflow-dataset`) and its Python view.

Layout (see docs/ARCHITECTURE.md):

    DATASET/
      card.json      kind, source, format, classes, counts {split: {class: n}}, hash, version
      manifest.csv   id,path,label,split,sha256,width,height   (path relative to DATASET)
      images/...     the accepted images, copied or written by the import
      report.json    skipped files, duplicate groups, warnings, cross-split leaks
      packed/<key>/  written by `lensflow data pack` (see data/pack.py)

`card.json` is written last inside an atomic directory, so a directory with a valid card is a
complete dataset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lensflow.errors import DataError, LensflowError
from lensflow.io import atomic_write_json, atomic_write_text, read_card

KIND = "lensflow-dataset"
SPLITS = ("train", "validation", "test")
UNSPLIT = "all"
MANIFEST_FIELDS = ("id", "path", "label", "split", "sha256", "width", "height")


@dataclass(frozen=True)
class Record:
    id: str
    path: Path  # absolute
    label: str
    split: str
    sha256: str  # of the stored image file's bytes
    width: int
    height: int


@dataclass
class Dataset:
    path: Path
    classes: list[str]
    records: list[Record]
    card: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return str(self.card["hash"])

    @property
    def split_names(self) -> list[str]:
        present = {r.split for r in self.records}
        return [s for s in (*SPLITS, UNSPLIT) if s in present]

    def split(self, name: str) -> list[Record]:
        """Records of one split; "all" is every record whatever its split."""
        if name == UNSPLIT:
            return list(self.records)
        if name == "val":
            name = "validation"
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; use one of {', '.join((*SPLITS, UNSPLIT))}")
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        return counts_of((r.split, r.label) for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.path)!r}, classes={len(self.classes)}, records={len(self.records)})"
        )

    def _repr_html_(self) -> str:  # Jupyter: class counts and a few thumbnails
        from lensflow.display import dataset_html

        return dataset_html(self)


def counts_of(pairs: Any) -> dict[str, dict[str, int]]:
    """{split: {class: n}} in split order then class order."""
    counter = Counter(pairs)
    out: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, UNSPLIT):
        labels = sorted(label for (s, label) in counter if s == split)
        if labels:
            out[split] = {label: counter[(split, label)] for label in labels}
    return out


def content_hash(rows: list[dict[str, Any]]) -> str:
    """Hash of what a model would learn from: image bytes, labels and splits (not file names)."""
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: (r["sha256"], r["label"], r["split"], r["id"])):
        h.update(f"{row['sha256']}\t{row['label']}\t{row['split']}\n".encode())
    return h.hexdigest()[:16]


def manifest_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in MANIFEST_FIELDS})
    return buf.getvalue()


def write_manifest(directory: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(directory / "manifest.csv", manifest_text(rows))


def read_manifest(directory: Path) -> list[dict[str, Any]]:
    path = directory / "manifest.csv"
    if not path.is_file():
        raise DataError(f"{directory} is not a complete lensflow dataset: manifest.csv is missing")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path} lacks columns {sorted(missing)}; re-import the dataset")
        rows = []
        for row in reader:
            row["width"] = int(row["width"])
            row["height"] = int(row["height"])
            rows.append(row)
    return rows


def read_report(directory: Path) -> dict[str, Any]:
    path = directory / "report.json"
    if not path.is_file():
        return {"skipped": [], "duplicates": [], "warnings": [], "leaks": []}
    return json.loads(path.read_text())


def write_report(directory: Path, report: dict[str, Any]) -> None:
    atomic_write_json(directory / "report.json", report)


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory written by `lensflow data import`."""
    directory = Path(path).resolve()
    try:
        card = read_card(directory, KIND)
    except DataError:
        raise
    except LensflowError as e:
        raise DataError(
            f"{e.message} (create one with: lensflow data import SRC --out {path})"
        ) from e
    rows = read_manifest(directory)
    if card.get("hash") != content_hash(rows):
        raise DataError(
            f"{directory}: manifest.csv and card.json disagree (an interrupted `data split`?); "
            "re-run the split, or re-import"
        )
    records = [
        Record(
            id=row["id"],
            path=directory / row["path"],
            label=row["label"],
            split=row["split"],
            sha256=row["sha256"],
            width=row["width"],
            height=row["height"],
        )
        for row in rows
    ]
    classes = sorted(card.get("classes") or {r.label for r in records})
    return Dataset(directory, classes, records, card, read_report(directory))
