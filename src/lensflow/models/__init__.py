"""Model registry: `create_model(name, num_classes, pretrained=True, weights=None, **kwargs)`.

Importing this package is cheap; the architectures (and torch) load on first use.
"""

from lensflow.models.registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    load_weights,
    read_state_dict,
)

__all__ = [
    "ModelInfo",
    "create_model",
    "get_model_info",
    "list_models",
    "load_weights",
    "read_state_dict",
]
