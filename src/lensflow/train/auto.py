"""Auto mode: try the candidates that fit the time budget, keep the best by validation accuracy.

Photos (median side >= 64 px): quick EfficientNet-Lite0 first (a strong result within a
minute), then fine-tuning with what is left of the budget. Small images (MNIST-like): the
from-scratch small models, each with an equal share of the budget. Every trial is a complete run
under RUN/trials/; the winner's files are copied to RUN/ and the card lists what was tried.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.data import load_dataset
from lensflow.io import write_card
from lensflow.progress import console
from lensflow.train.checkpoint import RUN_KIND
from lensflow.train.config import TrainConfig
from lensflow.train.context import make_context
from lensflow.train.modes import run_mode

RUN_FILES = ("best.pt", "last.pt", "config.yaml", "labels.txt", "metrics.csv", "curves.png")


def candidates(config: TrainConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(mode, model, config overrides) in the order they are tried."""
    records = load_dataset(config.dataset).records
    side = float(np.median([min(r.width, r.height) for r in records])) if records else 224.0
    if side >= 64:
        # "" = finetune's default: the Lite0 + Lite2 ensemble when the budget allows it.
        return [("quick", "efficientnet_lite0", {}), ("finetune", "", {})]
    size = 28 if side <= 28 else 32
    shape = {"image_shape": f"1,{size},{size}"}
    return [
        ("scratch", "cnn3", shape),
        ("scratch", "resnet20", {"image_shape": f"3,{size},{size}"}),
        ("scratch", "cnn4", shape),
    ]


def run_auto(config: TrainConfig, stage: Path, resume: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    plan = candidates(config)
    trials_dir = stage / "trials"
    tried: list[dict[str, Any]] = []
    best: tuple[float, Path, dict[str, Any]] | None = None
    for i, (mode, model, overrides) in enumerate(plan):
        left = config.time_budget - (time.monotonic() - started)
        if left <= 5 and tried:
            break
        share = left if mode == "finetune" else left / (len(plan) - i)
        trial_cfg = replace(
            config, mode=mode, model=model, time_budget=max(share, 1.0), devices=1, **overrides
        )
        trial_stage = trials_dir / f"{i + 1}-{mode}-{model or 'default'}"
        trial_stage.mkdir(parents=True, exist_ok=True)
        if not config.quiet:
            console.print(
                f"[bold]auto[/]: trial {i + 1}/{len(plan)}: {mode} {model or 'default model'} "
                f"({share:.0f} s)"
            )
        card = run_mode(make_context(trial_cfg, mode, trial_stage))
        acc = float(card["best"]["val_accuracy"])
        tried.append({"mode": mode, "model": card["model"], "val_accuracy": acc,
                      "seconds": card["seconds"], "dir": str(trial_stage.relative_to(stage))})  # fmt: skip
        if best is None or acc > best[0]:
            best = (acc, trial_stage, card)
    assert best is not None
    _, winner, card = best
    for name in RUN_FILES:
        shutil.copy2(winner / name, stage / name)
    fields = {k: v for k, v in card.items() if k not in ("kind", "lensflow_version", "created")}
    fields.update(
        mode="auto",
        seconds=round(time.monotonic() - started, 1),
        auto={"tried": tried, "chosen": f"{card['mode']} {card['model']}"},
    )
    write_card(stage, RUN_KIND, **fields)
    return {"kind": RUN_KIND, **fields}
