"""Dataset layout and the Python API other stages use: load_dataset, pack, PackedReader."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lensflow.data import PackedReader, ensure_packed, load_dataset, pack_dataset
from lensflow.errors import DataError
from lensflow.preprocess import Preprocess, to_pil


def test_tiny_dataset_layout_and_api(tiny_dataset, sample_folder):
    ds = load_dataset(tiny_dataset)
    assert ds.classes == ["dress", "hat", "pants", "shoes", "t-shirt"]
    assert len(ds.split("train")) == 60 and len(ds.split("validation")) == 20
    assert len(ds.split("all")) == 80 and ds.split("test") == []
    assert ds.split("val") == ds.split("validation")
    card = json.loads((tiny_dataset / "card.json").read_text())
    assert card["kind"] == "lensflow-dataset" and card["format"] == "folder"
    assert card["counts"]["train"]["hat"] == 12 and card["counts"]["validation"]["hat"] == 4
    assert card["hash"] == ds.hash and len(ds.hash) == 16
    with (tiny_dataset / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "path", "label", "split", "sha256", "width", "height"]
    for rec in ds.records:
        assert rec.path.is_absolute() and rec.path.is_file()
        assert rec.path.is_relative_to(ds.path)  # self-contained: copied, not linked to SRC
    # clean RGB JPEGs are stored byte-identical to the source
    first = ds.split("train")[0]
    src = sample_folder / "train" / first.label
    assert any(p.read_bytes() == first.path.read_bytes() for p in src.iterdir())


def test_load_dataset_rejects_non_datasets(tmp_path, tiny_dataset):
    with pytest.raises(DataError, match=r"no card\.json"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown split 'testing'"):
        load_dataset(tiny_dataset).split("testing")
    with pytest.raises(DataError, match="not a packed dataset"):
        PackedReader(tmp_path)


def test_pack_pixels_equal_preprocess(tiny_dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    ds = load_dataset(copy)
    out = pack_dataset(copy, size=64, resize=80, center_crop=True, workers=2, quiet=True)
    reader = PackedReader(out)
    assert len(reader) == 80 and reader.classes == ds.classes
    assert reader.images.shape == (80, 64, 64, 3) and reader.images.dtype == np.uint8
    pp = Preprocess(input_size=64, resize=80, crop="center")
    for i in (0, 17, 79):
        img, label = reader[i]
        expected = np.asarray(pp.resize_crop(to_pil(ds.records[i].path)))
        np.testing.assert_array_equal(img, expected)
        assert label == ds.classes.index(ds.records[i].label)
    assert len(reader.indices("train")) == 60 and len(reader.indices("validation")) == 20
    assert set(reader.indices("all")) == set(range(80))
    batch, labels = reader.batch([5, 2, 9])
    np.testing.assert_array_equal(batch[1], reader[2][0])
    assert labels.tolist() == [reader[5][1], reader[2][1], reader[9][1]]
    # ensure_packed reuses the same pack (no rewrite) and squash mode is a different key
    mtime = (out / "images.npy").stat().st_mtime_ns
    again = ensure_packed(copy, size=64, resize=80)
    assert again.path == out and (out / "images.npy").stat().st_mtime_ns == mtime
    squash = ensure_packed(copy, size=32, center_crop=False, workers=1, quiet=True)
    assert squash.path != out and squash.images.shape == (80, 32, 32, 3)
    expected = np.asarray(Preprocess(32, 32, crop="none").resize_crop(to_pil(ds.records[3].path)))
    np.testing.assert_array_equal(squash[3][0], expected)
    # Letterbox packs (the ensemble's input) store exactly what inference computes.
    padded = ensure_packed(copy, size=40, center_crop="pad", workers=1, quiet=True)
    assert padded.path.name == "40-40-pad-bicubic" and padded.images.shape == (80, 40, 40, 3)
    expected = Preprocess(40, 40, crop="pad").to_uint8(ds.records[3].path)
    np.testing.assert_array_equal(padded[3][0], expected)
