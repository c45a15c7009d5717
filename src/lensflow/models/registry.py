"""The model registry: one name -> builder map and `create_model` as the single entry point.

Each entry carries its `Preprocess` (input size, resize, crop, mean/std, interpolation), so
training, evaluation and export read the same numbers from one place. Builders receive the
model kwargs (e.g. `num_layers`, `image_size`, `in_channels`) and return an `nn.Module` that has
`forward_features(x) -> (N, D)`, `forward_head(f) -> logits` and `forward(x)`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensflow.errors import ModelError
from lensflow.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "efficientnet" | "resnet" | "cnn": how the trainer splits parameter groups
    preprocess: Preprocess  # for the default kwargs; see `preprocess_for`
    feature_dim: int  # D of forward_features with the default kwargs
    pretrained_available: bool  # ImageNet weights shipped offline with a pip package
    description: str
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    # kwargs -> Preprocess, for models whose input shape is a kwarg (small-image models)
    preprocess_fn: Callable[[dict[str, Any]], Preprocess] | None = None
    # (model, pretrained) -> nn.Module; not part of the public contract
    builder: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)

    def preprocess_for(self, **kwargs: Any) -> Preprocess:
        if self.preprocess_fn is None:
            return self.preprocess
        return self.preprocess_fn({**self.default_kwargs, **kwargs})


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY:
        warnings.warn(f"model {info.name!r} registered twice; the later one wins", stacklevel=2)
    _REGISTRY[info.name] = info
    return info


def _ensure_loaded() -> None:
    # Importing the family modules registers their models (kept lazy: they import torch).
    from lensflow.models import cnn, efficientnet, ensemble, resnet  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model with a fresh `num_classes` head.

    pretrained=True loads the bundled ImageNet weights where the model has them (see
    `ModelInfo.pretrained_available`); other models start from random init. `weights` loads a
    local torch or safetensors checkpoint on top (the head too when its shape matches).
    The model gets `model_name`, `model_kwargs` and `preprocess` attributes.
    """
    info = get_model_info(name)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    unknown = set(kwargs) - set(info.default_kwargs)
    if unknown:
        from lensflow.config import reject_unknown

        try:
            reject_unknown(sorted(unknown), info.default_kwargs, f"argument for model {name!r}")
        except Exception as e:
            raise ModelError(str(e)) from None
    full_kwargs = {**info.default_kwargs, **kwargs}
    assert info.builder is not None
    model = info.builder(
        num_classes=num_classes, pretrained=pretrained and weights is None, **full_kwargs
    )
    model.model_name = name
    # Every kwarg, defaults included: a checkpoint or cache key made today still means the same
    # model after a default changes.
    model.model_kwargs = dict(full_kwargs)
    model.preprocess = info.preprocess_for(**kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state dict from a torch file (state dict, lensflow checkpoint, or module) or safetensors."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:
            raise ModelError(f"cannot read safetensors weights {path}: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            # Whole pickled modules need the full unpickler; only for files the user chose.
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ModelError(f"cannot read weights {path}: {e}") from e
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of parameter name to tensor)")
    # DataParallel / DDP checkpoints prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load a checkpoint into `model`; head tensors of another shape are skipped (returned).

    Anything else that does not fit (missing or unexpected keys, other shapes) is a ModelError.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = set(getattr(model, "head_keys", ()))
    skipped = [k for k in head if k in state and state[k].shape != own[k].shape]
    for k in skipped:
        del state[k]
    bad_shape = [k for k in state if k in own and k not in head and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    if bad_shape or missing or unexpected:
        parts = []
        for label, keys in (
            ("shape mismatch", bad_shape),
            ("missing", missing),
            ("unexpected", unexpected),
        ):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
        raise ModelError(
            f"{path} does not fit model {getattr(model, 'model_name', type(model).__name__)} "
            f"({'; '.join(parts)}); pass the same --model (and num_layers) it was trained with"
        )
    model.load_state_dict(state, strict=False)
    return skipped


def info_dict(info: ModelInfo) -> dict[str, Any]:
    """The JSON-friendly part of a ModelInfo (for `--json` listings)."""
    d = {
        f.name: getattr(info, f.name)
        for f in dataclasses.fields(info)
        if f.name not in ("builder", "preprocess_fn")
    }
    d["preprocess"] = info.preprocess.to_dict()
    return d
