"""Micro-batching: concurrent requests for one model share a single engine call.

A worker per model takes whatever is queued (up to ``max_batch_size`` images) and runs it in a
thread, so inference never blocks the event loop. It waits up to ``batch_timeout_ms`` for more
images only when the previous batch held more than one, i.e. when requests are arriving
concurrently: a lone request at concurrency 1 never pays the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.core.engines import Engine

Pixels = npt.NDArray[np.uint8]
Probabilities = npt.NDArray[np.float32]


class QueueFull(Exception):
    """The bounded queue is at capacity; the caller answers 503 OVERLOADED."""


@dataclass(frozen=True)
class BatchResult:
    """One image's probabilities and the engine call it rode in."""

    probabilities: Probabilities
    latency_ms: float
    batch_size: int


@dataclass
class _Pending:
    pixels: Pixels
    future: asyncio.Future[BatchResult]


BatchObserver = Callable[[str, int, float], None]


class MicroBatcher:
    """Gathers one model's requests into batched engine calls."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        executor: Executor,
        *,
        max_batch_size: int,
        batch_timeout_ms: float,
        max_queue: int,
        observe: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_ms / 1000.0
        self.max_queue = max_queue
        self.observe = observe
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._previous_batch = 1

    @property
    def depth(self) -> int:
        """Images waiting for an engine call (not counting the one running)."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, pixels: Pixels) -> BatchResult:
        """Queue one 32x32x3 image and wait for its probabilities."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(self.name)
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(pixels, future))
        # If the client goes away, this await is cancelled and so is the future: the worker
        # then skips it, which frees its queue slot without running the engine for nobody.
        return await future

    def _take_ready(self, batch: list[_Pending]) -> None:
        while len(batch) < self.max_batch_size and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.cancelled():
                batch.append(item)

    async def _collect(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while not batch:
            item = await self._queue.get()
            if not item.future.cancelled():
                batch.append(item)
        self._take_ready(batch)
        if self._previous_batch > 1 and self.batch_timeout_s > 0:
            deadline = time.perf_counter() + self.batch_timeout_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if not item.future.cancelled():
                    batch.append(item)
                self._take_ready(batch)
        return batch

    def _infer(self, images: npt.NDArray[np.float32]) -> tuple[Probabilities, float]:
        started = time.perf_counter()
        probabilities = self.engine.predict(images)
        return probabilities, (time.perf_counter() - started) * 1000.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._previous_batch = len(batch)
            try:
                # One float32 array filled in place: a single copy from the decoded pixels.
                images = np.empty((len(batch), *batch[0].pixels.shape), np.float32)
                for index, item in enumerate(batch):
                    images[index] = item.pixels
                probabilities, latency_ms = await loop.run_in_executor(
                    self.executor, self._infer, images
                )
            except Exception as error:  # noqa: BLE001 - hand the failure to every waiter
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            if self.observe is not None:
                self.observe(self.name, len(batch), latency_ms)
            for index, item in enumerate(batch):
                if not item.future.done():
                    item.future.set_result(
                        BatchResult(probabilities[index], latency_ms, len(batch))
                    )
