"""The epoch loop shared by finetune and scratch: optimizer, schedule, budget, checkpoints, DDP.

Determinism: the shuffle of epoch e and the augmentation of step s come from generators seeded by
(seed, e, s), so a run resumed from last.pt continues exactly as if it had not stopped.
Scale-out: with `devices > 1` (or under torchrun) each of the W processes takes every W-th
sample of each global batch and DDP averages the gradients: the same global batch as 1 process.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lensflow.errors import TrainError
from lensflow.progress import make_progress
from lensflow.train.checkpoint import checkpoint_dict, read_checkpoint, save_checkpoint
from lensflow.train.config import TrainConfig
from lensflow.train.context import RunContext, class_weights, make_context
from lensflow.train.features import auto_threads
from lensflow.train.policy import mirror_choice
from lensflow.train.tasks import _generator, autocast, make_task

# Default peak LR of the head when learning_rate is 0, by (optimizer family, pretrained).
DEFAULT_LR = {("adam", True): 3e-4, ("adam", False): 2e-3, ("sgd", True): 0.05, ("sgd", False): 0.1}


def default_lr(config: TrainConfig) -> float:
    if config.learning_rate > 0:
        return config.learning_rate
    family = "sgd" if config.optimizer in ("sgd", "nag") else "adam"
    return DEFAULT_LR[(family, config.mode == "finetune")]


def make_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    wd, mom = config.weight_decay, config.momentum
    if config.optimizer in ("sgd", "nag"):
        return torch.optim.SGD(
            groups, momentum=mom, weight_decay=wd, nesterov=config.optimizer == "nag"
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, betas=(mom, 0.999), weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, betas=(mom, 0.999), weight_decay=wd)
    return torch.optim.RMSprop(groups, momentum=mom, weight_decay=wd)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of every group's base LR at `step` (linear warm-up, then the schedule)."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_scheduler == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
    if config.lr_scheduler == "step":
        epoch = step // max(1, steps_per_epoch) + 1
        return config.lr_scheduler_factor ** sum(epoch > m for m in config.milestones())
    return 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_training(ctx: RunContext, resume: bool = False) -> dict[str, Any]:
    """Train per ctx.config; on `devices > 1` spawn DDP workers (gloo on CPU)."""
    world = ctx.config.devices
    if world > 1 and not dist.is_initialized():
        # Build every cache once here, so the workers only read them.
        make_task(ctx, _device(0))
        return _spawn(ctx, resume, world)
    return _train_loop(ctx, resume)


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def _spawn(ctx: RunContext, resume: bool, world: int) -> dict[str, Any]:
    import torch.multiprocessing as mp

    port = _free_port()
    mp.spawn(_worker, args=(world, port, ctx.config, ctx.stage, resume), nprocs=world, join=True)
    result_path = ctx.stage / "_result.json"
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return result


def _worker(
    rank: int, world: int, port: int, config: TrainConfig, stage: Any, resume: bool
) -> None:
    from lensflow.io import atomic_write_json

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        ctx = make_context(config, config.mode, stage)
        result = _train_loop(ctx, resume)
        if rank == 0:
            atomic_write_json(stage / "_result.json", result)
    finally:
        dist.destroy_process_group()


def _train_loop(ctx: RunContext, resume: bool) -> dict[str, Any]:
    config, data = ctx.config, ctx.data
    distributed = dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = _device(rank)
    if not distributed:
        torch.set_num_threads(auto_threads())
    torch.manual_seed(config.seed)
    task = make_task(ctx, device)
    module: nn.Module = task.module
    lr = default_lr(config)
    optimizer = make_optimizer(config, task.param_groups(lr, config.backbone_lr_factor))
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    if distributed:
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    cw = class_weights(data) if config.class_weights == "auto" else None
    weight = torch.tensor(cw, dtype=torch.float32, device=device) if cw is not None else None
    batch = config.mini_batch_size
    if batch % world:
        raise TrainError(f"mini_batch_size ({batch}) must be divisible by --devices ({world})")
    steps_per_epoch = max(1, math.ceil(task.n_train / batch))
    state = {"epoch": 0, "step": 0, "best_acc": -1.0, "best_epoch": 0, "since_best": 0,
             "planned_epochs": config.epochs, "rows": [], "train_seconds": 0.0}  # fmt: skip
    if resume and (ctx.stage / "last.pt").is_file():
        ckpt = read_checkpoint(ctx.stage / "last.pt")
        _check_resumable(ckpt, ctx)
        ctx.model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["loop"])
        if state["epoch"] >= state["planned_epochs"]:
            state["planned_epochs"] = config.epochs  # resuming a finished run: train further
    if state["epoch"] == 0 and getattr(task, "probe_val_acc", None) is not None:
        # Epoch 0 is the linear-probe head on frozen features: fine-tuning must beat it.
        loss, acc, top_k = _val_scores(task, config)
        state.update(best_acc=acc, best_loss=loss, lowest_loss=loss, best_epoch=0, best_top_k=top_k)
        if rank == 0:
            save_checkpoint(
                ctx.stage / "best.pt",
                checkpoint_dict(ctx.model, data.classes, data.preprocess, 0, config),
            )
    setup_seconds = ctx.elapsed()
    budget_left = config.time_budget - setup_seconds - state["train_seconds"]
    deadline = time.monotonic() + budget_left
    rows: list[dict[str, Any]] = state["rows"]
    stop_reason = "epochs"
    with make_progress(config.quiet or rank != 0) as progress:
        while state["epoch"] < min(config.epochs, state["planned_epochs"]):
            epoch = state["epoch"] + 1
            t0 = time.monotonic()
            train_loss, train_acc, seen = _one_epoch(
                task, module, optimizer, config, state, epoch, steps_per_epoch, weight, rank,
                world, device, progress, None if distributed else deadline,
            )  # fmt: skip
            cut_short = state.pop("cut_short", None)
            if cut_short and rank == 0:
                ctx.warn(f"the time budget ran out: {cut_short}")
            val_loss, val_acc, top_k = _val_scores(task, config)
            seconds = time.monotonic() - t0
            state["train_seconds"] += seconds
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                   "val_loss": val_loss, "val_acc": val_acc,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                   "images_per_s": round(seen * world / max(seconds, 1e-9), 1),
                   f"val_top{config.top_k}": top_k}  # fmt: skip
            rows.append(row)
            state["epoch"] = epoch
            improved = track_validation(state, epoch, val_acc, val_loss, top_k,
                                        config.early_stopping_tolerance)  # fmt: skip
            if epoch == 1 and config.time_budget:
                # Fix the schedule length now that an epoch's cost is known (deterministic when
                # the budget is not what ends the run).
                fit = int((budget_left - seconds) // max(seconds, 1e-9)) + 1
                state["planned_epochs"] = max(1, min(config.epochs, fit))
            if rank == 0:
                _checkpoint(ctx, optimizer, state, epoch, improved or state["best_epoch"] == epoch)
                _overfit_warning(ctx, rows)
            if should_stop_early(config, state, epoch):
                stop_reason = "early stopping"
                break
            if cut_short or time.monotonic() + seconds > deadline:
                stop_reason = "time budget"
                break
    if rank == 0 and rows and (state["epoch"] % config.checkpoint_frequency):
        save_checkpoint(ctx.stage / "last.pt", _last(ctx, optimizer, state))
    if not rows:
        raise TrainError("no epoch ran: raise --time-budget or --epochs")
    if rank == 0:
        mirror = choose_mirror_tta(ctx, task, state)
        if mirror is not None:
            ctx.choices["mirror_tta"] = mirror
    return {
        "metrics": rows,
        "best": {
            "val_accuracy": state["best_acc"],
            "epoch": state["best_epoch"],
            f"val_top{config.top_k}": state.get("best_top_k"),
        },
        "card": {
            "stopped_by": stop_reason,
            "epochs_run": state["epoch"],
            "devices": world,
            "trainer": type(task).__name__,
            "planned_epochs": state["planned_epochs"],
        },
    }


def _one_epoch(
    task,
    module,
    optimizer,
    config,
    state,
    epoch,
    steps_per_epoch,
    weight,
    rank,
    world,
    device,
    progress,
    deadline=None,
):
    """One pass over the training rows; returns (mean loss, accuracy, samples seen by this rank).

    With a `deadline` (one process only: DDP ranks must take the same steps), the pass stops
    early when the time budget is spent, so that one slow epoch (a large model from scratch on
    a CPU) cannot overrun --time-budget by many minutes.
    """
    perm = np.random.default_rng([config.seed, epoch]).permutation(task.n_train)
    torch.manual_seed(config.seed * 100_003 + epoch)  # dropout / drop-connect
    task.set_train(True)
    total_steps = state["planned_epochs"] * steps_per_epoch
    bar = progress.add_task(f"epoch {epoch}/{state['planned_epochs']}", total=len(perm), rate="")
    loss_sum = correct = seen = 0.0
    micro = getattr(task, "micro_batch", None)
    t0 = time.monotonic()
    for i in range(steps_per_epoch):
        if i and deadline is not None and time.monotonic() > deadline:
            state["cut_short"] = f"epoch {epoch} stopped after {i} of {steps_per_epoch} steps"
            break
        chunk = perm[i * config.mini_batch_size : (i + 1) * config.mini_batch_size]
        local = chunk[rank::world]
        factor = lr_factor(config, state["step"], steps_per_epoch, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        g = _generator(config.seed, epoch, i, rank)
        x, y = task.train_batch(local, g)
        lam, partner = 1.0, None
        if config.mixup > 0 and len(y) > 1:
            # mixup (on cached activations for the tail task: "manifold mixup")
            lam = float(torch.distributions.Beta(config.mixup, config.mixup).sample())
            partner = torch.randperm(len(y), generator=g).to(device)
            x = lam * x + (1 - lam) * x[partner]
        optimizer.zero_grad(set_to_none=True)
        logits, loss = forward_backward(
            module, x, y, config, weight, lam, partner, micro if world == 1 else None, device
        )
        optimizer.step()
        state["step"] += 1
        loss_sum += loss * len(local)
        correct += float((logits.argmax(1) == y).sum())
        seen += len(local)
        rate = seen * world / max(time.monotonic() - t0, 1e-9)
        progress.update(
            bar,
            advance=len(chunk),
            rate=f"loss {loss_sum / seen:.3f} acc {correct / seen:.1%} {rate:,.0f} img/s",
        )
    if world > 1:  # report the global numbers, not rank 0's share
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        seen /= world  # callers multiply by world for images/s
        loss_sum, correct = loss_sum / world, correct / world
    return loss_sum / max(seen, 1), correct / max(seen, 1), int(seen)


def forward_backward(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    weight: torch.Tensor | None, lam: float, partner: torch.Tensor | None, micro: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, float]:  # fmt: skip
    """Loss and gradients of one batch: (detached logits, mean loss).

    With `micro`, the batch goes through in pieces of that many rows whose gradients add up to
    the whole batch's (each piece's mean loss weighted by its share); only batch-norm statistics
    see the smaller pieces. That bounds the activations kept for backprop: a 224-px Lite0 from
    scratch at batch 64 took 11-12 GB of a CPU machine's memory in one piece.
    """
    targets = y[partner] if partner is not None else None
    step = micro or len(y)
    outputs, total = [], 0.0
    for start in range(0, len(y), step):
        piece = slice(start, start + step)
        with autocast(config, device):
            logits = module(x[piece])
        loss = F.cross_entropy(
            logits.float(), y[piece], weight=weight, label_smoothing=config.label_smoothing
        )
        if targets is not None:
            loss = lam * loss + (1 - lam) * F.cross_entropy(
                logits.float(), targets[piece], weight=weight,
                label_smoothing=config.label_smoothing,
            )  # fmt: skip
        share = len(y[piece]) / len(y)
        (loss * share).backward()
        total += float(loss.detach()) * share
        outputs.append(logits.detach())
    return torch.cat(outputs), total


def choose_mirror_tta(ctx: RunContext, task: Any, state: dict[str, Any]) -> dict[str, Any] | None:
    """Keep mirror test-time averaging in the best model only when it helps on validation.

    Measured on the best checkpoint, plain and mirror-averaged (`policy.mirror_choice`). best.pt and the run's best scores are updated to the chosen setting.
    """
    model, config = ctx.model, ctx.config
    if not hasattr(model, "flip_tta") or "flip_tta" not in model.model_kwargs:
        return None
    if not config.flip_tta:
        model.flip_tta = False
        return {"kept": False, "chosen_by": "configuration (flip_tta=false)"}
    best = ctx.stage / "best.pt"
    model.load_state_dict(read_checkpoint(best)["state_dict"])
    scores = {}
    for flag in (False, True):
        model.flip_tta = flag
        scores[flag] = _val_scores(task, config)
    choice = mirror_choice(scores[False][1], scores[True][1])
    keep = choice["kept"]
    model.flip_tta = keep
    model.model_kwargs = {**model.model_kwargs, "flip_tta": keep}
    state.update(best_acc=scores[keep][1], best_top_k=scores[keep][2])
    save_checkpoint(
        best,
        checkpoint_dict(model, ctx.data.classes, ctx.data.preprocess, state["best_epoch"], config),
    )
    return choice


def _val_scores(task: Any, config: TrainConfig) -> tuple[float, float, float]:
    """Validation (loss, accuracy, top-k accuracy)."""
    logits, y = task.val_logits()
    k = min(config.top_k, logits.shape[1])
    top_k = float((logits.topk(k, 1).indices == y[:, None]).any(1).float().mean())
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean()), top_k


def _last(
    ctx: RunContext, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> dict[str, Any]:
    return checkpoint_dict(
        ctx.model, ctx.data.classes, ctx.data.preprocess, state["epoch"], ctx.config,
        optimizer=optimizer.state_dict(), scheduler={"step": state["step"]}, loop=dict(state),
    )  # fmt: skip


def track_validation(
    state: dict[str, Any], epoch: int, val_acc: float, val_loss: float, top_k: float | None,
    tolerance: float,
) -> bool:  # fmt: skip
    """Record one epoch's validation scores in `state`; True when this epoch is the new best.

    The best model has the highest accuracy (ties: the lower loss). Patience (`since_best`)
    counts epochs in which neither the accuracy nor the loss improved: on a few hundred
    validation images one lucky epoch can top the accuracy for a long time while the model is
    still learning (MNIST digits stopped at epoch 8 of 30 with the loss still falling: 98.35 %
    test, against 99.45 % when the loss keeps the run going).
    """
    best_acc, best_loss = state["best_acc"], state.get("best_loss", math.inf)
    better = val_acc > best_acc + tolerance or (
        tolerance == 0.0 and val_acc == best_acc and val_loss < best_loss
    )
    if better or best_acc < 0:
        state.update(best_acc=val_acc, best_loss=val_loss, best_epoch=epoch, best_top_k=top_k)
    lowest = state.get("lowest_loss", math.inf)
    state["since_best"] = 0 if better or val_loss < lowest else state["since_best"] + 1
    state["lowest_loss"] = min(val_loss, lowest)
    return better


def should_stop_early(config: TrainConfig, state: dict[str, Any], epoch: int) -> bool:
    return (
        config.early_stopping
        and epoch >= config.early_stopping_min_epochs
        and state["since_best"] >= config.early_stopping_patience
    )


def _checkpoint(
    ctx: RunContext, optimizer: torch.optim.Optimizer, state: dict[str, Any], epoch: int, best: bool
) -> None:
    if best:
        save_checkpoint(
            ctx.stage / "best.pt",
            checkpoint_dict(ctx.model, ctx.data.classes, ctx.data.preprocess, epoch, ctx.config),
        )
    if epoch % ctx.config.checkpoint_frequency == 0:
        save_checkpoint(ctx.stage / "last.pt", _last(ctx, optimizer, state))


def _check_resumable(ckpt: dict[str, Any], ctx: RunContext) -> None:
    if ckpt.get("model") != ctx.model.model_name or ckpt.get("classes") != ctx.data.classes:
        raise TrainError(
            f"cannot resume: last.pt is a {ckpt.get('model')} on classes {ckpt.get('classes')}, "
            f"this run is a {ctx.model.model_name} on {ctx.data.classes}"
        )
    if "optimizer" not in ckpt or "loop" not in ckpt:
        raise TrainError("cannot resume: last.pt has no optimizer state (a quick-mode run?)")


def _overfit_warning(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    """Once: train accuracy running away from validation accuracy for two epochs in a row."""
    if len(rows) < 2 or any("overfit" in n for n in ctx.notes):
        return
    gaps = [r["train_acc"] - r["val_acc"] for r in rows[-2:]]
    if min(gaps) > 0.15:
        ctx.warn(
            f"train accuracy ({rows[-1]['train_acc']:.1%}) runs away from validation "
            f"({rows[-1]['val_acc']:.1%}): the model overfits; add images, use stronger "
            "augmentation (augmentation_type=crop_color_transform) or fewer epochs"
        )
