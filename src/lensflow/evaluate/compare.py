"""`lensflow evaluate RUN_A --compare RUN_B`: two models on the same images, and whether their
accuracies really differ (exact McNemar test on the images where exactly one of them is right)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lensflow.data import Record
from lensflow.evaluate.evaluator import EvaluateConfig, EvaluationResult, check_classes
from lensflow.evaluate.intervals import interval_text, mcnemar_exact, wilson
from lensflow.evaluate.sources import open_source

MAX_LISTED = 50  # disagreeing images listed in the output (all are counted)


def compare(
    result_a: EvaluationResult, source_b: Any, config: EvaluateConfig, quiet: bool = False
) -> dict[str, Any]:
    """Run B on A's images (A's dataset and split) and compare the two, image by image."""
    from lensflow.data import load_dataset

    summary = result_a.summary
    dataset = load_dataset(summary["dataset"]["path"])
    b = open_source(source_b, threads=config.threads)
    check_classes(b.classes, dataset)
    records = dataset.split(summary["split"])
    classes_a = summary["classes"]
    y = np.array([classes_a.index(r.label) for r in records])
    pred_a = _predictions_of_a(result_a, records, classes_a)
    proba_b = b.infer([r.path for r in records], config.batch_size, 8, quiet, set()).proba
    # B's columns in A's class order: labels are matched by name, never by index.
    pred_b = np.array([classes_a.index(b.classes[i]) for i in proba_b.argmax(1)])
    right_a, right_b = pred_a == y, pred_b == y
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    differ = np.flatnonzero(pred_a != pred_b)
    return {
        "n": len(y),
        "split": summary["split"],
        "a": _side(summary["source"]["path"], right_a),
        "b": _side(str(b.path), right_b),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "disagreements": len(differ),
        "mcnemar_exact_p": mcnemar_exact(only_a, only_b),
        "images": [
            {
                "id": records[i].id,
                "path": str(records[i].path),
                "true": classes_a[y[i]],
                "a": classes_a[pred_a[i]],
                "b": classes_a[pred_b[i]],
            }
            for i in differ[:MAX_LISTED]
        ],
    }


def _side(path: str, right: np.ndarray) -> dict[str, Any]:
    k, n = int(right.sum()), len(right)
    return {"path": path, "accuracy": k / n, "accuracy_ci95": wilson(k, n)}


def _predictions_of_a(
    result: EvaluationResult, records: list[Record], classes: list[str]
) -> np.ndarray:
    """A's predicted class per record, from the predictions.csv its evaluation wrote."""
    import csv

    with (result.out / "predictions.csv").open(newline="") as f:
        by_id = {row["id"]: classes.index(row["predicted"]) for row in csv.DictReader(f)}
    return np.array([by_id[r.id] for r in records])


def comparison_lines(c: dict[str, Any]) -> list[str]:
    """The plain-text report: both accuracies, the verdict, the disagreeing images."""
    a, b = c["a"], c["b"]
    p = c["mcnemar_exact_p"]
    verdict = "a real difference" if p < 0.05 else "not a significant difference"
    lines = [
        f"A {a['path']}: accuracy {100 * a['accuracy']:.1f}% ({interval_text(a['accuracy_ci95'])})",
        f"B {b['path']}: accuracy {100 * b['accuracy']:.1f}% ({interval_text(b['accuracy_ci95'])})",
        f"{c['n']} images of {c['split']}: {c['disagreements']} predicted differently; only A "
        f"right on {c['only_a_right']}, only B right on {c['only_b_right']}; McNemar exact "
        f"p = {p:.3g} ({verdict} at 5%)",
    ]
    lines += [f"  {i['id']}: true {i['true']}, A {i['a']}, B {i['b']}" for i in c["images"]]
    if c["disagreements"] > len(c["images"]):
        lines.append(f"  ... and {c['disagreements'] - len(c['images'])} more (see compare.json)")
    return lines
