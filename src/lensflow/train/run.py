"""`train(config)`: resolve the model, load the data, run one mode, write the run directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lensflow.errors import ConfigError, TrainError
from lensflow.progress import console
from lensflow.train.checkpoint import finish_run, partial_dir
from lensflow.train.config import TrainConfig
from lensflow.train.context import make_context
from lensflow.train.modes import run_mode


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train as configured and write config.out; returns the run card.

    Under torchrun (WORLD_SIZE > 1 in the environment) every process calls this; rank 0 builds
    the caches and writes the run, the others train their shard and write nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _train_torchrun(config, resume)
    out = Path(config.out)
    stage = partial_dir(out)
    if out.exists() and not (resume or overwrite):
        raise TrainError(
            f"{out} already exists; choose another --out, or pass --overwrite/--resume"
        )
    mode = config.mode
    if resume:
        stage = _prepare_resume(out, stage)
    elif stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    succeeded = False
    try:
        if mode == "auto":
            from lensflow.train.auto import run_auto

            card = run_auto(config, stage, resume)
        else:
            ctx = make_context(config, mode, stage)
            card = run_mode(ctx, resume)
        succeeded = True
    finally:
        if not succeeded and not (stage / "last.pt").is_file():
            shutil.rmtree(stage, ignore_errors=True)
        elif not succeeded and not config.quiet:
            console.print(
                f"[red]interrupted[/]: continue with the same command plus --resume ({stage})"
            )
    finish_run(stage, out)
    return card


def _train_torchrun(config: TrainConfig, resume: bool) -> dict[str, Any]:
    import tempfile

    import torch.distributed as dist

    from lensflow.train.tasks import make_task

    if config.mode not in ("finetune", "scratch"):
        raise ConfigError(f"torchrun runs finetune or scratch mode, not {config.mode!r}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_rank() != 0:
        dist.barrier()  # wait for rank 0 to build the pack and the caches
        with tempfile.TemporaryDirectory() as scratch:
            ctx = make_context(config, config.mode, Path(scratch))
            from lensflow.train.loop import run_training

            run_training(ctx, resume)
        return {}
    out = Path(config.out)
    stage = _prepare_resume(out, partial_dir(out)) if resume else partial_dir(out)
    stage.mkdir(parents=True, exist_ok=True)
    ctx = make_context(config, config.mode, stage)
    make_task(ctx, torch.device("cpu"))
    dist.barrier()
    card = run_mode(ctx, resume)
    finish_run(stage, out)
    return card


def _prepare_resume(out: Path, stage: Path) -> Path:
    if (stage / "last.pt").is_file():
        return stage
    if (out / "last.pt").is_file():
        if stage.exists():
            shutil.rmtree(stage)
        shutil.copytree(out, stage)
        return stage
    raise TrainError(f"nothing to resume: neither {out}/last.pt nor {stage}/last.pt exists")
