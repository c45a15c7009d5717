"""Train stage: `lensflow train` (quick | finetune | scratch | auto) and `load_run`.

`from lensflow.train import load_run` does not import torch until it is called.

The package is also callable: `lensflow.train(dataset, out=..., **hyperparameters)` is the
Python façade's train (`lensflow.api.train`, returns a Run), so `import lensflow as lf;
lf.train(ds, out="run", mode="quick")` works in notebooks.
"""

from __future__ import annotations

import sys
import types
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


class _CallablePackage(types.ModuleType):
    # Python binds the subpackage to the attribute `lensflow.train` as soon as it is imported,
    # replacing any function of that name: the package itself must be the façade's function.
    def __call__(self, dataset: Any, out: Any, **kwargs: Any) -> Any:
        from lensflow.api import train as facade_train

        return facade_train(dataset, out, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["load_run", "train"]
