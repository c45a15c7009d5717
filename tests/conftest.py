"""Shared test set-up. Stage fixtures live in tests/fixtures/<name>.py, one owner each."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
SAMPLE = ROOT / "examples" / "clothing-sample"

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.train",
    "tests.fixtures.bundle",
    "tests.fixtures.mqtt",
    "tests.fixtures.browser",
    "tests.fixtures.rtsp",
    "tests.fixtures.flink",
    "tests.fixtures.raycluster",
]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets beside the project root; tests that need it skip where it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(
            f"real datasets not found at {SHARED_DATASETS} (clone with ../shared beside it)"
        )
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def sample_folder() -> Path:
    """The bundled CC0 clothing sample: train/ and validation/ with 5 classes."""
    return SAMPLE
