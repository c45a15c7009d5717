"""ExportConfig checks its open-set options before any slow work."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.errors import ExportError
from lensflow.export.exporter import ExportConfig


@pytest.mark.parametrize("rate", [0.0, -0.1, 0.5, 5.0])
def test_unknown_rate_must_be_a_small_fraction(rate):
    with pytest.raises(ExportError, match=r"--unknown-rate must be a fraction in \(0, 0.5\)"):
        ExportConfig(run=Path("run"), out=Path("bundle"), unknown_rate=rate)


def test_defaults_reject_five_percent():
    assert ExportConfig(run=Path("run"), out=Path("bundle")).unknown_rate == 0.05
