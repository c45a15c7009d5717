"""`lensflow evaluate ... --ood DIR`: does the open-set score tell the model's classes apart from
images of none of them?

In-distribution: the evaluated split. Out-of-distribution: every image under DIR (a folder of
images that belong to none of the classes: walls, other objects). Reported: AUROC, the share of
OOD images still accepted when 95 % of in-distribution images are (FPR at 95 % TPR), the
rejection rates of both at the model's operating point, accuracy on the accepted images, and a
histogram of both score distributions. Bundles use their stored score; a run gets one fitted
here exactly as export would (its training and validation rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lensflow.errors import EvaluateError, LensflowError
from lensflow.evaluate.sources import ModelSource
from lensflow.openset import OpenSetScorer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def ood_images(folder: Path) -> list[Path]:
    """Every image file under `folder` (sorted), with errors that say what is wrong."""
    folder = Path(folder)
    if not folder.exists():
        raise EvaluateError(f"--ood folder not found: {folder}")
    if not folder.is_dir():
        raise EvaluateError(f"--ood must be a folder of images, got the file {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        what = f"{len(paths)} file(s), none of them an image" if paths else "it is empty"
        raise EvaluateError(
            f"--ood folder {folder} has no images ({what}); put images of things that are none "
            f"of the classes there ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return images


def source_scorer(source: ModelSource, quiet: bool = False) -> OpenSetScorer:
    """The bundle's stored score, or for a run one fitted on its training images."""
    from lensflow.bundle import OPENSET_FILE
    from lensflow.openset import load_scorer

    if source.kind == "bundle":
        path = source.path / OPENSET_FILE
        if not path.is_file():
            raise EvaluateError(
                f"{source.path} has no open-set score (exported before it existed); re-export "
                "it with `lensflow export RUN --out BUNDLE`"
            )
        return load_scorer(path)
    from lensflow.train.openset import fit_open_set, open_set_images

    dataset = source.dataset_path()
    if dataset is None:
        raise EvaluateError("--ood on a run needs the run's training dataset, which is gone")
    try:
        images = open_set_images(dataset, source.config, source.preprocess, quiet=quiet)
        return fit_open_set(lambda x: source.forward(x)[1], images, quiet)
    except LensflowError as e:
        raise EvaluateError(e.message) from None


def ood_metrics(
    in_scores: np.ndarray,
    ood_scores: np.ndarray,
    threshold: float,
    in_correct: np.ndarray,
) -> dict[str, Any]:
    """The numbers of the open-set section (metrics.json "open_set")."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s_in, s_ood = np.asarray(in_scores, float), np.asarray(ood_scores, float)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_ood))]
    s = np.r_[s_in, s_ood]
    # positive = OOD; "TPR" in the usual sense = in-distribution images accepted
    fpr, tpr, _ = roc_curve(1 - y, -s)
    fpr_at_95 = float(fpr[np.searchsorted(tpr, 0.95, side="left")])
    accepted = s_in <= threshold
    return {
        "auroc": float(roc_auc_score(y, s)),
        "fpr_at_95_tpr": fpr_at_95,
        "threshold": float(threshold),
        "in_distribution_rejected": float((~accepted).mean()),
        "ood_rejected": float((s_ood > threshold).mean()),
        "accuracy_all": float(np.mean(in_correct)),
        "accuracy_accepted": float(np.mean(in_correct[accepted])) if accepted.any() else None,
        "in_distribution_images": len(s_in),
        "ood_images": len(s_ood),
    }


def score_ood(
    source: ModelSource,
    scorer: OpenSetScorer,
    in_features: np.ndarray,
    in_correct: np.ndarray,
    ood_paths: list[Path],
    batch_size: int = 32,
    quiet: bool = False,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(metrics, in-distribution scores, OOD scores) for the evaluated split and `ood_paths`."""
    ood = source.infer(ood_paths, batch_size, quiet=quiet, thumb_rows=set())
    s_in, s_ood = scorer.score(in_features), scorer.score(ood.features)
    threshold = scorer.threshold if scorer.threshold is not None else float("inf")
    metrics = ood_metrics(s_in, s_ood, threshold, in_correct)
    return {"method": scorer.method, **metrics}, s_in, s_ood
