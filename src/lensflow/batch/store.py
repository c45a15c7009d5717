"""Resumable output: finished chunks go to `.OUT.parts/` beside `--out`, merged at the end.

Each chunk of rows is written atomically as JSON lines the moment it is done, so an interrupted
run (Ctrl-C, a lost cluster, a killed machine) loses at most the chunks in flight. A rerun
skips every path that already has a prediction, in `--out` or in the parts, retries paths that
had an error (the file may have been fixed), then merges everything into `--out` atomically
(CSV with the standard library, Parquet with pyarrow) and removes the parts. When a path has
several rows (an error, then a retry), the newest wins.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lensflow.batch.rows import BASE_COLUMNS
from lensflow.errors import LensflowError
from lensflow.io import atomic_file, atomic_write_text

FORMATS = {".csv": "csv", ".parquet": "parquet"}
PARQUET_TYPES = {"probability": "float64", "index": "int64"}  # every other base column: string


def require_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise LensflowError(
            "Parquet output needs pyarrow, which comes with the [ray] extra: "
            "pip install 'lensflow[ray]' (or write --out predictions.csv)"
        ) from None
    return pyarrow


class ResultStore:
    """The rows of one `--out` file: what is done, new chunks, and the final merge."""

    def __init__(self, out: Path) -> None:
        fmt = FORMATS.get(out.suffix.lower())
        if fmt is None:
            raise LensflowError(f"--out must end in .csv or .parquet, got {out.name!r}")
        if out.is_dir():
            raise LensflowError(f"--out {out} is a directory; give a .csv or .parquet file")
        self.out = out
        self.format = fmt
        self.parts = out.parent / f".{out.name}.parts"
        if fmt == "parquet":
            require_pyarrow()

    # -- what is already there --------------------------------------------------------------
    def done_paths(self) -> set[str]:
        """Paths that already have a prediction (rows with an error are retried)."""
        done: set[str] = set()
        for row in self._rows_of_out(columns=["path", "error"]):
            _mark(done, row)
        for row in self._part_rows():
            _mark(done, row)
        return done

    # -- writing ----------------------------------------------------------------------------
    def add(self, rows: list[dict[str, Any]]) -> None:
        """Keep a finished chunk of rows (atomically: a chunk is there whole or not at all)."""
        if not rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        n = len(list(self.parts.glob("part-*.jsonl")))
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_text(self.parts / f"part-{n:06d}.jsonl", text)

    def finalize(self) -> int:
        """Merge `--out` and the parts into `--out` (atomically), drop the parts; rows written."""
        newest = {row["path"]: i for i, row in enumerate(self._part_rows())}
        columns = self._columns()
        old = (r for r in self._rows_of_out() if r["path"] not in newest)
        new = (r for i, r in enumerate(self._part_rows()) if newest[r["path"]] == i)
        rows = itertools.chain(old, new)
        write = _write_csv if self.format == "csv" else _write_parquet
        with atomic_file(self.out) as tmp:  # streamed: millions of rows never sit in memory
            n = write(tmp, columns, rows)
        shutil.rmtree(self.parts, ignore_errors=True)
        return n

    # -- reading ----------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        columns = dict.fromkeys(BASE_COLUMNS)
        columns.update(dict.fromkeys(self._out_columns()))
        for row in self._part_rows():
            columns.update(dict.fromkeys(row))
        return list(columns)

    def _out_columns(self) -> list[str]:
        if not self.out.exists():
            return []
        if self.format == "csv":
            with self.out.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
        else:
            import pyarrow.parquet as pq

            header = pq.read_schema(self.out).names
        if "path" not in header:
            raise LensflowError(
                f"{self.out} exists but is not a predictions file (no 'path' column); "
                "choose another --out"
            )
        return header

    def _rows_of_out(self, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        if not self._out_columns():
            return
        if self.format == "csv":
            with self.out.open(newline="", encoding="utf-8") as f:
                yield from csv.DictReader(f)
            return
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(self.out).iter_batches(columns=columns):
            yield from batch.to_pylist()

    def _part_rows(self) -> Iterator[dict[str, Any]]:
        if not self.parts.is_dir():
            return
        for part in sorted(self.parts.glob("part-*.jsonl")):
            with part.open(encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)


def _mark(done: set[str], row: dict[str, Any]) -> None:
    if row.get("error"):
        done.discard(row["path"])  # a later error row means the file must be tried again
    else:
        done.add(row["path"])


def _write_csv(tmp: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def _write_parquet(
    tmp: Path, columns: list[str], rows: Iterator[dict[str, Any]], chunk: int = 65536
) -> int:
    import pyarrow.parquet as pq

    n, buffered, schema, writer = 0, [], None, None
    try:
        for row in rows:
            buffered.append(row)
            if len(buffered) >= chunk:
                schema = schema or _schema(columns, buffered)
                writer = writer or pq.ParquetWriter(tmp, schema)
                writer.write_table(_table(buffered, schema))
                n, buffered = n + len(buffered), []
        schema = schema or _schema(columns, buffered)
        writer = writer or pq.ParquetWriter(tmp, schema)
        writer.write_table(_table(buffered, schema))
        n += len(buffered)
    finally:
        if writer is not None:
            writer.close()
    return n


def _schema(columns: list[str], sample: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    fields = []
    for col in columns:
        if col in PARQUET_TYPES:
            typ = pa.type_for_alias(PARQUET_TYPES[col])
        elif col in BASE_COLUMNS:
            typ = pa.string()
        else:  # an optional Prediction field: its type from the first value present
            value = next((r[col] for r in sample if r.get(col) is not None), None)
            typ = {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(
                type(value), pa.string()
            )
        fields.append(pa.field(col, typ))
    return pa.schema(fields)


def _table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(
        [{c: _cast(r.get(c), schema.field(c).type) for c in schema.names} for r in rows],
        schema=schema,
    )


def _cast(value: Any, typ: Any) -> Any:
    import pyarrow as pa

    if value is not None and pa.types.is_string(typ) and not isinstance(value, str):
        return str(value)
    return value
