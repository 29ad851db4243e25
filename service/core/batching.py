"""Micro-batching: concurrent requests for one model share a single engine call.

A worker per model takes whatever is queued (up to ``max_batch_size`` images) and runs it in a
thread, so inference never blocks the event loop. It waits up to ``batch_timeout_ms`` for more
images only when the previous batch held more than one, i.e. when requests are arriving
concurrently: a lone request at concurrency 1 never pays the timeout.

The worker must never die silently, or every later request for its model would wait forever: a
failing batch fails only its own requests (500 ``ENGINE_ERROR``), and a worker that crashes anyway
fails the batch it held and is started again, counted by ``on_restart``.

With tracing on, each request carries its trace context through the queue, and the worker
records its ``queue`` and ``engine`` spans once the engine call is over (service.process.tracing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.core.engines import Engine
from service.errors import engine_error, not_ready
from service.process.tracing import NO_TRACING, EngineCall, QueuedTrace, Tracing

logger = logging.getLogger("sepconv.batching")

Pixels = npt.NDArray[np.uint8]
Probabilities = npt.NDArray[np.float32]

# A worker that crashes again soon after a restart waits a little longer each time, so a fault
# that hits every batch cannot spin the event loop; one that ran for a while restarts at once.
RESTART_BACKOFF_S = 0.05
RESTART_BACKOFF_MAX_S = 2.0
RESTART_STREAK_RESET_S = 10.0


class QueueFull(Exception):
    """The bounded queue is at capacity; the caller answers 503 OVERLOADED."""


class EngineOutputError(Exception):
    """The engine answered an array that is not one row of class probabilities per image."""


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
    trace: QueuedTrace | None = None  # None: tracing off


def describe_output_mismatch(
    shape: tuple[int, ...], batch_size: int, num_classes: int | None
) -> str | None:
    """Why an engine output of ``shape`` is not ``(batch_size, num_classes)``; None if it is.

    ``num_classes`` None checks the rows only.
    """
    rows = shape[0] if shape else None
    if len(shape) != 2 or rows != batch_size:
        return (
            f"the engine answered {rows if rows is not None else 'no'} rows for a batch of "
            f"{batch_size} (shape {shape}): the model must accept any batch size "
            "(export with a None batch dimension)"
        )
    if num_classes is not None and shape[1] != num_classes:
        return (
            f"the engine answered {shape[1]} probabilities per image, expected {num_classes}, "
            "one per class: export the model with the class list it serves"
        )
    return None


BatchObserver = Callable[[str, int, float], None]
RestartObserver = Callable[[str], None]


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
        num_classes: int | None = None,
        observe: BatchObserver | None = None,
        on_restart: RestartObserver | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.name = name
        self.engine = engine
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_ms / 1000.0
        self.max_queue = max_queue
        self.num_classes = num_classes
        self.observe = observe
        self.on_restart = on_restart
        self.tracing = tracing
        self.restarts = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        # The batch the worker holds (collecting or running): what a crash must not strand.
        self._in_flight: list[_Pending] = []
        self._previous_batch = 1
        self._stopping = False
        self._restart_handle: asyncio.TimerHandle | None = None
        self._crash_streak = 0
        self._last_crash = -RESTART_STREAK_RESET_S

    @property
    def depth(self) -> int:
        """Images waiting for an engine call (not counting the one running)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._stopping = False
        if self._worker is None:
            self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._restart_handle is not None:
            self._restart_handle.cancel()
            self._restart_handle = None
        worker = self._worker
        if worker is not None:
            worker.cancel()
            # wait() never raises: a worker that crashed meanwhile is already handled.
            await asyncio.wait({worker})
            self._worker = None

    async def submit(self, pixels: Pixels) -> BatchResult:
        """Queue one 32x32x3 image and wait for its probabilities."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(self.name)
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(pixels, future, self.tracing.enqueue()))
        # If the client goes away, this await is cancelled and so is the future: the worker
        # then skips it, which frees its queue slot without running the engine for nobody.
        return await future

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        task.add_done_callback(self._worker_done)
        self._worker = task

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        """The worker ended: stopped, or crashed; a crash fails its batch and restarts it."""
        if task is not self._worker:
            return
        self._worker = None
        batch, self._in_flight = self._in_flight, []
        if task.cancelled():
            # Stopped (stop(), or the event loop closing): nobody is left to answer the batch.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(
                        not_ready(f"model {self.name!r} stopped before answering; retry shortly")
                    )
            return
        error = task.exception()
        logger.error(
            "batcher worker crashed",
            extra={"model": self.name, "batch_size": len(batch), "restarting": not self._stopping},
            exc_info=error,
        )
        reason = f"the batcher worker crashed ({type(error).__name__})"
        for item in batch:
            if not item.future.done():
                item.future.set_exception(engine_error(self.name, reason))
        if self._stopping or isinstance(error, KeyboardInterrupt | SystemExit):
            return
        self._schedule_restart(task.get_loop())

    def _schedule_restart(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        if now - self._last_crash > RESTART_STREAK_RESET_S:
            self._crash_streak = 0
        delay = (
            0.0
            if self._crash_streak == 0
            else min(RESTART_BACKOFF_S * 2 ** (self._crash_streak - 1), RESTART_BACKOFF_MAX_S)
        )
        self._crash_streak += 1
        self._last_crash = now
        self.restarts += 1
        if self.on_restart is not None:
            try:
                self.on_restart(self.name)
            except Exception:  # noqa: BLE001 - counting a restart must not prevent it
                logger.exception("batcher restart callback failed", extra={"model": self.name})
        self._restart_handle = loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        self._restart_handle = None
        if not self._stopping and self._worker is None:
            self._spawn()

    def _take_ready(self, batch: list[_Pending]) -> None:
        while len(batch) < self.max_batch_size and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.cancelled():
                batch.append(item)

    async def _collect(self, batch: list[_Pending]) -> None:
        """Fill ``batch`` in place, so a crash while collecting still knows who is waiting."""
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

    def _infer(self, images: npt.NDArray[np.float32]) -> tuple[Probabilities, float]:
        started = time.perf_counter()
        probabilities = self.engine.predict(images)
        return probabilities, (time.perf_counter() - started) * 1000.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch: list[_Pending] = []
            self._in_flight = batch
            await self._collect(batch)
            self._previous_batch = len(batch)
            try:
                await self._serve(loop, batch)
            except Exception as error:  # noqa: BLE001 - fail this batch alone, serve the next
                self._fail(batch, error)
            self._in_flight = []

    async def _serve(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        # One float32 array filled in place: a single copy from the decoded pixels.
        images = np.empty((len(batch), *batch[0].pixels.shape), np.float32)
        for index, item in enumerate(batch):
            images[index] = item.pixels
        traced = self.tracing.enabled
        engine_started_ns = time.time_ns() if traced else 0
        try:
            probabilities, latency_ms = await loop.run_in_executor(
                self.executor, self._infer, images
            )
            self._check_output(probabilities, len(batch))
        except Exception as error:
            if traced:
                self._trace(batch, engine_started_ns, error)
            raise
        if traced:
            # Before the answers: the spans end inside their requests' server spans.
            self._trace(batch, engine_started_ns, None)
        self._observe(len(batch), latency_ms)
        for index, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result(BatchResult(probabilities[index], latency_ms, len(batch)))

    def _trace(
        self, batch: list[_Pending], engine_started_ns: int, error: Exception | None
    ) -> None:
        try:
            call = EngineCall(
                self.name, self.engine.runtime, len(batch), engine_started_ns, time.time_ns(), error
            )
            self.tracing.record_batch(
                [item.trace for item in batch if item.trace is not None], call
            )
        except Exception:  # noqa: BLE001 - a tracing fault must not fail the answers
            logger.exception("recording the batch's spans failed", extra={"model": self.name})

    def _check_output(self, probabilities: Probabilities, batch_size: int) -> None:
        mismatch = describe_output_mismatch(np.shape(probabilities), batch_size, self.num_classes)
        if mismatch is not None:
            raise EngineOutputError(mismatch)

    def _observe(self, batch_size: int, latency_ms: float) -> None:
        if self.observe is None:
            return
        try:
            self.observe(self.name, batch_size, latency_ms)
        except Exception:  # noqa: BLE001 - a metrics fault must not fail answers already computed
            logger.exception("batch observer failed", extra={"model": self.name})

    def _fail(self, batch: list[_Pending], error: Exception) -> None:
        """Every waiter of ``batch`` still waiting gets a 500 ENGINE_ERROR; the cause is logged."""
        if isinstance(error, EngineOutputError):
            reason = str(error)
            logger.error(
                "engine answered the wrong shape",
                extra={"model": self.name, "batch_size": len(batch), "reason": reason},
            )
        else:
            # The type only: an engine's own message can hold server paths.
            reason = f"the batch of {len(batch)} failed with {type(error).__name__}"
            logger.error(
                "engine call failed",
                extra={"model": self.name, "batch_size": len(batch), "reason": reason},
                exc_info=error,
            )
        for item in batch:
            if not item.future.done():
                item.future.set_exception(engine_error(self.name, reason))
