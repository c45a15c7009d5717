"""Frozen-network outputs computed once with ONNX Runtime and cached on disk.

On this class of CPU, ONNX Runtime runs EfficientNet-Lite0 about 4x faster than eager torch
(depthwise convolutions), so frozen parts of a network are exported once (`torch.onnx.export`,
cached by a key of model + weights) and run batched on every core. Outputs are cached under a
key of dataset hash + network + preprocessing + view, so a second run on the same data starts
immediately.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lensflow.io import atomic_write_bytes
from lensflow.progress import make_progress

# Bump when what a cached network computes changes without its kwargs or weights changing.
CACHE_VERSION = 2


def auto_threads() -> int:
    """Threads for torch and ONNX Runtime: all cores, or half when the machine is overloaded.

    Measured on a shared 2-core machine (load average 8): a training step ran 2-3x faster on
    1 thread than on 2, because every op waits for its slowest thread and busy cores deschedule
    threads mid-op.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    # Only a heavily oversubscribed machine: the 1-minute average also counts our own recent work,
    # so a lower threshold would halve the threads right after any earlier job.
    return cores if load < 2 * cores else max(1, cores // 2)


def cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LENSFLOW_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lensflow"


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A short hash of a state dict: changes whenever any parameter or buffer changes."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(**parts: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class _Fn(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], owner: nn.Module) -> None:
        super().__init__()
        self.owner = owner  # registers the parameters so the exporter sees them
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def onnx_session(
    fn: Callable[[torch.Tensor], torch.Tensor],
    owner: nn.Module,
    example: torch.Tensor,
    path: Path,
    threads: int | None = None,
) -> Any:
    """An onnxruntime session for `fn` (a frozen piece of `owner`), exported once to `path`."""
    import onnxruntime as ort

    if not path.is_file():
        owner.eval()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation chatter
            torch.onnx.export(
                _Fn(fn, owner).eval(),
                (example,),
                buf,
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        atomic_write_bytes(path, buf.getvalue())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or auto_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_cached(
    key: str,
    cache_dir: Path,
    count: int,
    batches: Callable[[np.ndarray], np.ndarray],
    session: Callable[[], Any],
    description: str,
    batch_size: int = 64,
    dtype: type = np.float32,
    quiet: bool = False,
) -> np.ndarray:
    """Outputs for rows 0..count-1: `batches(rows)` gives float32 inputs; cached as .npy."""
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if len(cached) == count:
                return np.asarray(cached)
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed below
    sess = session()
    chunks = []
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=count, rate="")
        for start in range(0, count, batch_size):
            rows = np.arange(start, min(start + batch_size, count))
            out = sess.run(None, {"input": batches(rows)})[0]
            chunks.append(out.astype(dtype, copy=False))
            progress.update(task, advance=len(rows))
            speed = progress.tasks[task].speed or 0.0
            progress.update(task, rate=f"{speed:,.1f} img/s")
    result = np.concatenate(chunks) if chunks else np.zeros((0,), dtype)
    buf = io.BytesIO()
    np.save(buf, result)
    atomic_write_bytes(path, buf.getvalue())
    return result
