"""Run -> bundle: ONNX export, parity check on real images, optional int8, card, optional archive.

`export_model` is the core (used by `lensflow export`, `backbone_bundle` and the test fixtures);
`export_run` reads a training run and its dataset and calls it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lensflow.bundle import (
    ARCHIVE_SUFFIXES,
    MODEL_FILE,
    OPENSET_FILE,
    Bundle,
    write_archive,
    write_bundle_files,
)
from lensflow.config import save_config
from lensflow.errors import ExportError, LensflowError
from lensflow.io import atomic_dir
from lensflow.openset import DEFAULT_UNKNOWN_RATE
from lensflow.preprocess import Preprocess
from lensflow.progress import console, track

if TYPE_CHECKING:
    from torch import nn

    from lensflow.train.openset import OpenSetImages


@dataclass(frozen=True)
class ExportConfig:
    run: Path  # training run directory (lensflow train --out)
    out: Path  # bundle directory to create
    int8: bool = False  # also quantise: static QDQ int8, per-channel weights
    calibration: Path | None = None  # dataset with real images (default: the run's dataset)
    calibration_images: int = 256  # training images used to calibrate int8 ranges
    parity_images: int = 16  # real images on which ONNX must match torch
    tolerance: float = 1e-4  # max abs logits difference allowed (fp32)
    archive: bool = False  # also write OUT.tar.gz, a single-file copy of the bundle
    overwrite: bool = False
    unknown_rate: float = DEFAULT_UNKNOWN_RATE  # share of held-out known images called unknown
    open_set_images: int = 4096  # at most this many training images feed the open-set score

    def __post_init__(self) -> None:
        if self.calibration_images < 1 or self.parity_images < 1:
            raise ExportError("--calibration-images and --parity-images must be >= 1")
        if not 0 < self.unknown_rate < 0.5:
            raise ExportError(
                f"--unknown-rate must be a fraction in (0, 0.5), e.g. 0.05, got {self.unknown_rate}"
            )
        if self.open_set_images < 2:
            raise ExportError(f"open_set_images must be >= 2, got {self.open_set_images}")
        if not self.tolerance > 0:
            raise ExportError(f"tolerance must be > 0, got {self.tolerance}")


# -- real images ---------------------------------------------------------------------------------
def dataset_images(dataset: str | os.PathLike[str], splits: tuple[str, ...], n: int) -> list[Path]:
    """Up to `n` image paths from the first non-empty split, spread evenly over the classes.

    Deterministic (round-robin over classes in manifest order) so the same export checks the
    same images.
    """
    from lensflow.data import load_dataset

    try:
        ds = load_dataset(dataset)
    except LensflowError as e:
        raise ExportError(f"cannot read images for export from {dataset}: {e.message}") from None
    records = []
    for split in splits:
        records = ds.split(split)
        if records:
            break
    by_class: dict[str, list[Path]] = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r.path)
    picked: list[Path] = []
    queues = list(by_class.values())
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    if not picked:
        raise ExportError(f"{dataset} has no images in split(s) {', '.join(splits)}")
    return picked


def preprocess_paths(
    preprocess: Preprocess, paths: list[Path], what: str, quiet: bool
) -> np.ndarray:
    arrays = [preprocess(p) for p in track(paths, what, quiet=quiet)]
    return np.stack(arrays).astype(np.float32)


# -- the core --------------------------------------------------------------------------------------
def export_model(
    model: nn.Module,
    classes: list[str],
    preprocess: Preprocess,
    out: str | os.PathLike[str],
    parity_x: np.ndarray,
    *,
    card: dict[str, Any] | None = None,
    calibration_x: np.ndarray | None = None,
    tolerance: float = 1e-4,
    archive: bool = False,
    overwrite: bool = False,
    config: Any = None,
    open_set: OpenSetImages | None = None,
    quiet: bool = False,
) -> Path:
    """Write a bundle for `model` (eval mode) at `out`; nothing is left behind on failure.

    fp32 parity (ONNX vs torch logits on `parity_x`, real preprocessed images) must hold within
    `tolerance`, else ExportError. With `calibration_x` the bundle's model is the static int8
    one; its agreement with fp32 on `parity_x` is recorded in the card. With `open_set` the
    bundle gets an open-set score fitted on the exported model's features (`openset.npz`).
    """
    from lensflow.export.onnx import check_parity, compare, export_onnx, onnx_outputs
    from lensflow.predictor import Predictor
    from lensflow.train.openset import fit_open_set

    out = Path(out)
    started = time.perf_counter()
    model.eval()
    shape = (preprocess.channels, preprocess.input_size, preprocess.input_size)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model_path = tmp / MODEL_FILE
        fp32_path = tmp / "model.fp32.onnx" if calibration_x is not None else model_path
        if not quiet:
            console.print(f"exporting {type(model).__name__} to ONNX ...")
        export_onnx(model, shape, fp32_path)
        parity = check_parity(model, fp32_path, parity_x, tolerance)
        fields: dict[str, Any] = {
            "precision": "fp32",
            "parity": {"fp32_vs_torch": parity.to_dict(), "tolerance": tolerance},
        }
        if calibration_x is not None:
            from lensflow.export.quantize import quantize_int8

            if not quiet:
                console.print(f"quantising to int8 (calibration: {len(calibration_x)} images) ...")
            quantize_int8(fp32_path, model_path, calibration_x)
            int8 = compare(onnx_outputs(fp32_path, parity_x), onnx_outputs(model_path, parity_x))
            fp32_path.unlink()
            fields["precision"] = "int8"
            fields["parity"]["int8_vs_fp32"] = int8.to_dict()
            fields["quantization"] = {
                "method": "static QDQ, per-channel int8 weights, uint8 activations, MinMax",
                "calibration_images": len(calibration_x),
            }
        if open_set is not None:
            if not quiet:
                console.print("fitting the open-set score on training features ...")
            predictor = Predictor(Bundle(tmp, list(classes), preprocess, {}), batch_size=8)
            scorer = fit_open_set(lambda x: predictor.run_arrays(x)[1], open_set, quiet)
            scorer.save(tmp / OPENSET_FILE)
            fields["open_set"] = scorer.to_dict()
        fields["export_seconds"] = round(time.perf_counter() - started, 2)
        fields.update(card or {})
        fields.setdefault("model", getattr(model, "model_name", type(model).__name__))
        write_bundle_files(tmp, model_path, list(classes), preprocess, **fields)
        if config is not None:
            save_config(config, tmp / "export.yaml")
    if archive:
        write_archive(out, archive_path(out))
    return out


def archive_path(out: Path) -> Path:
    return out if out.name.endswith(ARCHIVE_SUFFIXES) else out.with_name(out.name + ".tar.gz")


# -- from a training run ---------------------------------------------------------------------------
def export_run(config: ExportConfig, quiet: bool = False) -> Path:
    """`lensflow export`: load the run, pick real images, export, check, write the bundle."""
    from lensflow.train import load_run
    from lensflow.train.openset import open_set_images

    loaded = load_run(config.run)
    run_card = loaded.card
    dataset = config.calibration or _run_dataset(run_card)
    if dataset is None:
        raise ExportError(
            f"the run's dataset ({run_card.get('dataset', {}).get('path')}) is not available for "
            "the parity check; pass --calibration DATASET with real images of the same classes"
        )
    preprocess = loaded.preprocess
    parity_x = preprocess_paths(
        preprocess,
        dataset_images(dataset, ("validation", "test", "train", "all"), config.parity_images),
        "parity images",
        quiet,
    )
    calibration_x = None
    if config.int8:
        calibration_x = preprocess_paths(
            preprocess,
            dataset_images(dataset, ("train", "all"), config.calibration_images),
            "calibration images",
            quiet,
        )
    open_set = open_set_images(
        dataset, loaded.config, preprocess, config.open_set_images, config.unknown_rate, quiet
    )
    best = run_card.get("best") or {}
    card = {
        "model": run_card.get("model"),
        "model_kwargs": run_card.get("model_kwargs", {}),
        "metrics": {**best, **(run_card.get("metrics") or {})},
        "dataset_hash": (run_card.get("dataset") or {}).get("hash"),
        "train_config": _jsonable(loaded.config),
        "run": {"path": str(Path(config.run).resolve()), "mode": run_card.get("mode")},
        "parity_dataset": str(Path(dataset).resolve()),
    }
    return export_model(
        loaded.model,
        list(loaded.classes),
        preprocess,
        config.out,
        parity_x,
        card=card,
        calibration_x=calibration_x,
        tolerance=config.tolerance,
        archive=config.archive,
        overwrite=config.overwrite,
        config=config,
        open_set=open_set,
        quiet=quiet,
    )


def _run_dataset(run_card: dict[str, Any]) -> Path | None:
    path = (run_card.get("dataset") or {}).get("path")
    if path and (Path(path) / "card.json").is_file():
        return Path(path)
    return None


def _jsonable(config: Any) -> Any:
    """The run's training config as plain JSON types (dataclass, mapping or None)."""
    import dataclasses

    from lensflow.config import config_to_dict

    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return config_to_dict(config)
    if isinstance(config, dict):
        return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
    return str(config)
