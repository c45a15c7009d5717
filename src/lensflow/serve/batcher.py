"""Micro-batching: concurrent requests share one model call.

Requests put their preprocessed arrays on a queue; one loop takes whatever is waiting (up to
`max_batch` images, waiting at most `max_wait_ms` for more), runs the Predictor once in a single
worker thread and hands each request its rows. While a batch runs, the next one accumulates, so
under load batches grow by themselves and an idle server adds at most `max_wait_ms` of latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lensflow.predictor import Predictor

# (probabilities (N, C), open-set scores (N,) or None): what `Predictor.classify_arrays` returns
Scored = tuple[np.ndarray, np.ndarray | None]


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[Scored]


class MicroBatcher:
    def __init__(
        self,
        predictor: Predictor,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: model calls never overlap (onnxruntime already uses every core per call).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lensflow-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> Scored:
        """Probabilities and open-set scores for a preprocessed NCHW batch, computed together
        with other requests."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(x, future))
        return await future

    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        items = [await self._queue.get()]
        n = len(items[0].x)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            items.append(item)
            n += len(item.x)
        return items

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            live = [it for it in items if not it.future.cancelled()]  # client went away
            if not live:
                continue
            x = np.concatenate([it.x for it in live])
            try:
                probs, scores = await loop.run_in_executor(
                    self._executor, self.predictor.classify_arrays, x
                )
            except Exception as e:  # hand the failure to each request; the loop keeps running
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(x))
            start = 0
            for it in live:
                rows = slice(start, start + len(it.x))
                start += len(it.x)
                if not it.future.done():
                    it.future.set_result((probs[rows], None if scores is None else scores[rows]))
