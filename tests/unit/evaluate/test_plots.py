"""The pictures: valid PNGs, and tick labels that do not overlap at 10-20 classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lensflow.evaluate import plots
from lensflow.evaluate.metrics import compute_metrics


def _fake(n_classes: int, n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 2.5 * np.eye(n_classes)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def _png_ok(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("L"), np.float32)
        assert arr.std() > 5  # something was drawn
        return im.size


def _overlaps(boxes) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize(
    ("n_classes", "name"),
    [(3, "hat"), (5, "long class name"), (10, "shirt"), (20, "long class name")],
)
def test_confusion_tick_labels_do_not_overlap(n_classes: int, name: str) -> None:
    classes = [f"{name} {i:02d}" for i in range(n_classes)]
    y, p = _fake(n_classes)
    m = compute_metrics(y, p, classes)
    fig = plots.confusion_figure(m.confusion_matrix, m.confusion_matrix_normalized, classes)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert len(boxes) == n_classes and not _overlaps(boxes)
    plots.plt.close(fig)


def test_all_pictures_are_pngs(tmp_path) -> None:
    classes = [f"c{i}" for i in range(12)]
    y, p = _fake(12)
    m = compute_metrics(y, p, classes)
    _png_ok(
        plots.plot_confusion(
            m.confusion_matrix, m.confusion_matrix_normalized, classes, tmp_path / "cm.png"
        )
    )
    _png_ok(plots.plot_reliability(m.reliability, m.ece, tmp_path / "rel.png"))
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "train_acc": 1 - 0.5 / e,
            "val_acc": 1 - 0.6 / e,
        }
        for e in range(1, 6)
    ]
    _png_ok(plots.plot_curves(rows, tmp_path / "curves.png"))
    xy = np.random.default_rng(0).normal(size=(len(y), 2))
    _png_ok(plots.plot_embedding(xy, y, classes, tmp_path / "emb.png", "t"))
    tiles = [
        plots.Tile(np.full((20, 30, 3), 30 * i, np.uint8), f"tile {i}", i % 2 == 0)
        for i in range(7)
    ]
    w, h = _png_ok(plots.plot_gallery(tiles, tmp_path / "gallery.png", "gallery", cols=4))
    assert w > h  # 4 columns by 2 rows
    _png_ok(plots.plot_gallery([], tmp_path / "empty.png", "nothing"))


def test_label_font_shrinks_with_class_count() -> None:
    sizes = [plots.label_fontsize(n) for n in (3, 10, 20, 40)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] >= 6


def test_quick_runs_show_their_c_sweep_instead_of_one_epoch(tmp_path) -> None:
    import json

    from lensflow.evaluate.evaluator import quick_sweep

    sweep = [{"C": c, "train_acc": a + 0.1, "val_acc": a, "cv_acc": a - 0.01,
              "train_loss": 1 - a, "val_loss": 1.1 - a} for c, a in ((0.1, 0.6), (1.0, 0.8), (10.0, 0.75))]  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text(
        json.dumps({"mode": "quick", "quick": {"C": 1.0, "sweep": sweep}})
    )
    rows, chosen = quick_sweep(run)
    assert rows == sweep and chosen == 1.0
    _png_ok(plots.plot_curves(rows, tmp_path / "sweep.png", x_key="C", chosen=chosen))
    (run / "card.json").write_text(
        json.dumps({"mode": "quick", "quick": {"C": 1.0, "sweep": sweep[:1]}})
    )
    assert quick_sweep(run) == ([], None)  # a single C is no curve: the epoch panel is used
    (run / "card.json").write_text(json.dumps({"mode": "scratch"}))
    assert quick_sweep(run) == ([], None) and quick_sweep(None) == ([], None)
