"""The optional `[ray]` extra: a clear error when it is missing, and joining a Ray cluster.

Used by `lensflow predict --engine ray` (Ray Data) and `lensflow serve --engine ray` (Ray
Serve). Nothing here is imported by the core commands.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

from lensflow.errors import LensflowError

RAY_EXTRA = "pip install 'lensflow[ray]'"


def require_ray(what: str) -> ModuleType:
    """`ray`, or a one-line error naming the extra (`what` = the feature that needs it)."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise LensflowError(
            f"{what} needs Ray, which comes with the [ray] extra: {RAY_EXTRA}"
        ) from None


def connect(address: str | None, what: str) -> ModuleType:
    """Join the cluster at `address` ("auto", "ray://HOST:PORT", "HOST:PORT"), or start a
    local one when it is None (and RAY_ADDRESS is unset); a no-op when already connected."""
    ray = require_ray(what)
    if ray.is_initialized():
        return ray
    # Ray reports usage statistics over the internet by default; this tool never phones home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, object] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False  # a local throwaway cluster needs no web UI
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise LensflowError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    return ray
