"""`lensflow evaluate`: one function from (run or bundle, dataset, split) to an evaluation folder.

    OUT/
      config.yaml        the EvaluateConfig
      metrics.json       Metrics.to_dict() + what was evaluated (source, dataset, split)
      predictions.csv    one row per image: id, path, true, predicted, probability, loss, correct
      confusion_matrix.png  curves.png (runs with metrics.csv)  reliability.png
      top_losses.png     samples.png   embeddings_pca.png   embeddings_tsne.png
      projector/         tensors.tsv metadata.tsv sprite.png projector_config.pbtxt
      report.html        everything above in one self-contained page

The folder is built under a temp name and renamed when complete (nothing half-written).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.data import Dataset, Record, load_dataset
from lensflow.errors import EvaluateError
from lensflow.evaluate import embeddings, plots
from lensflow.evaluate.metrics import Metrics, compute_metrics, top_losses
from lensflow.evaluate.sources import Inference, ModelSource, open_source
from lensflow.io import atomic_dir, atomic_write_json, atomic_write_text
from lensflow.progress import console

SPLIT_CHOICES = ("test", "validation", "train", "all")


@dataclass(frozen=True)
class EvaluateConfig:
    source: Path  # a run or a bundle directory
    data: Path | None = None  # default: the dataset the model was trained on
    split: str | None = None  # default: test if it has images, else validation
    top_k: int = 5  # top-k accuracy (capped at the class count)
    out: Path | None = None  # default: <source>-eval-<split> beside the source
    batch_size: int = 32  # images per forward pass
    n_bins: int = 10  # reliability diagram / ECE bins
    n_top_losses: int = 16  # images in the top-losses gallery and the report's mistakes table
    samples_per_class: int = 6  # columns of the per-class sample grid
    tsne_max_points: int = 2000  # t-SNE is O(N log N) but slow on 2 cores beyond a few thousand
    projector_max_points: int = 5000  # projector rows (tensors.tsv is ~13 KB per row at D=1280)
    seed: int = 0  # subsampling and t-SNE
    threads: int | None = None  # onnxruntime threads for bundles (default: all cores)
    overwrite: bool = False
    ood: Path | None = None  # folder of images of none of the classes: open-set section

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in (*SPLIT_CHOICES, "val"):
            raise EvaluateError(
                f"--split must be one of {', '.join(SPLIT_CHOICES)}, not {self.split!r}"
            )
        for name in ("top_k", "batch_size", "n_bins", "tsne_max_points", "projector_max_points"):
            if getattr(self, name) < 1:
                raise EvaluateError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_top_losses < 0 or self.samples_per_class < 0:
            raise EvaluateError("n_top_losses and samples_per_class must be >= 0")


@dataclass(frozen=True)
class EvaluationResult:
    out: Path
    metrics: Metrics
    summary: dict[str, Any]  # what metrics.json holds (and `--json` prints)

    @property
    def report(self) -> Path:
        return self.out / "report.html"


# -- resolving what to evaluate ------------------------------------------------------------------
def resolve_dataset(source: ModelSource, data: Path | None) -> Dataset:
    if data is not None:
        return load_dataset(data)
    path = source.dataset_path()
    if path is None:
        recorded = (source.card.get("dataset") or {}).get("path") or "not recorded"
        raise EvaluateError(
            f"the dataset {source.path.name} was trained on is not available ({recorded}); "
            f"pass one with --data, e.g. lensflow evaluate {source.path} --data DATASET"
        )
    dataset = load_dataset(path)
    expected = source.dataset_hash()
    if expected and dataset.hash != expected:
        console.print(
            f"[yellow]warning:[/] {path} changed since training (hash {dataset.hash}, "
            f"trained on {expected})"
        )
    return dataset


def check_classes(model_classes: list[str], dataset: Dataset) -> None:
    """Same class names (any order): labels are mapped by name, never by index."""
    model, data = set(model_classes), set(dataset.classes)
    if model == data:
        return
    parts = []
    if data - model:
        parts.append(f"only in the dataset: {', '.join(sorted(data - model))}")
    if model - data:
        parts.append(f"only in the model: {', '.join(sorted(model - data))}")
    raise EvaluateError(
        f"class mismatch between the model ({len(model)} classes) and {dataset.path} "
        f"({len(data)} classes): {'; '.join(parts)}"
    )


def resolve_split(dataset: Dataset, split: str | None) -> tuple[str, list[Record]]:
    """The requested split, or test / validation / the unsplit `all`, whichever has images."""
    available = ", ".join(f"{s} ({len(dataset.split(s))})" for s in dataset.split_names) or "none"
    if split is not None:
        name = "validation" if split == "val" else split
        records = dataset.split(name)
        if not records:
            raise EvaluateError(
                f"split {name!r} of {dataset.path} has no images (available: {available}); "
                "choose another with --split"
            )
        return name, records
    for name in ("test", "validation"):
        if records := dataset.split(name):
            return name, records
    if dataset.split_names == ["all"]:
        return "all", dataset.split("all")
    raise EvaluateError(
        f"{dataset.path} has no test or validation images (available: {available}); "
        "pass --split train to evaluate on the training images"
    )


def default_out(source: Path, split: str) -> Path:
    base = source.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return source.parent / f"{base}-eval-{split}"


# -- the evaluation ------------------------------------------------------------------------------
def evaluate(config: EvaluateConfig, quiet: bool = False) -> EvaluationResult:
    """Evaluate, write the evaluation folder and return its summary."""
    return evaluate_source(open_source(config.source, threads=config.threads), config, quiet)


def evaluate_source(
    source: ModelSource, config: EvaluateConfig, quiet: bool = False
) -> EvaluationResult:
    """`evaluate` for an already opened run or bundle."""
    dataset = resolve_dataset(source, config.data)
    check_classes(source.classes, dataset)
    split, records = resolve_split(dataset, config.split)
    out = config.out or default_out(Path(config.source), split)
    if Path(out).exists() and not config.overwrite:  # say so before minutes of inference
        raise EvaluateError(f"{out} already exists; choose another --out or pass --overwrite")
    ood_paths, scorer = None, None
    if config.ood is not None:  # bad folders and missing scores fail before any inference
        from lensflow.evaluate.openset import ood_images, source_scorer

        ood_paths = ood_images(config.ood)
        scorer = source_scorer(source, quiet)
    y_true = np.array([source.classes.index(r.label) for r in records], dtype=np.int64)
    projector_rows = embeddings.subsample(len(records), config.projector_max_points, config.seed)
    thumb = embeddings.sprite_tile_size(len(projector_rows))
    inference = source.infer(
        [r.path for r in records], config.batch_size, thumb, quiet, set(projector_rows.tolist())
    )
    metrics = compute_metrics(y_true, inference.proba, source.classes, config.top_k, config.n_bins)
    summary = {
        **metrics.to_dict(),
        "source": {"kind": source.kind, "path": str(source.path)},
        "dataset": {"path": str(dataset.path), "hash": dataset.hash},
        "split": split,
        "out": str(Path(out).resolve()),
        "report": str(Path(out).resolve() / "report.html"),
    }
    ood_scores = None
    if scorer is not None and ood_paths is not None:
        from lensflow.evaluate.openset import score_ood

        correct = inference.proba.argmax(1) == y_true
        summary["open_set"], *ood_scores = score_ood(
            source, scorer, inference.features, correct, ood_paths, config.batch_size, quiet
        )
        summary["open_set"]["ood"] = str(Path(config.ood).resolve())
    with atomic_dir(out, overwrite=config.overwrite) as tmp:
        from lensflow.config import save_config

        save_config(config, tmp / "config.yaml")
        atomic_write_json(tmp / "metrics.json", summary)
        write_predictions(tmp / "predictions.csv", records, y_true, inference.proba, source.classes)
        pictures = draw_pictures(tmp, source, records, y_true, inference, metrics, config, quiet)
        if ood_scores:
            pictures["Open-set scores"] = plots.plot_ood_histogram(
                *ood_scores, summary["open_set"]["threshold"], tmp / "open_set_scores.png"
            )
        from lensflow.evaluate.report import write_report

        write_report(
            tmp / "report.html",
            summary,
            pictures,
            source,
            dataset,
            config,
            records,
            y_true,
            inference,
        )
    return EvaluationResult(Path(out), metrics, summary)


def write_predictions(
    path: Path, records: list[Record], y_true: np.ndarray, proba: np.ndarray, classes: list[str]
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["id", "path", "true", "predicted", "probability", "true_probability", "loss", "correct"]
    )
    pred = proba.argmax(axis=1)
    for r, t, p, row in zip(records, y_true, pred, proba, strict=True):
        loss = -math.log(max(float(row[t]), 1e-12))
        w.writerow(
            [
                r.id,
                str(r.path),
                classes[t],
                classes[p],
                f"{row[p]:.6f}",
                f"{row[t]:.6f}",
                f"{loss:.6f}",
                int(p == t),
            ]
        )
    atomic_write_text(path, buf.getvalue())


def read_metrics_csv(run_dir: Path | None) -> list[dict[str, float]]:
    path = run_dir / "metrics.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = math.nan
            rows.append(parsed)
    return [r for r in rows if not math.isnan(r.get("epoch", math.nan))]


def quick_sweep(run_dir: Path | None) -> tuple[list[dict[str, float]], float | None]:
    """(rows, chosen C) of a quick-mode run's C sweep from its card; ([], None) otherwise."""
    card_path = run_dir / "card.json" if run_dir is not None else None
    if card_path is None or not card_path.is_file():
        return [], None
    quick = json.loads(card_path.read_text()).get("quick") or {}
    rows = [r for r in quick.get("sweep", []) if "C" in r]
    return (rows, quick.get("C")) if len(rows) > 1 else ([], None)


