"""`lensflow predict ... --out FILE`: list the images, skip the finished ones, run an engine.

Engines yield chunks of rows (see `rows.py`); this module counts them, shows progress, keeps
each chunk resumably (`store.py`) and merges the output at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lensflow.batch.sources import list_images
from lensflow.batch.store import ResultStore
from lensflow.errors import LensflowError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchConfig:
    bundle: Path
    sources: tuple[Path, ...]
    out: Path
    engine: str = "local"  # "local": this process; "ray": a Ray Data actor pool
    top_k: int = 3
    threads: int | None = None  # onnxruntime threads per model (local: all cores; ray: 1/actor)
    batch_size: int = 16  # images per model call chunk handed to a worker
    address: str | None = None  # ray: "auto", "ray://HOST:PORT", or None = start a local Ray
    actors: int | None = None  # ray: actor pool size (default: the cluster's CPUs)
    part_rows: int = 512  # rows per resumable chunk on disk

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise LensflowError(
                f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"
            )
        for name in ("top_k", "batch_size", "part_rows"):
            if getattr(self, name) < 1:
                raise LensflowError(
                    f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.actors is not None and self.actors < 1:
            raise LensflowError(f"--actors must be >= 1, got {self.actors}")
        if self.threads is not None and self.threads < 1:
            raise LensflowError(f"--threads must be >= 1, got {self.threads}")
        if self.engine == "local" and (self.address is not None or self.actors is not None):
            raise LensflowError("--address and --actors need --engine ray")


@dataclass
class BatchSummary:
    out: str
    engine: str
    images: int  # in SOURCE
    skipped: int  # already predicted in --out (resumed)
    predicted: int  # new rows with a prediction
    errors: int  # new rows with an error (unreadable files)
    rows: int  # rows in --out now
    seconds: float  # engine time: startup (model load; Ray: join, actor pool) + predicting
    images_per_s: float
    startup_s: float  # until the first chunk of rows arrived
    steady_images_per_s: float  # rows after the first chunk / time after it
    nodes: list[str] = field(default_factory=list)  # ray: the nodes whose actors did work

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def batch_predict(config: BatchConfig, quiet: bool = False) -> BatchSummary:
    """Predict every image of `config.sources` not yet in `config.out`, then merge the output."""
    from lensflow.bundle import read_bundle

    store = ResultStore(config.out)
    read_bundle(config.bundle)  # a wrong bundle fails here, before any cluster starts
    paths = list_images(list(config.sources))
    done = store.done_paths()
    todo = [p for p in paths if p not in done]
    nodes: set[str] = set()
    counts = {"predicted": 0, "errors": 0}
    started = time.perf_counter()
    first: list[tuple[float, int]] = []  # (time, rows) of the first chunk
    if todo:
        chunks = _engine(config, todo, nodes)
        _consume(chunks, store, config.part_rows, len(todo), counts, quiet, first)
    seconds = time.perf_counter() - started
    startup, first_rows = (first[0][0] - started, first[0][1]) if first else (seconds, 0)
    steady_rows = counts["predicted"] + counts["errors"] - first_rows
    rows = store.finalize()
    new = counts["predicted"] + counts["errors"]
    return BatchSummary(
        out=str(config.out),
        engine=config.engine,
        images=len(paths),
        skipped=len(paths) - len(todo),
        predicted=counts["predicted"],
        errors=counts["errors"],
        rows=rows,
        seconds=round(seconds, 3),
        images_per_s=round(new / seconds, 2) if new and seconds > 0 else 0.0,
        startup_s=round(startup, 3),
        steady_images_per_s=(
            round(steady_rows / (seconds - startup), 2)
            if steady_rows and seconds > startup
            else 0.0
        ),
        nodes=sorted(nodes),
    )


def _engine(config: BatchConfig, todo: list[str], nodes: set[str]) -> Iterator[list[dict]]:
    if config.engine == "ray":
        from lensflow.batch.ray_engine import predict_on_ray

        return predict_on_ray(config, todo, nodes)
    return predict_locally(config, todo)


def predict_locally(config: BatchConfig, paths: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Chunks of rows from one Predictor in this process."""
    from lensflow.batch.rows import predict_rows
    from lensflow.predictor import Predictor

    predictor = Predictor.from_bundle(config.bundle, threads=config.threads)
    for start in range(0, len(paths), config.batch_size):
        yield predict_rows(predictor, paths[start : start + config.batch_size], config.top_k)


def _consume(
    chunks: Iterator[list[dict[str, Any]]],
    store: ResultStore,
    part_rows: int,
    total: int,
    counts: dict[str, int],
    quiet: bool,
    first: list[tuple[float, int]],
) -> None:
    from lensflow.progress import make_progress

    pending: list[dict[str, Any]] = []
    try:
        with make_progress(quiet) as progress:
            task = progress.add_task("predict", total=total, rate="")
            for rows in chunks:
                if not first:
                    first.append((time.perf_counter(), len(rows)))
                pending.extend(rows)
                for row in rows:
                    counts["errors" if row["error"] else "predicted"] += 1
                speed = progress.tasks[task].speed or 0.0
                progress.update(task, advance=len(rows), rate=f"{speed:,.1f} img/s")
                if len(pending) >= part_rows:
                    store.add(pending)
                    pending = []
    finally:
        # Rows finished before an interruption are kept: the next run resumes after them.
        store.add(pending)
