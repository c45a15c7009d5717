"""Which split and which classes an evaluation uses, and the errors when they do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.data import Dataset, Record
from lensflow.errors import EvaluateError
from lensflow.evaluate.evaluator import EvaluateConfig, check_classes, default_out, resolve_split


def _dataset(splits: dict[str, int], classes=("a", "b")) -> Dataset:
    records = [
        Record(f"{s}{i}", Path(f"/x/{s}{i}.jpg"), classes[i % len(classes)], s, "0", 1, 1)
        for s, n in splits.items()
        for i in range(n)
    ]
    return Dataset(Path("/x"), sorted(classes), records, {"hash": "h"})


def test_default_split_prefers_test_then_validation_then_unsplit() -> None:
    assert resolve_split(_dataset({"train": 4, "validation": 2, "test": 3}), None)[0] == "test"
    name, records = resolve_split(_dataset({"train": 4, "validation": 2}), None)
    assert name == "validation" and len(records) == 2
    assert resolve_split(_dataset({"all": 5}), None)[0] == "all"
    with pytest.raises(
        EvaluateError, match=r"no test or validation images .*train \(4\).*--split train"
    ):
        resolve_split(_dataset({"train": 4}), None)


def test_explicit_split() -> None:
    ds = _dataset({"train": 4, "validation": 2})
    assert len(resolve_split(ds, "train")[1]) == 4
    assert resolve_split(ds, "val")[0] == "validation"
    assert len(resolve_split(ds, "all")[1]) == 6
    with pytest.raises(
        EvaluateError,
        match=r"split 'test' .* no images \(available: train \(4\), validation \(2\)\)",
    ):
        resolve_split(ds, "test")


def test_class_mismatch_names_both_sides() -> None:
    check_classes(["b", "a"], _dataset({"test": 2}))  # same names, other order: fine
    with pytest.raises(EvaluateError, match="only in the dataset: c; only in the model: z"):
        check_classes(["a", "b", "z"], _dataset({"test": 3}, classes=("a", "b", "c")))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(EvaluateError, match="--split must be one of"):
        EvaluateConfig(source=Path("r"), split="tests")
    with pytest.raises(EvaluateError, match="top_k must be >= 1"):
        EvaluateConfig(source=Path("r"), top_k=0)


def test_default_out_sits_beside_the_source() -> None:
    assert default_out(Path("/w/run"), "test") == Path("/w/run-eval-test")
    assert default_out(Path("/w/b.tar.gz"), "validation") == Path("/w/b-eval-validation")


def test_missing_training_dataset_asks_for_data(tmp_path) -> None:
    from lensflow.evaluate.evaluator import resolve_dataset
    from lensflow.evaluate.sources import ModelSource
    from lensflow.preprocess import Preprocess

    gone = tmp_path / "deleted-dataset"
    source = ModelSource(
        kind="run",
        path=tmp_path / "run",
        classes=["a", "b"],
        preprocess=Preprocess(),
        card={"dataset": {"path": str(gone), "hash": "h"}},
        forward=lambda x: (x, x),
    )
    with pytest.raises(
        EvaluateError, match=r"not available \(.*deleted-dataset\); pass one with --data"
    ):
        resolve_dataset(source, None)