def draw_pictures(
    out: Path,
    source: ModelSource,
    records: list[Record],
    y_true: np.ndarray,
    inference: Inference,
    metrics: Metrics,
    config: EvaluateConfig,
    quiet: bool = False,
) -> dict[str, Path]:
    """All PNGs of the evaluation, by title, in report order."""
    classes = source.classes
    proba = inference.proba
    pred = proba.argmax(axis=1)
    pics: dict[str, Path] = {}
    pics["Confusion matrix"] = plots.plot_confusion(
        metrics.confusion_matrix,
        metrics.confusion_matrix_normalized,
        classes,
        out / "confusion_matrix.png",
    )
    sweep, chosen = quick_sweep(source.run_dir)
    curves = read_metrics_csv(source.run_dir)
    if sweep:  # a one-pass quick run: what it measured is its sweep over C, not epochs
        pics["Training curves (quick mode: the head's C sweep)"] = plots.plot_curves(
            sweep, out / "curves.png", x_key="C", chosen=chosen
        )
    elif curves:
        pics["Training curves"] = plots.plot_curves(curves, out / "curves.png")
    pics["Reliability diagram"] = plots.plot_reliability(
        metrics.reliability, metrics.ece, out / "reliability.png"
    )

    worst = top_losses(y_true, proba, config.n_top_losses)
    tiles = [
        plots.Tile(
            plots.photo_thumbnail(records[w["index"]].path),
            f"true: {classes[w['true']]}\npred: {classes[w['predicted']]} {w['probability']:.2f}",
            good=False,
        )
        for w in worst
    ]
    title = f"The {len(tiles)} most confidently wrong images" if tiles else "No mistakes"
    pics["Top losses"] = plots.plot_gallery(tiles, out / "top_losses.png", title)
    per_class = min(config.samples_per_class, int(np.bincount(y_true).max()))
    pics["Samples per class"] = plots.plot_gallery(
        sample_tiles(records, y_true, proba, classes, per_class, config.seed),
        out / "samples.png",
        "Samples per class (green: right, red: wrong)",
        cols=max(1, per_class),
    )

    keep = embeddings.subsample(len(records), config.tsne_max_points, config.seed)
    feats = inference.features
    pics["Embeddings (PCA)"] = plots.plot_embedding(
        embeddings.pca_2d(feats),
        y_true,
        classes,
        out / "embeddings_pca.png",
        f"Pooled features, PCA ({len(feats)} images)",
    )
    if not quiet:
        console.print(f"t-SNE on {len(keep)} images…")
    xy = embeddings.tsne_2d(feats[keep], seed=config.seed)
    if xy is not None:
        pics["Embeddings (t-SNE)"] = plots.plot_embedding(
            xy,
            y_true[keep],
            classes,
            out / "embeddings_tsne.png",
            f"Pooled features, t-SNE ({len(keep)} images)",
        )
    rows = embeddings.subsample(len(records), config.projector_max_points, config.seed)  # as infer
    embeddings.write_projector(
        out / "projector",
        feats[rows],
        {
            "label": [classes[y_true[i]] for i in rows],
            "predicted": [classes[pred[i]] for i in rows],
            "correct": ["yes" if pred[i] == y_true[i] else "no" for i in rows],
            "probability": [f"{proba[i, pred[i]]:.3f}" for i in rows],
            "id": [records[i].id for i in rows],
        },
        [inference.thumbnails[i] for i in rows],
    )
    return pics


def sample_tiles(
    records: list[Record],
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    per_class: int,
    seed: int,
) -> list[plots.Tile]:
    """`per_class` images of each class (a seeded random pick), one row per class."""
    rng = np.random.default_rng(seed)
    pred = proba.argmax(axis=1)
    tiles = []
    for c, name in enumerate(classes):
        rows = np.flatnonzero(y_true == c)
        if not len(rows) or not per_class:
            continue
        picked = np.sort(rng.choice(rows, min(per_class, len(rows)), replace=False))
        for i in picked:
            caption = f"{name}\npred: {classes[pred[i]]} {proba[i, pred[i]]:.2f}"
            tiles.append(plots.Tile(plots.photo_thumbnail(records[i].path), caption, pred[i] == c))
        # Pad the row so every class starts a new row of the grid.
        tiles += [plots.Tile(np.full((8, 8, 3), 255, np.uint8), "")] * (per_class - len(picked))
    return tiles
