"""Split: stratified, deterministic, respects pre-split data, keeps duplicate groups together."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lensflow.data import ImportConfig, PackedReader, import_dataset, load_dataset, pack_dataset
from lensflow.data.split import SplitConfig, allocate, assign_splits, duplicate_units, split_dataset
from lensflow.errors import DataError


def test_allocate_largest_remainder():
    assert allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert allocate(16, (0.8, 0.1, 0.1)) == [13, 2, 1]
    assert allocate(3, (0.8, 0.1, 0.1)) == [3, 0, 0]
    assert sum(allocate(97, (0.7, 0.2, 0.1))) == 97


def test_duplicate_units_merge_overlapping_groups():
    units = duplicate_units(["a", "b", "c", "d", "e"], [["a", "c"], ["c", "e"]])
    assert units == [["a", "c", "e"], ["b"], ["d"]]


def _rows(n_per_class: dict[str, int]) -> list[dict]:
    return [
        {"id": f"{label}{i:03d}", "label": label, "split": "all"}
        for label, n in n_per_class.items()
        for i in range(n)
    ]


def test_assign_is_stratified_deterministic_and_keeps_groups():
    rows = _rows({"a": 50, "b": 20, "c": 10})
    groups = [["a000", "a001", "a002", "a003"], ["b005", "b006"]]
    first = assign_splits(rows, groups, (0.8, 0.1, 0.1), seed=0)
    assert first == assign_splits(rows, groups, (0.8, 0.1, 0.1), seed=0)
    assert first != assign_splits(rows, groups, (0.8, 0.1, 0.1), seed=1)
    for label, n in (("a", 50), ("b", 20), ("c", 10)):
        got = [
            sum(1 for i, s in first.items() if i.startswith(label) and s == split)
            for split in ("train", "validation", "test")
        ]
        expected = allocate(n, (0.8, 0.1, 0.1))
        # a 4-image group can overshoot a target by at most its size - 1
        assert all(abs(g - e) <= 3 for g, e in zip(got, expected)), (label, got, expected)
        assert sum(got) == n
    assert len({first[i] for i in groups[0]}) == 1 and len({first[i] for i in groups[1]}) == 1


def test_split_dataset_end_to_end(tmp_path, sample_folder):
    # an unsplit copy of the sample (class folders only) with one duplicate pair
    src = tmp_path / "src"
    for split_dir in ("train", "validation"):
        for class_dir in (sample_folder / split_dir).iterdir():
            shutil.copytree(class_dir, src / class_dir.name, dirs_exist_ok=True)
    dress = sorted((src / "dress").iterdir())[0]
    shutil.copy(dress, src / "dress" / "twin.jpg")
    import_dataset(ImportConfig(src=src, out=tmp_path / "ds", workers=1), quiet=True)
    pack = PackedReader(pack_dataset(tmp_path / "ds", size=16, resize=16, workers=1, quiet=True))
    assert set(pack.splits) == {"all"}
    old_hash = load_dataset(tmp_path / "ds").hash

    result = split_dataset(SplitConfig(tmp_path / "ds", 0.75, 0.125, 0.125, seed=3))
    ds = load_dataset(tmp_path / "ds")
    assert result.assigned == 81 and ds.hash != old_hash and ds.hash == result.hash
    for label in ds.classes:  # 16 per class (17 for dress with the twin) -> 12/2/2
        n = [
            sum(1 for r in ds.split(s) if r.label == label) for s in ("train", "validation", "test")
        ]
        assert n == ([13, 2, 2] if label == "dress" else [12, 2, 2]), (label, n)
    (group,) = ds.report["duplicate_ids"]  # the dress photo and its twin
    assert len(group) == 2 and len({r.split for r in ds.records if r.id in group}) == 1
    assert ds.report["leaks"] == []
    # the pack follows without re-decoding: same pixels, new split labels and hash
    reader = PackedReader(pack.path)
    assert reader.dataset_hash == ds.hash
    assert list(reader.splits) == [r.split for r in ds.records]
    np.testing.assert_array_equal(reader.images, pack.images)

    # same seed again with --resplit: identical; already split without --resplit: refused
    split_dataset(SplitConfig(tmp_path / "ds", 0.75, 0.125, 0.125, seed=3, resplit=True))
    assert load_dataset(tmp_path / "ds").hash == ds.hash
    again = split_dataset(SplitConfig(tmp_path / "ds", seed=99))  # no --resplit: nothing moves
    assert again.assigned == 0 and again.kept == 81 and again.hash == ds.hash


def test_split_respects_pre_split_and_validates_ratios(tiny_dataset, tmp_path):
    kept = split_dataset(SplitConfig(tiny_dataset))
    assert kept.assigned == 0 and load_dataset(tiny_dataset).hash == kept.hash
    with pytest.raises(DataError, match="must add up to 1"):
        split_dataset(SplitConfig(tiny_dataset, 0.8, 0.3, 0.1))
    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    split_dataset(SplitConfig(copy, 0.5, 0.25, 0.25, resplit=True))
    counts = load_dataset(copy).counts()
    assert counts["test"] == dict.fromkeys(counts["train"], 4)
    (copy / "manifest.csv").write_text(
        (copy / "manifest.csv").read_text().replace(",test,", ",train,", 1)
    )
    with pytest.raises(DataError, match="disagree"):
        load_dataset(copy)
