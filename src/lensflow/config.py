"""Shared helpers for the per-command config objects (frozen dataclasses).

Each stage owns its own config dataclass; this module only validates keys and saves configs
beside the artifacts they produced.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lensflow.errors import ConfigError
from lensflow.io import atomic_write_text


def reject_unknown(keys: Iterable[str], known: Iterable[str], what: str = "option") -> None:
    """Raise ConfigError for the first unknown key, suggesting the closest known one."""
    known = list(known)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown {what} {key!r}{hint} (known: {', '.join(sorted(known))})")


def config_to_dict(config: Any) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(config).items()}


def save_config(config: Any, path: str | os.PathLike[str]) -> Path:
    """Write a config dataclass as YAML (atomically) beside what it produced."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def load_yaml(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of name: value")
    return data
