"""Many images submitted at once to a real ``MicroBatcher``, as concurrent requests would."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from service.core.batching import BatchResult, MicroBatcher
from service.core.engines import Engine


def submit_together(
    engine: Engine, images: list[np.ndarray], **options: Any
) -> tuple[list[BatchResult], list[int]]:
    """Every image's result, in order, and the size of each engine call the batcher made.
    ``options`` go to ``MicroBatcher`` (by default batches of up to 8, a 5 ms wait)."""
    sizes: list[int] = []
    settings: dict[str, Any] = {"max_batch_size": 8, "batch_timeout_ms": 5, "max_queue": 64}
    settings.update(options)

    async def run() -> list[BatchResult]:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable",
                engine,
                executor,
                observe=lambda name, size, latency_ms: sizes.append(size),
                **settings,
            )
            batcher.start()
            try:
                return await asyncio.gather(*(batcher.submit(image) for image in images))
            finally:
                await batcher.stop()

    return asyncio.run(run()), sizes
