"""One error base for everything a user can get wrong.

LensflowError is a click.ClickException so that the CLI prints the message (never a traceback)
and exits non-zero, both when run as `lensflow ...` and under typer's CliRunner in tests.
Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

import click

try:  # typer >= 0.26 runs a vendored copy of click and only catches that copy's ClickException
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # older typer uses click itself
    _TyperClickException = click.ClickException


class LensflowError(*dict.fromkeys((_TyperClickException, click.ClickException))):  # type: ignore[misc]
    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)


class DataError(LensflowError):
    """Bad dataset input: a source that cannot be read, a dataset that is not one, bad split ratios."""


class ConfigError(LensflowError):
    """An unknown option or a value out of range."""


class ModelError(LensflowError):
    """Unknown model names, incompatible weights files."""


class TrainError(LensflowError):
    """A training run that cannot start or resume."""


class EvaluateError(LensflowError):
    """A run and a dataset that do not fit together."""


class ExportError(LensflowError):
    """ONNX export or parity check failures."""


class BundleError(LensflowError):
    """A directory that is not a valid bundle."""


class OpenSetError(LensflowError):
    """Open-set scores that cannot be fitted, calibrated or read."""


class ServeError(LensflowError):
    """A server that cannot start safely."""


class LiveError(LensflowError):
    """Frame sources and brokers that cannot be reached."""


class StreamError(LensflowError):
    """Bad window definitions, unreadable replay files, broken state."""


class MatchError(LensflowError):
    """Pairing input that cannot be used."""


class CollectError(LensflowError):
    """Capture and download problems."""


class StudioError(LensflowError):
    """Studio API problems."""
