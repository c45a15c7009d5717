"""`lensflow data split`: stratified, seeded train/validation/test assignment.

- Only records in "all" are assigned, unless `resplit=True` (then every record is).
  Pre-split imports (train/, validation/, test/ folders) therefore stay as they are by default:
  splitting an already split dataset changes nothing (assigned = 0), so pipelines can re-run it.
- Stratified per class: each class is cut by the ratios with largest-remainder rounding, so
  small classes keep the proportions as well as whole images allow.
- Exact duplicates (report.json "duplicate_ids") move together: a group is one unit, so the
  same picture can never land in train and test.
- Deterministic: the same dataset, ratios and seed give the same assignment on any machine
  (numpy's PCG64 with the seed, units sorted by id before shuffling).

Writes manifest.csv then card.json (new counts and hash); `load_dataset` checks that the two
agree, so an interrupted split is detected rather than trusted. Existing packs only get their
`splits.npy` and hash updated: the pixels do not change, so nothing is decoded again.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.config import save_config
from lensflow.data.dataset import (
    KIND,
    UNSPLIT,
    content_hash,
    counts_of,
    load_dataset,
    read_manifest,
    write_manifest,
    write_report,
)
from lensflow.errors import DataError
from lensflow.io import atomic_write_bytes, atomic_write_json, write_card

SPLIT_ORDER = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    dataset: Path
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    resplit: bool = False  # also reassign records that already have a split

    def ratios(self) -> tuple[float, float, float]:
        ratios = (self.train, self.val, self.test)
        if any(r < 0 or r > 1 or math.isnan(r) for r in ratios):
            raise DataError(f"split ratios must be between 0 and 1, got {ratios}")
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise DataError(
                f"--train {self.train} + --val {self.val} + --test {self.test} = {sum(ratios):g}; "
                "they must add up to 1 (e.g. --train 0.8 --val 0.1 --test 0.1)"
            )
        if self.train <= 0:
            raise DataError("--train must be > 0: a model needs training images")
        return ratios


@dataclass
class SplitResult:
    assigned: int
    kept: int
    counts: dict[str, dict[str, int]]
    hash: str


def allocate(n: int, ratios: tuple[float, ...]) -> list[int]:
    """Split n into integers proportional to ratios (largest remainder; ties to earlier splits)."""
    exact = [n * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def duplicate_units(ids: list[str], duplicate_ids: list[list[str]]) -> list[list[str]]:
    """Group ids so that members of one duplicate group form one unit (union of overlapping groups)."""
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in duplicate_ids:
        members = [g for g in group if g in parent]
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    units: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        units[find(i)].append(i)
    return sorted((sorted(u) for u in units.values()), key=lambda u: u[0])


def assign_splits(
    rows: list[dict[str, Any]],
    duplicate_ids: list[list[str]],
    ratios: tuple[float, float, float],
    seed: int,
) -> dict[str, str]:
    """id -> split for the given rows: stratified per class, duplicate groups kept together."""
    label_of = {r["id"]: r["label"] for r in rows}
    units = duplicate_units(list(label_of), duplicate_ids)
    by_class: dict[str, list[list[str]]] = defaultdict(list)
    for unit in units:
        by_class[label_of[unit[0]]].append(unit)  # a cross-class group follows its first member
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for label in sorted(by_class):
        class_units = by_class[label]
        order = rng.permutation(len(class_units))
        target = allocate(sum(len(u) for u in class_units), ratios)
        have = [0, 0, 0]
        for k in order:
            unit = class_units[k]
            # the split furthest below its target takes the unit (ties: train, validation, test)
            deficits = [target[s] - have[s] for s in range(3)]
            s = max(range(3), key=lambda j: (deficits[j], -j))
            have[s] += len(unit)
            for i in unit:
                out[i] = SPLIT_ORDER[s]
    return out


def split_dataset(config: SplitConfig) -> SplitResult:
    ratios = config.ratios()
    ds = load_dataset(config.dataset)
    rows = read_manifest(ds.path)
    todo = [r for r in rows if config.resplit or r["split"] == UNSPLIT]
    if not todo:
        # already split (pre-split folders or an earlier split): keeping it is the contract
        return SplitResult(0, len(rows), ds.counts(), ds.hash)
    assignment = assign_splits(todo, ds.report.get("duplicate_ids", []), ratios, config.seed)
    for r in rows:
        if r["id"] in assignment:
            r["split"] = assignment[r["id"]]
    new_hash = content_hash(rows)
    counts = counts_of((r["split"], r["label"]) for r in rows)
    report = dict(ds.report)
    report["leaks"] = _leaks(rows, report.get("duplicate_ids", []), report.get("duplicates", []))
    report["warnings"] = [w for w in report.get("warnings", []) if not w.startswith("LEAK")]
    write_manifest(ds.path, rows)
    write_report(ds.path, report)
    save_config(config, ds.path / "split.yaml")
    card = {k: v for k, v in ds.card.items() if k not in ("kind", "lensflow_version", "created")}
    card.update(counts=counts, hash=new_hash)
    write_card(ds.path, KIND, **card)
    _update_packs(ds.path, ds.hash, new_hash, [r["split"] for r in rows], counts)
    return SplitResult(len(todo), len(rows) - len(todo), counts, new_hash)


def _leaks(
    rows: list[dict[str, Any]], duplicate_ids: list[list[str]], duplicates: list[list[str]]
) -> list[dict[str, Any]]:
    split_of = {r["id"]: r["split"] for r in rows}
    leaks = []
    for ids, paths in zip(duplicate_ids, duplicates, strict=False):
        splits = sorted({split_of[i] for i in ids if i in split_of})
        if len(splits) > 1:
            leaks.append({"paths": paths, "splits": splits})
    return leaks


def _update_packs(
    directory: Path, old_hash: str, new_hash: str, splits: list[str], counts: dict[str, Any]
) -> None:
    """Packs of the old version only need new split labels: rows and pixels are unchanged."""
    for index_path in sorted((directory / "packed").glob("*/index.json")):
        index = json.loads(index_path.read_text())
        if index.get("dataset_hash") != old_hash or index.get("count") != len(splits):
            continue
        buf = io.BytesIO()
        np.save(buf, np.array(splits, dtype="<U10"))
        atomic_write_bytes(index_path.parent / "splits.npy", buf.getvalue())
        atomic_write_json(index_path, {**index, "dataset_hash": new_hash, "counts": counts})
