"""What gets evaluated: a training run (torch) or an exported bundle (onnxruntime).

Both decode and preprocess images with the same `Preprocess` (PIL path), so a run and the bundle
exported from it give the same probabilities within float tolerance. `infer` also keeps a small
thumbnail of every image it decoded, for the projector sprite, so nothing is decoded twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lensflow.bundle import ARCHIVE_SUFFIXES
from lensflow.bundle import KIND as BUNDLE_KIND
from lensflow.errors import EvaluateError, LensflowError
from lensflow.preprocess import Preprocess
from lensflow.progress import make_progress

RUN_KIND = "lensflow-run"

# (float32 NCHW batch) -> (probabilities (N, C), features (N, D))
Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Inference:
    proba: np.ndarray  # (N, C) float32, in the model's class order
    features: np.ndarray  # (N, D) float32 pooled backbone features
    thumbnails: dict[int, np.ndarray]  # row -> (t, t, 3) uint8, the model's view of the image


@dataclass
class ModelSource:
    kind: str  # "run" | "bundle"
    path: Path
    classes: list[str]
    preprocess: Preprocess
    card: dict[str, Any]
    forward: Forward = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)  # the training config, when known

    @property
    def run_dir(self) -> Path | None:
        """The training run behind this source (itself, or the run a bundle was exported from)."""
        if self.kind == "run":
            return self.path
        recorded = (self.card.get("run") or {}).get("path")
        return Path(recorded) if recorded and Path(recorded, "card.json").is_file() else None

    def dataset_path(self) -> Path | None:
        """The dataset the model was trained on, if it is still where the card says."""
        candidates: list[Any] = [(self.card.get("dataset") or {}).get("path")]
        run = self.run_dir
        if run is not None and run != self.path:
            run_card = json.loads((run / "card.json").read_text())
            candidates.append((run_card.get("dataset") or {}).get("path"))
        candidates.append(self.card.get("parity_dataset"))
        for c in candidates:
            if c and Path(c, "card.json").is_file():
                return Path(c)
        return None

    def dataset_hash(self) -> str | None:
        return (self.card.get("dataset") or {}).get("hash") or self.card.get("dataset_hash")

    def infer(
        self,
        images: Sequence[str | os.PathLike[str]],
        batch_size: int = 32,
        thumb: int = 64,
        quiet: bool = False,
        thumb_rows: set[int] | None = None,
    ) -> Inference:
        """Probabilities, features and thumbnails (of `thumb_rows`, default all) for image files,
        with a progress bar."""
        probas, feats = [], []
        thumbs: dict[int, np.ndarray] = {}
        t0 = time.perf_counter()
        with make_progress(quiet) as progress:
            task = progress.add_task(f"evaluating {self.path.name}", total=len(images), rate="")
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                pixels = np.stack([self.preprocess.to_uint8(p) for p in chunk])
                p, f = self.forward(self.preprocess.normalize(pixels))
                probas.append(p)
                feats.append(f)
                for i, px in enumerate(pixels, start):
                    if thumb_rows is None or i in thumb_rows:
                        thumbs[i] = _thumbnail(px, thumb)
                done = start + len(chunk)
                speed = done / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=len(chunk), rate=f"{speed:,.1f} img/s")
        if not probas:
            raise EvaluateError("no images to evaluate")
        return Inference(
            np.concatenate(probas).astype(np.float32),
            np.concatenate(feats).astype(np.float32),
            thumbs,
        )


def _thumbnail(pixels: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).convert("RGB")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def source_kind(path: Path) -> str:
    """ "run" or "bundle" from card.json, with errors that say what the directory should be."""
    if not path.exists():
        raise EvaluateError(
            f"{path} does not exist: give a training run (lensflow train ... --out RUN) or a "
            "bundle (lensflow export RUN --out BUNDLE)"
        )
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        return "bundle"
    card_path = path / "card.json"
    if not card_path.is_file():
        raise EvaluateError(f"{path} is neither a training run nor a bundle: it has no card.json")
    try:
        kind = json.loads(card_path.read_text()).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise EvaluateError(f"{card_path} is unreadable: {e}") from e
    if kind == RUN_KIND:
        return "run"
    if kind == BUNDLE_KIND:
        return "bundle"
    raise EvaluateError(f"{path} is a {kind!r}; evaluate needs a {RUN_KIND!r} or a {BUNDLE_KIND!r}")


def open_source(path: str | os.PathLike[str], threads: int | None = None) -> ModelSource:
    """Open a run or a bundle for evaluation."""
    path = Path(path)
    kind = source_kind(path)
    try:
        return _open_run(path) if kind == "run" else _open_bundle(path, threads)
    except EvaluateError:
        raise
    except LensflowError as e:
        raise EvaluateError(f"cannot open {path}: {e.message}") from e


def _open_bundle(path: Path, threads: int | None) -> ModelSource:
    from lensflow.predictor import Predictor, softmax

    predictor = Predictor.from_bundle(path, threads=threads)

    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = predictor.run_arrays(x)
        return softmax(logits), features

    return ModelSource(
        kind="bundle",
        path=predictor.path,
        classes=list(predictor.classes),
        preprocess=predictor.preprocess,
        card=dict(predictor.card),
        forward=forward,
        config=dict(predictor.card.get("train_config") or {}),
    )


def _open_run(path: Path) -> ModelSource:
    import torch

    from lensflow.train import load_run

    loaded = load_run(path)
    model = loaded.model.eval()
    # channels_last about halves eager CPU time of the depthwise-convolution photo models.
    layout = torch.channels_last if loaded.preprocess.input_size >= 64 else torch.contiguous_format
    model = model.to(memory_format=layout)

    @torch.inference_mode()
    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = model.forward_features(torch.from_numpy(x).contiguous(memory_format=layout))
        proba = torch.softmax(model.forward_head(features).float(), dim=1)
        return proba.numpy(), features.float().numpy()

    config = loaded.config
    if not isinstance(config, dict):
        from lensflow.config import config_to_dict

        config = config_to_dict(config)
    return ModelSource(
        kind="run",
        path=path.resolve(),
        classes=list(loaded.classes),
        preprocess=loaded.preprocess,
        card=dict(loaded.card),
        forward=forward,
        config=config,
    )
