"""The evaluation pictures as PNG files (matplotlib, Agg backend: no display needed).

Each function takes plain arrays/lists and a path, draws one figure and writes it atomically.
Label sizes and tick rotation follow the class count so 10-20 class names stay readable and do
not overlap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt
import numpy as np

from lensflow.evaluate.metrics import ReliabilityBin
from lensflow.io import atomic_write_bytes

DPI = 110
GALLERY_DPI = 80  # photo grids: enough for 128 px thumbnails, keeps report.html small


def _save(fig: Any, path: Path, dpi: int = DPI) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def label_fontsize(n_classes: int) -> float:
    """Tick label size: 10 pt for a handful of classes down to 6 pt at 30+."""
    return float(np.clip(11 - n_classes / 4, 6, 10))


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def class_colors(n: int) -> list[Any]:
    """Distinct colours: tab10 up to 10 classes, tab20 up to 20, then a continuous map."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    if n > 20:
        return [cmap(i / max(n - 1, 1)) for i in range(n)]
    return [cmap(i) for i in range(n)]


def plot_confusion(
    counts: np.ndarray, normalized: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """Row-normalised colours (recall on the diagonal), raw counts written in each cell."""
    return _save(confusion_figure(counts, normalized, classes), path)


def confusion_figure(counts: np.ndarray, normalized: np.ndarray, classes: Sequence[str]) -> Any:
    n = len(classes)
    side = float(np.clip(2.5 + 0.5 * n, 5, 16))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    size = label_fontsize(n)
    names = [_short(c) for c in classes]
    # Horizontal names only when they surely fit their column (~0.6 em per character, columns
    # about side/n inches wide); otherwise vertical, which never overlaps at one name per cell.
    fits = max(len(c) for c in names) * 0.6 * size / 72 < 0.8 * side / n
    ax.set_xticks(range(n), names, rotation=0 if fits else 90, fontsize=size)
    ax.set_yticks(range(n), names, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({int(counts.sum())} images)")
    if n <= 30:  # beyond that the numbers no longer fit in the cells
        cell = max(size - 1, 5)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    dark = normalized[i, j] > 0.55
                    ax.text(
                        j,
                        i,
                        str(int(counts[i, j])),
                        ha="center",
                        va="center",
                        fontsize=cell,
                        color="white" if dark else "black",
                    )
    return fig


def plot_curves(
    rows: list[dict[str, float]], path: Path, x_key: str = "epoch", chosen: float | None = None
) -> Path:
    """Loss and accuracy per epoch from a run's metrics.csv (train and validation); with
    x_key="C", quick mode's sweep over the head's regularisation (log axis, cross-validation
    accuracy too when it chose C, the chosen C marked)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [r[x_key] for r in rows]
    series = (("train", "-o"), ("val", "-s"), ("cv", "-^"))
    names = {"val": "validation", "cv": "cross-validation (train)"}
    for ax, key, title in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        for prefix, style in series:
            values = [r.get(f"{prefix}_{key}", math.nan) for r in rows]
            if not all(math.isnan(v) for v in values):
                ax.plot(xs, values, style, markersize=3, label=names.get(prefix, prefix))
        if chosen is not None:
            ax.axvline(chosen, color="grey", linestyle=":", label=f"chosen C = {chosen:g}")
        if x_key == "C":
            ax.set_xscale("log")
        ax.set_title(title if x_key == "epoch" else f"{title} over C (one pass, no epochs)")
        ax.set_xlabel(x_key if x_key == "epoch" else "C (inverse L2 strength of the head)")
        ax.grid(alpha=0.3)
        ax.legend()
    if x_key == "epoch":
        ax_acc.set_ylim(0, 1.02)
    return _save(fig, path)


def plot_reliability(bins: list[ReliabilityBin], ece: float, path: Path) -> Path:
    """Accuracy per confidence bin against the diagonal (perfect calibration), counts below."""
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = bins[0].upper - bins[0].lower
    centers = [(b.lower + b.upper) / 2 for b in bins]
    filled = [b for b in bins if b.count]
    ax.bar(
        [(b.lower + b.upper) / 2 for b in filled],
        [b.accuracy for b in filled],
        width=width * 0.95,
        color="tab:blue",
        edgecolor="white",
        label="accuracy",
    )
    ax.bar(
        [(b.lower + b.upper) / 2 for b in filled],
        [b.confidence - b.accuracy for b in filled],
        bottom=[b.accuracy for b in filled],
        width=width * 0.95,
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE = {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(centers, [b.count for b in bins], width=width * 0.95, color="gray")
    ax_n.set_xlabel("confidence (top-1 probability)")
    ax_n.set_ylabel("images")
    return _save(fig, path)


def photo_thumbnail(path: Path, size: int = 128) -> np.ndarray:
    """The whole photo (not the model's crop), shrunk to fit size x size, as RGB uint8."""
    from lensflow.preprocess import to_pil

    img = to_pil(path).convert("RGB")
    img.thumbnail((size, size))
    return np.asarray(img)


@dataclass(frozen=True)
class Tile:
    """One picture of a gallery: an RGB uint8 thumbnail and up to three short caption lines."""

    image: np.ndarray
    caption: str
    good: bool | None = None  # frame colour: green right, red wrong, none unknown


def plot_gallery(tiles: Sequence[Tile], path: Path, title: str, cols: int = 6) -> Path:
    """A grid of thumbnails with captions (top losses, per-class samples)."""
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.35 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles, strict=False):
        ax.imshow(tile.image, cmap="gray" if tile.image.ndim == 2 else None)
        ax.set_title(tile.caption, fontsize=10, pad=3)
        if tile.good is not None:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor("tab:green" if tile.good else "tab:red")
                spine.set_linewidth(3)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
    if not tiles:
        axes.flat[0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=GALLERY_DPI)


def plot_embedding(
    xy: np.ndarray, labels: np.ndarray, classes: Sequence[str], path: Path, title: str
) -> Path:
    """2-D scatter coloured by true class, legend outside the axes so it never hides points."""
    fig, ax = plt.subplots(figsize=(8, 6))
    colors = class_colors(len(classes))
    size = float(np.clip(3000 / max(len(xy), 1), 4, 40))
    for i, name in enumerate(classes):
        mask = labels == i
        if mask.any():
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=size,
                color=colors[i],
                label=_short(name, 24),
                alpha=0.8,
                edgecolors="none",
            )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=label_fontsize(len(classes)),
        markerscale=max(1.0, 30 / size) ** 0.5,
        frameon=False,
    )
    return _save(fig, path)


def plot_ood_histogram(
    in_scores: np.ndarray, ood_scores: np.ndarray, threshold: float, path: Path
) -> Path:
    """Open-set scores of in-distribution and --ood images, and the operating point."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    both = np.r_[in_scores, ood_scores]
    bins = np.linspace(float(both.min()), float(both.max()) + 1e-9, 41)
    ax.hist(in_scores, bins, alpha=0.6, density=True, label=f"in-distribution ({len(in_scores)})")
    ax.hist(ood_scores, bins, alpha=0.6, density=True, label=f"--ood images ({len(ood_scores)})")
    ax.axvline(threshold, color="k", linestyle="--", label="operating point")
    ax.set_xlabel("open-set score (higher = more unusual)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, path)
