"""``MicroBatcher`` on a real TensorFlow engine, in plain ``asyncio.run`` tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.core.batching import BatchResult, MicroBatcher, QueueFull
from service.core.engines import TensorFlowEngine
from tests.helpers.batching import submit_together
from tests.helpers.images import sample_pixels

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def engine(exported_models: Path) -> TensorFlowEngine:
    return TensorFlowEngine(exported_models / "separable" / "1")


def images(count: int) -> list[np.ndarray]:
    return [sample_pixels(seed, width=32, height=32) for seed in range(count)]


def alone(engine: TensorFlowEngine, pixels: np.ndarray) -> np.ndarray:
    """The engine's answer for one image in a batch of its own."""
    return engine.predict(pixels[np.newaxis].astype(np.float32))[0]


async def wait_for_depth(batcher: MicroBatcher, depth: int) -> None:
    async def poll() -> None:
        while batcher.depth != depth:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout=10)


def test_batcher_concurrent_submits_share_engine_calls(engine: TensorFlowEngine) -> None:
    results, batches = submit_together(engine, images(16))

    assert len(results) == 16
    assert any(result.batch_size > 1 for result in results)
    assert all(result.batch_size <= 8 for result in results)
    assert sum(batches) == 16
    assert len(batches) < 16
    for pixels, result in zip(images(16), results, strict=True):
        assert result.latency_ms > 0
        np.testing.assert_allclose(result.probabilities, alone(engine, pixels), atol=TOLERANCE)


def test_batcher_lone_submit_runs_alone(engine: TensorFlowEngine) -> None:
    pixels = images(1)[0]

    async def run() -> BatchResult:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable", engine, executor, max_batch_size=8, batch_timeout_ms=5, max_queue=8
            )
            batcher.start()
            try:
                return await batcher.submit(pixels)
            finally:
                await batcher.stop()

    result = asyncio.run(run())

    assert result.batch_size == 1
    np.testing.assert_allclose(result.probabilities, alone(engine, pixels), atol=TOLERANCE)


def test_batcher_cancelled_submit_frees_its_slot(engine: TensorFlowEngine) -> None:
    first, later = images(2)
    batches: list[int] = []

    async def run() -> BatchResult:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable",
                engine,
                executor,
                max_batch_size=8,
                batch_timeout_ms=5,
                max_queue=1,
                observe=lambda name, size, latency_ms: batches.append(size),
            )
            # The worker is not started yet, so the submit waits in the queue.
            waiting = asyncio.create_task(batcher.submit(first))
            await wait_for_depth(batcher, 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            batcher.start()
            try:
                await wait_for_depth(batcher, 0)
                assert batches == []  # the engine never ran for the cancelled image
                return await asyncio.wait_for(batcher.submit(later), timeout=10)
            finally:
                await batcher.stop()

    result = asyncio.run(run())

    assert batches == [1]
    assert result.batch_size == 1
    np.testing.assert_allclose(result.probabilities, alone(engine, later), atol=TOLERANCE)


def test_batcher_queue_full_past_max_queue(engine: TensorFlowEngine) -> None:
    pixels = images(5)

    async def run() -> list[BatchResult]:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable", engine, executor, max_batch_size=8, batch_timeout_ms=5, max_queue=4
            )
            queued = [asyncio.create_task(batcher.submit(p)) for p in pixels[:4]]
            await wait_for_depth(batcher, 4)
            with pytest.raises(QueueFull):
                await batcher.submit(pixels[4])
            assert batcher.depth == 4
            batcher.start()
            try:
                return await asyncio.wait_for(asyncio.gather(*queued), timeout=10)
            finally:
                await batcher.stop()

    results = asyncio.run(run())

    assert [result.batch_size for result in results] == [4, 4, 4, 4]
    for image, result in zip(pixels, results, strict=False):
        np.testing.assert_allclose(result.probabilities, alone(engine, image), atol=TOLERANCE)


def test_batcher_malformed_image_fails_without_stopping_the_worker(
    engine: TensorFlowEngine,
) -> None:
    good = images(1)[0]
    malformed = np.zeros((32, 32, 4), np.uint8)

    async def run() -> BatchResult:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable", engine, executor, max_batch_size=8, batch_timeout_ms=5, max_queue=8
            )
            batcher.start()
            try:
                # Both land in one batch: np.stack of mismatched shapes raises ValueError.
                outcomes = await asyncio.wait_for(
                    asyncio.gather(
                        batcher.submit(good), batcher.submit(malformed), return_exceptions=True
                    ),
                    timeout=2,
                )
                assert any(isinstance(outcome, Exception) for outcome in outcomes)
                return await asyncio.wait_for(batcher.submit(good), timeout=2)
            finally:
                await batcher.stop()

    result = asyncio.run(run())

    np.testing.assert_allclose(result.probabilities, alone(engine, good), atol=TOLERANCE)
