"""`lensflow data import`: any source -> a validated, self-contained dataset directory.

1. scan the source (folder, IDX, CSV, .lst, .rec) into candidate items (nothing decoded yet);
2. decode and validate every item in worker processes, writing accepted images straight into
   a hidden temp directory beside DATASET (data/validate.py);
3. find exact duplicates (same decoded pixels) and duplicates that sit in two splits (leaks),
   warn about small classes;
4. write manifest.csv, report.json, import.yaml, then card.json last, and rename the temp
   directory to DATASET. An interrupted import leaves only the hidden temp directory, which
   `load_dataset`/`info` never accept.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lensflow.config import save_config
from lensflow.data.dataset import (
    KIND,
    UNSPLIT,
    content_hash,
    counts_of,
    write_manifest,
    write_report,
)
from lensflow.data.folder import Scan, scan_folder
from lensflow.data.validate import Item, process_item
from lensflow.errors import DataError
from lensflow.io import atomic_dir, write_card
from lensflow.progress import track

FORMATS = ("auto", "folder", "idx", "csv", "lst", "rec")
T = TypeVar("T")


@dataclass(frozen=True)
class ImportConfig:
    src: Path
    out: Path
    format: str = "auto"  # auto | folder | idx | csv | lst | rec
    labels: Path | None = None  # IDX labels file (--format idx)
    class_names: tuple[str, ...] | None = None  # names for integer labels (IDX, CSV, .lst, .rec)
    root: Path | None = None  # folder the .lst paths are relative to (default: the .lst's folder)
    min_per_class: int = 10  # warn about classes with fewer images
    workers: int = 0  # decode processes; 0 = all cores
    overwrite: bool = False


@dataclass
class ImportResult:
    path: Path
    total: int
    skipped: int
    report: dict[str, Any]
    counts: dict[str, dict[str, int]]


def resolve_workers(workers: int) -> int:
    if workers < 0:
        raise DataError(f"--workers must be >= 0 (0 = all cores), got {workers}")
    return workers or os.cpu_count() or 1


def detect_format(src: Path) -> str:
    if src.is_dir():
        return "folder"
    name = src.name.lower()
    if name.endswith(".rec"):
        return "rec"
    if name.endswith(".lst"):
        return "lst"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if "idx" in name or name.endswith(("-ubyte", "-ubyte.gz")):
        return "idx"
    raise DataError(
        f"cannot tell the format of {src}; pass --format one of {', '.join(FORMATS[1:])}"
    )


def scan_source(config: ImportConfig, fmt: str) -> Scan:
    if fmt == "folder":
        if not config.src.is_dir():
            raise DataError(f"--format folder needs a directory, {config.src} is a file")
        return scan_folder(config.src)
    if fmt == "idx":
        from lensflow.data.idx import scan_idx

        return scan_idx(config.src, config.labels, config.class_names)
    if fmt == "csv":
        from lensflow.data.csvsource import scan_csv

        return scan_csv(config.src, config.class_names)
    if fmt == "lst":
        from lensflow.data.recordio import scan_lst

        return scan_lst(config.src, config.root, config.class_names)
    if fmt == "rec":
        from lensflow.data.recordio import scan_rec

        return scan_rec(config.src, config.class_names)
    raise DataError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")


def parallel_map(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    workers: int,
    description: str,
    quiet: bool,
) -> list[T]:
    """fn(*a) for every a, in order, over `workers` processes, with a progress bar."""
    n = len(args)
    if workers <= 1 or n < 64:
        return [fn(*a) for a in track(args, description, total=n, quiet=quiet)]
    chunksize = max(1, min(64, n // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, *zip(*args, strict=True), chunksize=chunksize)
        return list(track(results, description, total=n, quiet=quiet))


def safe_name(label: str) -> str:
    """A label as a folder name: keep it readable, drop what file systems dislike."""
    name = re.sub(r"[^\w.+-]+", "_", label, flags=re.UNICODE).strip("._") or "class"
    return name[:80]


def import_dataset(config: ImportConfig, quiet: bool = False) -> ImportResult:
    src = config.src
    if not src.exists():
        raise DataError(f"source {src} does not exist")
    fmt = detect_format(src) if config.format == "auto" else config.format
    if fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if config.min_per_class < 0:
        raise DataError("--min-per-class must be >= 0")
    workers = resolve_workers(config.workers)
    if src.is_dir() and config.out.resolve().is_relative_to(src.resolve()):
        # the next import of SRC would pick the dataset's own images up as a class
        raise DataError(f"--out {config.out} is inside SRC {src}; write the dataset elsewhere")
    scan = scan_source(config, fmt)
    if not scan.items:
        reasons = f" ({len(scan.skipped)} skipped)" if scan.skipped else ""
        hint = " (expected SRC/<class>/<image>)" if fmt == "folder" else ""
        raise DataError(f"no images found in {src}{reasons}{hint}")

    with atomic_dir(config.out, overwrite=config.overwrite) as tmp:
        stems = _stems(scan.items)
        results = parallel_map(
            process_item,
            [(item, tmp, stem) for item, stem in zip(scan.items, stems, strict=True)],
            workers,
            "validating",
            quiet,
        )
        rows, skipped, converted, pixel_hashes = [], list(scan.skipped), [], []
        for item, stem, res in zip(scan.items, stems, results, strict=True):
            if not res["ok"]:
                skipped.append({"path": res["ref"], "reason": res["reason"]})
                continue
            row = {
                "id": Path(stem).name,
                "path": res["path"],
                "label": item.label,
                "split": item.split,
                "sha256": res["sha256"],
                "width": res["width"],
                "height": res["height"],
            }
            rows.append(row)
            pixel_hashes.append((res["pixel_hash"], item.ref))
            if res["note"]:
                converted.append({"path": item.ref, "note": res["note"]})
        if not rows:
            first = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise DataError(
                f"nothing usable in {src}: all {len(skipped)} files were skipped ({first})"
            )

        report = build_report(rows, pixel_hashes, skipped, converted, scan, config.min_per_class)
        classes = sorted({r["label"] for r in rows})
        counts = counts_of((r["split"], r["label"]) for r in rows)
        write_manifest(tmp, rows)
        write_report(tmp, report)
        save_config(config, tmp / "import.yaml")
        write_card(
            tmp,
            KIND,
            source=str(src.resolve()),
            format=fmt,
            classes=classes,
            counts=counts,
            total=len(rows),
            skipped=len(skipped),
            hash=content_hash(rows),
        )
    return ImportResult(config.out, len(rows), len(skipped), report, counts)


def _stems(items: list[Item]) -> list[str]:
    """Where each item lands: images/<class>/<id> (the extension is chosen when written)."""
    width = max(6, len(str(len(items))))
    return [f"images/{safe_name(it.label)}/{i:0{width}d}" for i, it in enumerate(items)]


def build_report(
    rows: list[dict[str, Any]],
    pixel_hashes: list[tuple[str, str]],
    skipped: list[dict[str, str]],
    converted: list[dict[str, str]],
    scan: Scan,
    min_per_class: int,
) -> dict[str, Any]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (h, _) in enumerate(pixel_hashes):
        groups[h].append(i)
    dup_groups = [g for g in groups.values() if len(g) > 1]
    duplicates = [[pixel_hashes[i][1] for i in g] for g in dup_groups]
    leaks = []
    for g in dup_groups:
        splits = sorted({rows[i]["split"] for i in g})
        if len(splits) > 1:
            leaks.append({"paths": [pixel_hashes[i][1] for i in g], "splits": splits})
    warnings = list(scan.warnings)
    warnings += class_warnings(rows, min_per_class)
    if leaks:
        warnings.append(
            f"LEAK: {len(leaks)} duplicate group(s) span two splits (the same image in train and "
            "an evaluation split inflates accuracy); see report.json 'leaks'"
        )
    return {
        "skipped": skipped,
        "duplicates": duplicates,
        "duplicate_ids": [[rows[i]["id"] for i in g] for g in dup_groups],
        "leaks": leaks,
        "warnings": warnings,
        "converted": converted,
        "ignored_non_images": scan.ignored,
    }


def class_warnings(rows: list[dict[str, Any]], min_per_class: int) -> list[str]:
    per_class: dict[str, int] = defaultdict(int)
    for r in rows:
        per_class[r["label"]] += 1
    out = [
        f"class {label!r} has only {n} image(s) (minimum {min_per_class}); collect more or merge it"
        for label, n in sorted(per_class.items())
        if n < min_per_class
    ]
    splits = {r["split"] for r in rows} - {UNSPLIT}
    for split in sorted(splits):
        present = {r["label"] for r in rows if r["split"] == split}
        missing = sorted(set(per_class) - present)
        if missing:
            out.append(f"split {split!r} has no images of: {', '.join(missing)}")
    if len(per_class) < 2:
        out.append(f"only {len(per_class)} class found; a classifier needs at least 2")
    return out
