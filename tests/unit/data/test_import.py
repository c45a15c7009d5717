"""Folder import on real data: pre-split folders, duplicates, leaks, small classes."""

from __future__ import annotations

import shutil

import pytest

from lensflow.data import ImportConfig, import_dataset, load_dataset
from lensflow.data.info import dataset_info, summary_text


def test_duplicates_leaks_and_small_class_warnings(tmp_path, sample_folder):
    src = tmp_path / "src"
    shutil.copytree(sample_folder, src)
    hat = sorted((src / "train" / "hat").iterdir())[0]
    shutil.copy(hat, src / "train" / "hat" / "copy-in-train.jpg")  # duplicate, same split
    shutil.copy(hat, src / "validation" / "hat" / "leaked.jpg")  # duplicate across splits
    (src / "train" / "scarf").mkdir()
    shutil.copy(sorted((src / "train" / "dress").iterdir())[0], src / "train" / "scarf" / "x.jpg")
    (src / "README.txt").write_text("not an image")
    (src / "stray.jpg").write_bytes(hat.read_bytes())
    import_dataset(
        ImportConfig(src=src, out=tmp_path / "ds", workers=1, min_per_class=10), quiet=True
    )
    info = dataset_info(load_dataset(tmp_path / "ds"))
    groups = sorted(sorted(g) for g in info["duplicates"])
    assert sorted(f"train/hat/{hat.name}" in g for g in groups) == [False, True]
    hat_group = next(g for g in groups if f"train/hat/{hat.name}" in g)
    assert hat_group == sorted(
        [f"train/hat/{hat.name}", "train/hat/copy-in-train.jpg", "validation/hat/leaked.jpg"]
    )
    # the scarf photo is a copy of a dress photo: a duplicate across classes, same split
    assert any("train/scarf/x.jpg" in g for g in groups)
    assert len(info["leaks"]) == 1 and info["leaks"][0]["splits"] == ["train", "validation"]
    warnings = "\n".join(info["warnings"])
    assert "LEAK" in warnings
    assert "class 'scarf' has only 1 image(s)" in warnings
    assert "split 'validation' has no images of: scarf" in warnings
    assert info["skipped"] == [
        {"path": "stray.jpg", "reason": "not inside a class folder (SRC/<class>/image)"}
    ]
    text = summary_text(info)
    assert "LEAK across train/validation" in text and "stray.jpg" in text


@pytest.mark.slow  # ~5 s on an idle 2-core machine, up to ~20 s when the cores are shared
def test_import_clothing_small(shared_datasets, tmp_path):
    out = tmp_path / "clothing"
    result = import_dataset(
        ImportConfig(src=shared_datasets / "clothing-small", out=out), quiet=True
    )
    ds = load_dataset(out)
    assert result.total == 3409 and result.skipped == 0
    assert len(ds.classes) == 10 and "longsleeve" in ds.classes
    assert len(ds.split("train")) == 3068 and len(ds.split("validation")) == 341


def test_import_socks_sample_unsplit(shared_datasets, tmp_path):
    import_dataset(
        ImportConfig(src=shared_datasets / "socks-sample", out=tmp_path / "socks"), quiet=True
    )
    ds = load_dataset(tmp_path / "socks")
    assert len(ds.classes) == 6 and all(c.startswith("class-") for c in ds.classes)
    assert ds.split_names == ["all"] and len(ds.split("all")) == 18
    assert ds.counts() == {"all": dict.fromkeys(ds.classes, 3)}
    assert any("has only 3 image(s)" in w for w in ds.report["warnings"])


def test_existing_output_needs_overwrite(tmp_path, tiny_dataset, sample_folder):
    from lensflow.errors import LensflowError

    with pytest.raises(LensflowError, match="already exists"):
        import_dataset(ImportConfig(src=sample_folder, out=tiny_dataset), quiet=True)


def test_out_inside_src_is_refused(tmp_path, sample_folder):
    from lensflow.errors import DataError

    src = tmp_path / "src"
    shutil.copytree(sample_folder / "validation", src)
    with pytest.raises(DataError, match="inside SRC"):
        import_dataset(ImportConfig(src=src, out=src / "ds"), quiet=True)
    assert not (src / "ds").exists()
