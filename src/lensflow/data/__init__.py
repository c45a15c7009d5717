"""Data stage: import (folder, IDX, CSV, .lst/.rec), validate, split, pack, inspect.

Public API (docs/ARCHITECTURE.md, "Dataset directory"):
`load_dataset`, `Dataset`, `Record`, `pack_dataset`, `PackedReader`, `ensure_packed`,
`import_dataset`/`ImportConfig`.
"""

from __future__ import annotations

from lensflow.data.dataset import Dataset, Record, load_dataset
from lensflow.data.importer import ImportConfig, import_dataset
from lensflow.data.pack import PackedReader, ensure_packed, pack_dataset

__all__ = [
    "Dataset",
    "ImportConfig",
    "PackedReader",
    "Record",
    "ensure_packed",
    "import_dataset",
    "load_dataset",
    "pack_dataset",
]
