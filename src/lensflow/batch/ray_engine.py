"""`--engine ray`: Ray Data reads, decodes and predicts on an actor pool across the cluster.

Each actor holds one onnxruntime session (`Predictor`) with `threads` intra-op threads
(default: the CPUs it reserves, 1), so N actors on N cores do not oversubscribe. Reading and
decoding happen inside the actor too: a separate decode stage would need CPUs of its own,
and on a node whose cores all run actors it would starve (Ray Data waits for free CPUs).
Image paths must be readable at the same path on every node (a shared file system); the
bundle too. Rows come back to the driver, which writes them (see `store.py`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from lensflow.batch.run import BatchConfig

MIN_ACTORS_WAIT_S = 600  # then Ray Data fails with its own error (e.g. too few CPUs)
MAX_BLOCKS = 2000  # input blocks: enough to spread work, few enough to keep scheduling cheap


class PredictActor:
    """One Predictor per Ray actor; a batch of paths in, a batch of JSON rows out."""

    def __init__(self, bundle: str, top_k: int, threads: int) -> None:
        import ray

        from lensflow.predictor import Predictor

        self.predictor = Predictor.from_bundle(bundle, threads=threads)
        self.top_k = top_k
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from lensflow.batch.rows import predict_rows

        rows = predict_rows(self.predictor, [str(p) for p in batch["path"]], self.top_k)
        # JSON text keeps the block schema fixed whatever optional fields a bundle adds.
        return {
            "row": np.array([json.dumps(r) for r in rows], dtype=object),
            "node": np.array([self.node] * len(rows), dtype=object),
        }


def predict_on_ray(
    config: BatchConfig, paths: list[str], nodes: set[str]
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of rows, streamed back as actors finish them; `nodes` collects who did work."""
    from lensflow.raycluster import connect

    ray = connect(config.address, "lensflow predict --engine ray")
    ctx = ray.data.DataContext.get_current()
    # lensflow shows one progress bar of its own; Ray Data's bars and notes would interleave
    # (set after `ray.data` is imported: importing it configures its loggers).
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Start work once the whole pool is up: otherwise the first actor to load its model takes
    # every block of a short job while the others are still starting.
    ctx.wait_for_min_actors_s = MIN_ACTORS_WAIT_S
    actors = config.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Ray Data bundles small blocks up to `batch_size` rows per call, so a short list gets
    # smaller batches too: every actor gets work (about 4 calls each at least).
    batch_size = max(1, min(config.batch_size, math.ceil(len(paths) / (4 * actors))))
    blocks = min(math.ceil(len(paths) / batch_size), MAX_BLOCKS)
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    out = ds.map_batches(
        PredictActor,
        fn_constructor_kwargs={
            "bundle": str(config.bundle.absolute()),
            "top_k": config.top_k,
            "threads": config.threads or 1,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2),
        num_cpus=config.threads or 1,
        batch_format="numpy",
    )
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        nodes.update(str(n) for n in batch["node"])
        yield [json.loads(r) for r in batch["row"]]
