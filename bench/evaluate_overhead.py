"""What a full `lensflow evaluate` costs beyond bare inference + scikit-learn metrics, in one run.

    .venv/bin/python bench/evaluate_overhead.py [--src ../shared/datasets/clothing-small] [--split validation]

Imports SRC and exports an EfficientNet-Lite0 bundle (ImageNet backbone, seeded random head) once
(not timed), then times on the same images:
- baseline: `Predictor.predict_proba(paths)` + scikit-learn `classification_report` +
  `confusion_matrix` (what a script would do by hand: numbers only, no pictures);
- lensflow: `evaluate_source` (inference incl. features and thumbnails, all metrics, 7 plots,
  PCA + t-SNE, projector export, report.html).
Also times the metrics alone on 100,000 synthetic predictions (20 classes) against the same
scikit-learn calls plus log_loss and top_k_accuracy_score.
Each side runs --repeat times (alternating); medians are reported. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "clothing-small"


def _bundle(classes: list[str], paths: list[Path], out: Path) -> Path:
    import torch

    from lensflow.export.exporter import export_model, preprocess_paths
    from lensflow.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", len(classes), pretrained=True).eval()
    x = preprocess_paths(model.preprocess, paths[:8], "parity", quiet=True)
    card = {"model": "efficientnet_lite0", "metrics": {}, "dataset_hash": None}
    return export_model(model, classes, model.preprocess, out, x, card=card, quiet=True)


def bench_metrics(n: int = 100_000, c: int = 20) -> dict[str, float]:
    from sklearn import metrics as skm

    from lensflow.evaluate.metrics import compute_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2 * np.eye(c)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    classes = [f"c{i}" for i in range(c)]
    t = time.perf_counter()
    pred = p.argmax(1)
    skm.classification_report(y, pred, output_dict=True, zero_division=0)
    skm.confusion_matrix(y, pred)
    skm.log_loss(y, p)
    skm.top_k_accuracy_score(y, p, k=5)
    sk = time.perf_counter() - t
    t = time.perf_counter()
    compute_metrics(y, p, classes, top_k=5)
    ours = time.perf_counter() - t
    return {"metrics_n": n, "metrics_sklearn_s": round(sk, 3), "metrics_lensflow_s": round(ours, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; medians reported")
    args = parser.parse_args()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src} not found (../shared/datasets beside the project)")
    from sklearn import metrics as skm

    from lensflow.data import ImportConfig, import_dataset, load_dataset
    from lensflow.evaluate.evaluator import EvaluateConfig, evaluate_source
    from lensflow.evaluate.sources import open_source
    from lensflow.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="lensflow-bench-eval-"))
    try:
        import_dataset(ImportConfig(src=args.src, out=tmp / "ds", workers=0), quiet=True)
        ds = load_dataset(tmp / "ds")
        records = ds.split(args.split)
        paths = [r.path for r in records]
        bundle = _bundle(ds.classes, paths, tmp / "bundle")

        predictor = Predictor.from_bundle(bundle)
        source = open_source(bundle)
        y = np.array([ds.classes.index(r.label) for r in records])
        base_times, our_times = [], []
        for i in range(args.repeat):  # alternate so background load hits both alike
            t = time.perf_counter()
            proba = predictor.predict_proba(paths)
            skm.classification_report(y, proba.argmax(1), output_dict=True, zero_division=0)
            skm.confusion_matrix(y, proba.argmax(1))
            base_times.append(time.perf_counter() - t)
            out = tmp / f"eval{i}"
            config = EvaluateConfig(source=bundle, data=tmp / "ds", split=args.split, out=out)
            t = time.perf_counter()
            evaluate_source(source, config, quiet=True)
            our_times.append(time.perf_counter() - t)
        baseline, ours = float(np.median(base_times)), float(np.median(our_times))
        report_mb = (out / "report.html").stat().st_size / 1e6
        print(
            json.dumps(
                {
                    "bench": "evaluate_overhead",
                    "images": len(paths),
                    "classes": len(ds.classes),
                    "cores": len(os.sched_getaffinity(0)),
                    "repeat": args.repeat,
                    "baseline_predict_sklearn_median_s": round(baseline, 2),
                    "lensflow_evaluate_median_s": round(ours, 2),
                    "ratio": round(ours / baseline, 2),
                    "lensflow_img_per_s": round(len(paths) / ours, 1),
                    "baseline_img_per_s": round(len(paths) / baseline, 1),
                    "report_mb": round(report_mb, 2),
                    **bench_metrics(),
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
