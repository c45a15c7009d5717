"""`lensflow train` and `lensflow models`. Thin: build the TrainConfig, call `train()`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

# CLI flags that map 1:1 to TrainConfig fields (None = not given, keep YAML/default).
_FLAG_FIELDS = (
    "mode",
    "model",
    "weights",
    "epochs",
    "mini_batch_size",
    "learning_rate",
    "optimizer",
    "time_budget",
    "seed",
    "limit_per_class",
    "class_weights",
    "devices",
    "workers",
    "num_layers",
    "image_shape",
    "augmentation_type",
    "cache_dir",
)


def train_command(
    dataset: Path = typer.Argument(..., help="A dataset directory (lensflow data import)."),
    out: Path = typer.Option(..., "--out", "-o", help="The run directory to create."),
    mode: str | None = typer.Option(
        None, "--mode", "-m", help="quick | finetune (default) | scratch | auto."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model name (lensflow models). Default: finetune on a CPU uses "
        "efficientnet_lite_ensemble when it fits --time-budget, else efficientnet_lite0.",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of hyperparameters (SageMaker names)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Override one hyperparameter: KEY=VALUE (repeatable)."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Start from a local torch or safetensors checkpoint."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs."),
    mini_batch_size: int | None = typer.Option(None, "--batch-size", help="Global batch size."),
    learning_rate: float | None = typer.Option(
        None, "--lr", help="Peak learning rate of the head."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd|nag|adam|adamw|rmsprop."),
    time_budget: str | None = typer.Option(
        None, "--time-budget", help="Wall-clock budget, e.g. 600, 90s, 10m (default 10m)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for sampling, init and shuffling."),
    limit_per_class: int | None = typer.Option(
        None, "--limit-per-class", help="Train on a seeded sample of N images per class."
    ),
    class_weights: str | None = typer.Option(
        None, "--class-weights", help="none | auto (inverse class frequency)."
    ),
    devices: int | None = typer.Option(
        None, "--devices", help="Data-parallel processes (DDP; gloo on CPU)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Decode processes (0 = all cores)."),
    num_layers: int | None = typer.Option(None, "--num-layers", help="ResNet depth."),
    image_shape: str | None = typer.Option(None, "--image-shape", help="C,H,W e.g. 1,28,28."),
    augmentation_type: str | None = typer.Option(
        None,
        "--augmentation",
        help="auto (default: per dataset) | none | crop | crop_color | crop_color_transform | shift "
        "| shift_flip; e.g. --augmentation shift.",
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN (or its partial run)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing RUN."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the run card as JSON."),
) -> None:
    """Train a classifier on a dataset and write a run directory.

    Hyperparameters use SageMaker's names (epochs, mini_batch_size, learning_rate, optimizer,
    momentum, weight_decay, lr_scheduler_step, lr_scheduler_factor, image_shape, num_layers,
    use_pretrained_model, augmentation_type, early_stopping*, checkpoint_frequency,
    precision_dtype, top_k); set them in --config YAML or with --param KEY=VALUE.

    Example: lensflow train ds --out run --mode quick

    Example: lensflow train ds --out run --time-budget 10m -p label_smoothing=0.1
    """
    from lensflow.train.config import command_config, parse_overrides
    from lensflow.train.run import train

    given = locals()
    flags: dict[str, Any] = {k: given[k] for k in _FLAG_FIELDS if given[k] is not None}
    overrides = {**parse_overrides(param), **flags}
    cfg = command_config(dataset, out, overrides, config, quiet or as_json, resume)
    card = train(cfg, resume=resume, overwrite=overwrite)
    if not card:  # a non-zero torchrun rank: rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps(card, default=str))
        return
    best = card["best"]
    typer.echo(
        f"{card['mode']} {card['model']}: validation accuracy {best['val_accuracy']:.1%} "
        f"(epoch {best['epoch']}, {card['val_images']} images) in {card['seconds']:.0f} s -> {out}"
    )


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON."),
) -> None:
    """List the registered models with their input size and whether ImageNet weights ship.

    Example: lensflow models --json
    """
    from lensflow.models import get_model_info, list_models
    from lensflow.models.registry import info_dict

    infos = [get_model_info(n) for n in list_models()]
    if as_json:
        typer.echo(json.dumps([info_dict(i) for i in infos], default=str))
        return
    width = max(len(i.name) for i in infos)
    for i in infos:
        p = i.preprocess
        size = f"{p.channels}x{p.input_size}x{p.input_size}"
        weights = "imagenet" if i.pretrained_available else "random"
        typer.echo(f"{i.name:{width}s}  {size:10s} {weights:9s} {i.description}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command("train")(train_command)
    app.command("models")(models_command)
