"""lensflow: from a folder of photos to a live image classifier on a CPU.

In Python (see lensflow.api):

    import lensflow as lf
    ds = lf.import_dataset("photos/", out="ds")
    run = lf.train(ds, out="run", mode="quick")
    predictor = run.export("bundle")

The façade is loaded on first use, so `import lensflow` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_FACADE = ("Evaluation", "Run", "import_dataset", "load")


def __getattr__(name: str) -> Any:
    if name == "train":
        # The subpackage, which is callable as the façade's train (see lensflow/train/__init__.py):
        # Python binds `lensflow.train` to the subpackage once it is imported, whatever we return.
        return importlib.import_module("lensflow.train")
    if name in _FACADE:
        return getattr(importlib.import_module("lensflow.api"), name)
    raise AttributeError(f"module 'lensflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "train", *_FACADE])
