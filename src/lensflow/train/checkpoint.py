"""Run directory: checkpoints, metrics.csv, curves.png, labels, card; and `load_run`.

A run is built in `.RUN.partial/` beside RUN and renamed into place when training ends, so an
interrupted run never looks finished. The partial directory keeps `last.pt`, which is what
`--resume` continues from (or from a finished RUN, to train further).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lensflow.config import config_to_dict
from lensflow.errors import TrainError
from lensflow.io import atomic_write_bytes, atomic_write_text, read_card
from lensflow.preprocess import Preprocess

RUN_KIND = "lensflow-run"
METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_s",
]


def partial_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def checkpoint_dict(
    model: nn.Module,
    classes: list[str],
    preprocess: Preprocess,
    epoch: int,
    config: Any,
    **extra: Any,
) -> dict[str, Any]:
    m = unwrap(model)
    return {
        "model": m.model_name,
        "model_kwargs": dict(m.model_kwargs),
        "num_classes": len(classes),
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "classes": list(classes),
        "preprocess": preprocess.to_dict(),
        "epoch": epoch,
        "config": config_to_dict(config),
        **extra,
    }


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        # Our checkpoints hold tensors, numbers, strings, lists and dicts only.
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"checkpoint not found: {path}") from None
    except Exception as e:
        raise TrainError(f"cannot read checkpoint {path}: {e}") from e


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    from lensflow.models import create_model

    model = create_model(
        ckpt["model"], ckpt["num_classes"], pretrained=False, **ckpt.get("model_kwargs", {})
    )
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def write_labels(path: Path, classes: list[str]) -> None:
    atomic_write_text(path, "".join(f"{c}\n" for c in classes))


def plot_curves(path: Path, rows: list[dict[str, Any]], x_key: str = "epoch") -> None:
    """Train vs validation accuracy and loss, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[x_key] for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_acc, "acc", "accuracy"), (ax_loss, "loss", "loss")):
        ax.plot(xs, [r[f"train_{key}"] for r in rows], "o-", label="train")
        ax.plot(xs, [r[f"val_{key}"] for r in rows], "o-", label="validation")
        ax.set_xlabel(x_key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        if x_key == "C":
            ax.set_xscale("log")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish_run(stage: Path, out: Path) -> None:
    """Move the completed staging directory to `out` (replacing an older run there)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)


@dataclass
class LoadedRun:
    model: nn.Module  # eval mode, CPU
    classes: list[str]
    preprocess: Preprocess
    card: dict[str, Any]
    config: dict[str, Any]
    path: Path


def load_run(path: str | os.PathLike[str], which: str = "best") -> LoadedRun:
    """The trained model of a run directory (best.pt by default), ready for inference."""
    path = Path(path)
    try:
        card = read_card(path, RUN_KIND)
    except TrainError:
        raise
    except Exception as e:
        raise TrainError(str(e.message if hasattr(e, "message") else e)) from None
    if which not in ("best", "last"):
        raise TrainError(f"which must be 'best' or 'last', got {which!r}")
    ckpt = read_checkpoint(path / f"{which}.pt")
    model = model_from_checkpoint(ckpt).eval()
    return LoadedRun(
        model=model,
        classes=list(ckpt["classes"]),
        preprocess=Preprocess.from_dict(ckpt["preprocess"]),
        card=card,
        config=dict(ckpt.get("config", {})),
        path=path,
    )
