"""Projections and the TensorBoard Embedding Projector export: files parse, rows agree."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
from PIL import Image

from lensflow.errors import EvaluateError
from lensflow.evaluate.embeddings import (
    pca_2d,
    sprite_tile_size,
    subsample,
    tsne_2d,
    tsne_perplexity,
    write_projector,
)


def _blobs(n_per: int = 8, classes: int = 3, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(classes, dim))
    y = np.repeat(np.arange(classes), n_per)
    return centers[y] + rng.normal(size=(len(y), dim)), y


def test_pca_and_tsne_separate_clear_clusters() -> None:
    x, y = _blobs()
    for xy in (pca_2d(x), tsne_2d(x, seed=0)):
        assert xy is not None and xy.shape == (len(x), 2) and np.isfinite(xy).all()
        # Every point is nearer to its own class centroid than to any other class's.
        cents = np.stack([xy[y == c].mean(0) for c in range(3)])
        nearest = np.argmin(((xy[:, None] - cents[None]) ** 2).sum(-1), axis=1)
        assert (nearest == y).all()


def test_tsne_on_tiny_splits() -> None:
    assert all(tsne_perplexity(n) < n for n in (5, 6, 10, 20, 100, 1000))
    assert tsne_2d(np.ones((4, 8))) is None  # too few points: skipped, not an error
    assert tsne_2d(np.random.default_rng(1).normal(size=(5, 8))).shape == (5, 2)


def test_subsample_is_bounded_sorted_and_seeded() -> None:
    assert subsample(10, 20).tolist() == list(range(10))
    a, b = subsample(1000, 50, seed=3), subsample(1000, 50, seed=3)
    assert len(a) == 50 and (a == b).all() and (np.diff(a) > 0).all()


def test_projector_files_parse_with_consistent_rows(tmp_path) -> None:
    x, y = _blobs(n_per=7)  # 21 rows: a 5 x 5 sprite grid with 4 empty cells
    names = ["a\tb", "line\nbreak", "plain"]  # tabs/newlines must not break rows
    meta = {"label": [names[i] for i in y], "id": [f"img{i}" for i in range(len(y))]}
    thumbs = [np.full((10, 12, 3), 40 * c, np.uint8) for c in y]
    config_path = write_projector(tmp_path, x, meta, thumbs, tile=32)

    tensors = np.loadtxt(tmp_path / "tensors.tsv", delimiter="\t")
    assert tensors.shape == x.shape
    np.testing.assert_allclose(tensors, x, rtol=1e-5)
    with (tmp_path / "metadata.tsv").open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["label", "id"]  # several columns: a header row
    assert len(rows) == len(x) + 1 and all(len(r) == 2 for r in rows)
    assert rows[1] == ["a b", "img0"]

    text = config_path.read_text()
    dims = [int(v) for v in re.findall(r"single_image_dim: (\d+)", text)]
    shape = [int(v) for v in re.findall(r"tensor_shape: (\d+)", text)]
    assert dims == [32, 32] and shape == [len(x), x.shape[1]]
    for name in ("tensors.tsv", "metadata.tsv", "sprite.png"):
        assert f'"{name}"' in text and (tmp_path / name).is_file()
    sprite = Image.open(tmp_path / "sprite.png")
    side = math.ceil(math.sqrt(len(x)))
    assert sprite.size == (side * 32, side * 32)
    # Row-major layout: thumbnail 6 (class 0) sits in row 1, column 1; 7 (class 1) beside it.
    px = np.asarray(sprite)
    assert px[32 + 16, 32 + 16].tolist() == [0, 0, 0]
    assert px[32 + 16, 64 + 16].tolist() == [40, 40, 40]


def test_single_metadata_column_has_no_header(tmp_path) -> None:
    write_projector(tmp_path, np.eye(3), {"label": ["x", "y", "z"]})
    assert (tmp_path / "metadata.tsv").read_text().splitlines() == ["x", "y", "z"]
    assert "sprite" not in (tmp_path / "projector_config.pbtxt").read_text()


def test_projector_rejects_mismatched_rows(tmp_path) -> None:
    with pytest.raises(EvaluateError, match="metadata column 'label' has 2 rows"):
        write_projector(tmp_path, np.eye(3), {"label": ["x", "y"]})


def test_sprite_fits_tensorboard_limit() -> None:
    for n in (1, 100, 10_000, 50_000):
        assert math.ceil(math.sqrt(n)) * sprite_tile_size(n) <= 8192
