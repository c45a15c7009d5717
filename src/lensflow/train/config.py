"""TrainConfig: the one frozen config of `lensflow train`, with SageMaker's hyperparameter names.

Values come from (lowest to highest priority) the defaults below, a YAML file (`--config`), and
command-line overrides. Unknown keys are rejected with the closest known name. The resolved
config is written to RUN/config.yaml and stored inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensflow.config import reject_unknown
from lensflow.errors import ConfigError

MODES = ("quick", "finetune", "scratch", "auto")
OPTIMIZERS = ("sgd", "nag", "adam", "adamw", "rmsprop")
SCHEDULERS = ("cosine", "step", "none")
AUGMENTATIONS = (
    "auto",
    "none",
    "crop",
    "crop_color",
    "crop_color_transform",
    "shift",
    "shift_flip",
)
PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainConfig:
    # -- what and where ----------------------------------------------------------------------
    dataset: Path = Path(".")  # a lensflow dataset directory (lensflow data import)
    out: Path = Path("run")  # the run directory to create
    mode: str = "finetune"  # quick | finetune | scratch | auto
    model: str = ""  # a name from `lensflow models`; "" = per mode (see run.default_model)
    weights: Path | None = None  # local torch/safetensors checkpoint to start from
    # -- SageMaker image-classification hyperparameters ---------------------------------------
    epochs: int = 30  # (int) upper bound; --time-budget and early stopping usually end sooner
    mini_batch_size: int = 64  # (int) global batch (split across --devices)
    learning_rate: float = 0.0  # (float) peak LR of the head; 0 = per-mode default
    optimizer: str = "adamw"  # sgd | nag | adam | adamw | rmsprop
    momentum: float = 0.9  # (float) sgd/nag/rmsprop momentum, adam beta1
    weight_decay: float = 0.0001  # (float) decoupled for adamw, L2 otherwise
    lr_scheduler: str = "cosine"  # cosine (with warm-up) | step | none
    lr_scheduler_step: str = ""  # (str) "10,20": epochs at which step decays the LR
    lr_scheduler_factor: float = 0.1  # (float) step decay factor
    warmup_epochs: float = 1.0  # (float) linear warm-up before cosine
    image_shape: str = ""  # (str) "3,224,224" (C,H,W); "" = the model's own
    num_layers: int = 0  # (int) ResNet depth for model "resnet" (18..152, 20..110)
    use_pretrained_model: bool = True  # (bool) ImageNet weights where the model has them
    # auto = crop_color for photos; shift (+ flip when mirror images keep their class) for small
    # images | none | crop | crop_color | crop_color_transform | shift | shift_flip
    augmentation_type: str = "auto"
    label_smoothing: float = 0.1  # (float) cross-entropy label smoothing
    mixup: float = 0.0  # (float) mixup Beta(a, a) strength; 0 = off
    freeze_bn: bool = True  # (bool) keep pretrained batch-norm statistics when fine-tuning
    early_stopping: bool = True  # (bool) stop when validation accuracy stops improving
    early_stopping_min_epochs: int = 5  # (int) never stop before this epoch
    early_stopping_patience: int = 4  # (int) epochs without improvement before stopping
    early_stopping_tolerance: float = 0.0  # (float) minimal accuracy gain that counts
    checkpoint_frequency: int = 1  # (int) write last.pt every N epochs
    precision_dtype: str = "float32"  # float32 | bfloat16 | float16 (autocast on CUDA)
    top_k: int = 5  # (int) also report top-k validation accuracy
    # -- lensflow extensions ----------------------------------------------------------------
    time_budget: float = 600.0  # (s) wall-clock budget for finetune/scratch/auto
    seed: int = 0  # (int) one seed for sampling, init, augmentation and shuffling
    limit_per_class: int = 0  # (int) train on a seeded sample of N images per class; 0 = all
    class_weights: str = "none"  # none | auto (inverse class frequency in the loss)
    devices: int = 1  # (int) DDP processes (gloo on CPU, nccl on CUDA)
    workers: int = 0  # (int) decode processes; 0 = all cores
    flip_tta: bool = True  # (bool) average features of the image and its mirror (quick, finetune)
    views: int = 4  # (int) augmented views cached per training image (CPU finetune)
    trainable_blocks: int = 2  # (int) last EfficientNet blocks fine-tuned on CPU; -1 = all
    head_init: str = "probe"  # probe (fit the head on frozen features first) | random
    backbone_lr_factor: float = 0.3  # (float) LR of fine-tuned blocks relative to the head
    val_fraction: float = 0.2  # (float) held out from train when the dataset has no validation
    cache_dir: Path | None = None  # feature/activation cache; default ~/.cache/lensflow
    quiet: bool = False

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice("augmentation_type", self.augmentation_type, AUGMENTATIONS)
        check_choice("precision_dtype", self.precision_dtype, PRECISIONS)
        check_choice("class_weights", self.class_weights, ("none", "auto"))
        check_choice("head_init", self.head_init, ("probe", "random"))
        for name in ("epochs", "mini_batch_size", "checkpoint_frequency", "top_k", "devices"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "weight_decay", "warmup_epochs", "limit_per_class", "mixup"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.time_budget <= 0:
            raise ConfigError(f"time_budget must be > 0 seconds, got {self.time_budget}")
        if self.views < 1:
            raise ConfigError(f"views must be >= 1, got {self.views}")
        self.milestones()
        self.image_chw()

    def milestones(self) -> list[int]:
        try:
            return [
                int(s) for s in self.lr_scheduler_step.replace(";", ",").split(",") if s.strip()
            ]
        except ValueError:
            raise ConfigError(
                f"lr_scheduler_step must be comma-separated epochs like '10,20', "
                f"got {self.lr_scheduler_step!r}"
            ) from None

    def image_chw(self) -> tuple[int, int, int] | None:
        if not self.image_shape:
            return None
        parts = re.split(r"[,x ]+", self.image_shape.strip())
        try:
            c, h, w = (int(p) for p in parts)
        except ValueError:
            raise ConfigError(
                f"image_shape must be C,H,W like '3,224,224', got {self.image_shape!r}"
            ) from None
        if c not in (1, 3) or h != w or h < 8:
            raise ConfigError(
                f"image_shape needs C in (1, 3) and a square H = W >= 8, got {self.image_shape!r}"
            )
        return c, h, w


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Names that may be given in YAML / --param (the paths come from the command line).
HYPERPARAMETERS = [n for n in FIELDS if n not in ("dataset", "out", "quiet")]


def parse_value(name: str, raw: Any) -> Any:
    """Convert a YAML/CLI value to the field's type, SageMaker style (0/1 for booleans)."""
    kind = str(FIELDS[name].type)
    if raw is None:
        return None
    try:
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind.startswith("int"):
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if kind.startswith("float"):
            return parse_seconds(raw) if name == "time_budget" else float(raw)
        if "Path" in kind:
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError):
        expected = kind.split(" ")[0].replace("Path", "path")
        raise ConfigError(f"{name} expects {expected}, got {raw!r}") from None


