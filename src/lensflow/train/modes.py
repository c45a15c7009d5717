"""Run one non-auto mode on a context and write the run files (auto runs this per trial)."""

from __future__ import annotations

from typing import Any

import torch

from lensflow.config import config_to_dict, save_config
from lensflow.io import write_card
from lensflow.train.checkpoint import RUN_KIND, plot_curves, write_labels, write_metrics
from lensflow.train.context import RunContext


def run_mode(ctx: RunContext, resume: bool = False) -> dict[str, Any]:
    mode = ctx.config.mode
    frozen = getattr(ctx.model, "frozen_features_on_cpu", False) and not torch.cuda.is_available()
    if mode == "quick" or (mode == "finetune" and frozen):
        from lensflow.train.quick import run_quick

        # finetune picks C by cross-validation on train: its validation accuracy is unbiased.
        result = run_quick(ctx, select="val" if mode == "quick" else "cv")
    else:
        from lensflow.train.loop import run_training

        result = run_training(ctx, resume)
    return write_run(ctx, result)


def write_run(ctx: RunContext, result: dict[str, Any]) -> dict[str, Any]:
    """Everything but the checkpoints (written by the modes): config, labels, metrics, card."""
    config, data, stage = ctx.config, ctx.data, ctx.stage
    rows = result["metrics"]
    save_config(config, stage / "config.yaml")
    write_labels(stage / "labels.txt", data.classes)
    write_metrics(stage / "metrics.csv", rows)
    plot_curves(
        stage / "curves.png", result.get("curve_rows", rows), result.get("curve_x", "epoch")
    )
    model = ctx.model
    best = result["best"]
    fields = {
        "model": model.model_name,
        "model_kwargs": dict(model.model_kwargs),
        "classes": data.classes,
        "mode": config.mode,
        "preprocess": data.preprocess.to_dict(),
        "dataset": {"path": str(data.dataset.path), "hash": data.dataset.hash},
        "best": best,
        "train_images": len(data.train_idx),
        "val_images": len(data.val_idx),
        "validation": data.val_source,
        "seconds": round(ctx.elapsed(), 1),
        "warnings": ctx.notes,
        "choices": ctx.choices,
        "config": config_to_dict(config),
        **result.get("card", {}),
    }
    write_card(stage, RUN_KIND, **fields)
    return {"kind": RUN_KIND, **fields}
