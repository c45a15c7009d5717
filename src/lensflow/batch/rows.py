"""Images -> output rows, with the bundle's exact preprocessing; one bad file never fails a batch.

A row is `{"path", "label", "probability", "index", "top_k", "error"}` plus every further field
of `Prediction.to_dict()` (open-set fields such as `unknown` and `ood_score` when the bundle has
them). `top_k` is a JSON list of `{"label", "probability"}`, so CSV and Parquet hold the same
text; `error` is "" for a prediction and the reason for an unreadable file (other fields empty).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lensflow.errors import LensflowError
from lensflow.predictor import Predictor

BASE_COLUMNS = ("path", "label", "probability", "index", "top_k", "error")


def predict_rows(predictor: Predictor, paths: list[str], top_k: int) -> list[dict[str, Any]]:
    """One row per path, in order: a prediction, or an error for a file that cannot be read."""
    pixels: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    good: list[int] = []
    for path in paths:
        try:
            pixels.append(predictor.preprocess.to_uint8(path))
        except LensflowError as e:
            rows.append(error_row(path, e.message))
            continue
        except OSError as e:  # e.g. a permission error while reading
            rows.append(error_row(path, f"cannot read {path}: {e}"))
            continue
        good.append(len(rows))
        rows.append({"path": path})
    if pixels:
        # The same two steps as Preprocess.batch (to_uint8, then normalize), one file at a time.
        proba = predictor.predict_arrays(predictor.preprocess.normalize(np.stack(pixels)))
        for i, pred in zip(good, predictor.decode(proba, top_k), strict=True):
            rows[i] = prediction_row(rows[i]["path"], pred.to_dict())
    return rows


def prediction_row(path: str, pred: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": path}
    for key, value in pred.items():
        # Lists and dicts (top_k, or any future structured field) become JSON text.
        row[key] = json.dumps(value) if isinstance(value, list | dict) else value
    row["error"] = ""
    return row


def error_row(path: str, message: str) -> dict[str, Any]:
    return {
        "path": path,
        "label": None,
        "probability": None,
        "index": None,
        "top_k": None,
        "error": message,
    }