def parse_seconds(raw: Any) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    if isinstance(raw, int | float):
        return float(raw)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(raw))
    if not m:
        raise ValueError(raw)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """['epochs=5', 'optimizer=sgd'] -> dict, rejecting malformed pairs."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param expects KEY=VALUE (e.g. --param epochs=5), got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def build_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """Merge layers (later wins), validate names and types, and build the frozen config."""
    values: dict[str, Any] = {}
    for layer in layers:
        reject_unknown(
            layer.keys(), [*HYPERPARAMETERS, "dataset", "out", "quiet"], "hyperparameter"
        )
        for key, raw in layer.items():
            values[key] = parse_value(key, raw)
    return TrainConfig(**values)


def command_config(
    dataset: Path,
    out: Path,
    overrides: Mapping[str, Any],
    config_file: Path | None = None,
    quiet: bool = False,
    resume: bool = False,
) -> TrainConfig:
    """The TrainConfig of one `lensflow train` (CLI) or `lensflow.train(...)` (Python) call.

    Layers, lowest priority first: defaults, the YAML `config_file`, `overrides` (--param and
    flags, or keyword arguments). `resume` with nothing else given continues with the run's own
    saved config.
    """
    from lensflow.config import load_yaml

    layers: list[Mapping[str, Any]] = []
    if config_file is not None:
        layers.append(dict(load_yaml(config_file)))
    layers.append({**overrides, "dataset": dataset, "out": out, "quiet": quiet})
    cfg = build_config(*layers)
    if resume and config_file is None and not overrides:
        return _resumed_config(cfg)
    return cfg


def _resumed_config(cfg: TrainConfig) -> TrainConfig:
    from lensflow.config import load_yaml
    from lensflow.train.checkpoint import partial_dir

    for d in (partial_dir(cfg.out), cfg.out):
        if (d / "config.yaml").is_file():
            saved = dict(load_yaml(d / "config.yaml"))
            saved.update(dataset=cfg.dataset, out=cfg.out, quiet=cfg.quiet)
            return build_config(saved)
    return cfg
