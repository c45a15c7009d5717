"""Embeddings of the evaluated split: 2-D projections (PCA, t-SNE) and the TensorBoard
Embedding Projector export (tensors.tsv, metadata.tsv, sprite.png, projector_config.pbtxt).

`tensorboard --logdir DIR/projector` shows the export: the projector plugin reads
projector_config.pbtxt from the log directory and the TSV tensors it names; no TensorFlow needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lensflow.errors import EvaluateError
from lensflow.io import atomic_write_bytes, atomic_write_text

SPRITE_MAX = 8192  # TensorBoard's limit on the sprite side, in pixels
TSNE_MIN_POINTS = 5  # below this t-SNE says nothing a PCA does not


def one_thread() -> Any:
    """Limit BLAS/OpenMP to one thread for these small fits.

    Barnes-Hut t-SNE and randomized PCA run many short parallel loops; on a busy 2-core machine a
    thread per core oversubscribed them 10x (t-SNE of 341 points: 15 s vs 1.5 s; PCA: 6 s vs 0.1 s).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2) principal components (zeros padded when N or D < 2)."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, np.float64)
    k = min(2, x.shape[0], x.shape[1])
    out = np.zeros((len(x), 2))
    if k:
        with one_thread():
            out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(x)
    return out


def tsne_perplexity(n: int) -> float:
    """scikit-learn's default 30, reduced on small splits: it must stay below the point count."""
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """(N, D) -> (N, 2) t-SNE, after PCA to 50 dimensions (the usual speed-up); None if N < 5."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, np.float64)
    if len(x) < TSNE_MIN_POINTS:
        return None
    k = min(50, x.shape[0], x.shape[1])
    if k < x.shape[1]:
        with one_thread():
            x = PCA(n_components=k, random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=tsne_perplexity(len(x)),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    with one_thread():
        return tsne.fit_transform(x)


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of at most max_points rows (sorted), the same ones for the same seed."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _tsv_cell(value: object) -> str:
    # Tabs and newlines would break the row structure TensorBoard relies on.
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def sprite_image(thumbnails: Sequence[np.ndarray], size: int) -> Image.Image:
    """Square grid of size x size thumbnails in row-major order (TensorBoard's sprite layout)."""
    side = max(1, math.ceil(math.sqrt(len(thumbnails))))
    sheet = Image.new("RGB", (side * size, side * size), "white")
    for i, thumb in enumerate(thumbnails):
        img = Image.fromarray(thumb).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        sheet.paste(img, ((i % side) * size, (i // side) * size))
    return sheet


def sprite_tile_size(n: int, wanted: int = 64) -> int:
    """Thumbnail side so that the whole sprite fits in TensorBoard's 8192 x 8192 limit."""
    side = max(1, math.ceil(math.sqrt(n)))
    return max(1, min(wanted, SPRITE_MAX // side))


def write_projector(
    directory: Path,
    features: np.ndarray,
    metadata: dict[str, Sequence[object]],
    thumbnails: Sequence[np.ndarray] | None = None,
    tensor_name: str = "features",
    tile: int = 64,
) -> Path:
    """Write the Embedding Projector files into `directory`; returns the config path.

    metadata: column name -> one value per row. With several columns the TSV has a header row
    (TensorBoard's rule: a single column must not have one).
    """
    feats = np.asarray(features, np.float32)
    n = len(feats)
    if n == 0:
        raise EvaluateError("no embeddings to export")
    for name, values in metadata.items():
        if len(values) != n:
            raise EvaluateError(f"metadata column {name!r} has {len(values)} rows, features {n}")
    if thumbnails is not None and len(thumbnails) != n:
        raise EvaluateError(f"{len(thumbnails)} thumbnails for {n} embeddings")
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    np.savetxt(buf, feats, fmt="%.6g", delimiter="\t")
    atomic_write_text(directory / "tensors.tsv", buf.getvalue())
    columns = list(metadata)
    lines = ["\t".join(columns)] if len(columns) > 1 else []
    lines += ["\t".join(_tsv_cell(metadata[c][i]) for c in columns) for i in range(n)]
    atomic_write_text(directory / "metadata.tsv", "\n".join(lines) + "\n")
    config = [
        "embeddings {",
        f'  tensor_name: "{tensor_name}"',
        '  tensor_path: "tensors.tsv"',
        f"  tensor_shape: {n}",
        f"  tensor_shape: {feats.shape[1]}",
        '  metadata_path: "metadata.tsv"',
    ]
    if thumbnails is not None:
        size = sprite_tile_size(n, tile)
        png = io.BytesIO()
        sprite_image(thumbnails, size).save(png, format="PNG")
        atomic_write_bytes(directory / "sprite.png", png.getvalue())
        config += [
            "  sprite {",
            '    image_path: "sprite.png"',
            f"    single_image_dim: {size}",
            f"    single_image_dim: {size}",
            "  }",
        ]
    config.append("}")
    return atomic_write_text(directory / "projector_config.pbtxt", "\n".join(config) + "\n")
