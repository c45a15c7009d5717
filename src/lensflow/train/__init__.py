"""Train stage: `lensflow train` (quick | finetune | scratch | auto) and `load_run`.

`from lensflow.train import load_run` does not import torch until it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lensflow.train.checkpoint import LoadedRun


def load_run(path: Any, which: str = "best") -> LoadedRun:
    """The trained model of a run directory: `LoadedRun(model, classes, preprocess, card, config)`."""
    from lensflow.train.checkpoint import load_run as _load_run

    return _load_run(path, which)


def train(config: Any, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train as configured (a `TrainConfig`) and write the run directory; returns the card."""
    from lensflow.train.run import train as _train

    return _train(config, resume=resume, overwrite=overwrite)


__all__ = ["load_run", "train"]
