"""Overload against a real uvicorn with a tiny queue: shed load with 503, never fall over.

A burst far above the queue's capacity gets only 200s and 503 OVERLOADED (with Retry-After):
no other 5xx and no dropped connections; accepted requests stay fast, the service is back to
normal right after, and clients that hang up mid-request leave no queue slot behind.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.process.settings import Settings
from tests.helpers.images import encode
from tests.helpers.servers import live_server

pytestmark = pytest.mark.network

MAX_QUEUE = 4
BURST = 200
IMAGE = encode(Image.new("RGB", (40, 36), (200, 120, 30)), "PNG")
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def base_url(exported_models: Path) -> Iterator[str]:
    settings = Settings(
        model_dir=exported_models, max_queue=MAX_QUEUE, max_batch_size=4, warmup_runs=1
    )
    with live_server(settings) as url:
        yield url


@dataclass(frozen=True)
class Outcome:
    status: int
    seconds: float
    code: str | None
    retry_after: str | None


async def _predict(client: httpx.AsyncClient) -> Outcome:
    started = time.perf_counter()
    response = await client.post("/predict", content=IMAGE, headers=PNG)
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    return Outcome(
        response.status_code,
        time.perf_counter() - started,
        code,
        response.headers.get("retry-after"),
    )


def _async_client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=BURST + 56, max_keepalive_connections=BURST + 56)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30)


async def _burst(base_url: str) -> list[Outcome]:
    async with _async_client(base_url) as client:
        return list(await asyncio.gather(*(_predict(client) for _ in range(BURST))))


def queue_depths(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        model: float(value)
        for model, value in re.findall(r'^sepconv_queue_depth\{model="(\w+)"\} (\S+)$', text, re.M)
    }


def test_burst_gets_only_200_or_503_overloaded(base_url: str) -> None:
    outcomes = asyncio.run(_burst(base_url))  # a transport error would raise here

    statuses = {outcome.status for outcome in outcomes}
    assert statuses <= {200, 503}, sorted(statuses)
    accepted = [o for o in outcomes if o.status == 200]
    shed = [o for o in outcomes if o.status == 503]
    assert accepted, "nothing was served"
    for outcome in shed:
        assert outcome.code == "OVERLOADED"
        assert outcome.retry_after is not None and int(outcome.retry_after) >= 1
    assert np.percentile([o.seconds for o in accepted], 99) < 10.0

    with httpx.Client(base_url=base_url, timeout=10) as client:
        started = time.perf_counter()
        response = client.post("/predict", content=IMAGE, headers=PNG)
        assert response.status_code == 200, response.text
        assert time.perf_counter() - started < 1.0
        metrics = client.get("/metrics").text
    shed_total = sum(
        float(v) for v in re.findall(r"^sepconv_overloaded_total\{[^}]*\} (\S+)$", metrics, re.M)
    )
    assert shed_total >= len(shed)


def test_batch_above_queue_capacity_is_shed_with_503(base_url: str) -> None:
    # Eight images submitted at once against a queue of four: refused, not queued unbounded.
    with httpx.Client(base_url=base_url, timeout=10) as client:
        files = [("files", ("image.png", IMAGE, "image/png"))] * (2 * MAX_QUEUE)
        response = client.post("/predict/batch", params={"model": "separable"}, files=files)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "OVERLOADED"
    assert int(response.headers["retry-after"]) >= 1


def predict_requests_seen(client: httpx.Client) -> float:
    """Every /predict request the server finished, whatever its status."""
    text = client.get("/metrics").text
    pattern = r'^sepconv_requests_total\{endpoint="/predict",method="POST",status="\d+"\} (\S+)$'
    return sum(float(count) for count in re.findall(pattern, text, re.M))


def test_clients_that_hang_up_free_their_queue_slots(base_url: str) -> None:
    async def hang_up_mid_request() -> int:
        """Send a burst, hang up on all but the first answer; return how many were answered."""
        async with _async_client(base_url) as client:
            tasks = [asyncio.create_task(_predict(client)) for _ in range(BURST)]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return len([task for task in tasks if not task.cancelled()])

    with httpx.Client(base_url=base_url, timeout=10) as client:
        seen_before = predict_requests_seen(client)
        answered = asyncio.run(hang_up_mid_request())
        assert answered < BURST, "every request finished before the client hung up"

        # The server finishes what it had started; then its queues are empty again.
        deadline = time.monotonic() + 10
        previous = -1.0
        while time.monotonic() < deadline:
            seen = predict_requests_seen(client) - seen_before
            if seen == previous and not any(queue_depths(client).values()):
                break
            previous = seen
            time.sleep(0.2)
        assert seen > answered, "no request was in flight when its client hung up"
        assert queue_depths(client) == {"regular": 0.0, "separable": 0.0}

        # A batch of exactly max_queue images fits only if no slot leaked.
        files = [("files", ("image.png", IMAGE, "image/png"))] * MAX_QUEUE
        response = client.post("/predict/batch", files=files)
        assert response.status_code == 200, response.text
        assert response.json()["count"] == MAX_QUEUE
        started = time.perf_counter()
        assert client.post("/predict", content=IMAGE, headers=PNG).status_code == 200
        assert time.perf_counter() - started < 1.0
