"""Hostile comparison workloads against a running service, measuring what they cost /predict.

``predict_during_comparisons``: ``/predict`` latency with no comparison running, then while
clients keep asking for heavy comparisons. Each function takes the service's URL and returns
plain figures, so an adversarial runner can call it and compare the numbers to a bound.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

# Heavy but legal: the largest batch on every model, more rounds than any budget allows.
HEAVY_COMPARISON = {"repeats": "1000", "batch_size": "256", "warmup": "0"}


@dataclass(frozen=True)
class PredictLatency:
    """Client-side latency of sequential ``POST /predict`` calls, in milliseconds."""

    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_200: int

    @classmethod
    def from_samples(cls, samples_ms: list[float], non_200: int) -> PredictLatency:
        values = np.asarray(samples_ms or [0.0])
        p50, p99 = np.percentile(values, [50, 99])
        return cls(
            requests=len(samples_ms),
            p50_ms=round(float(p50), 2),
            p99_ms=round(float(p99), 2),
            max_ms=round(float(values.max()), 2),
            non_200=non_200,
        )


@dataclass(frozen=True)
class PredictDuringComparisons:
    """``/predict`` with the service idle and while comparisons run, side by side."""

    idle: PredictLatency
    during: PredictLatency
    compare_params: dict[str, str]
    compare_clients: int
    compare_statuses: dict[int, int] = field(default_factory=dict)

    @property
    def p50_ratio(self) -> float:
        return round(self.during.p50_ms / self.idle.p50_ms, 2) if self.idle.p50_ms else 0.0

    @property
    def p99_ratio(self) -> float:
        return round(self.during.p99_ms / self.idle.p99_ms, 2) if self.idle.p99_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "p50_ratio": self.p50_ratio, "p99_ratio": self.p99_ratio}


def sample_png(seed: int = 0) -> bytes:
    """A 32x32 RGB PNG of random pixels: what ``/predict`` takes without resizing."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _time_predicts(
    client: httpx.Client, url: str, image: bytes, requests: int, interval_s: float
) -> PredictLatency:
    samples: list[float] = []
    non_200 = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.post(
            f"{url}/predict", content=image, headers={"content-type": "image/png"}
        )
        samples.append((time.perf_counter() - started) * 1000.0)
        non_200 += response.status_code != 200
        time.sleep(interval_s)
    return PredictLatency.from_samples(samples, non_200)


def predict_during_comparisons(
    url: str,
    *,
    predicts: int = 100,
    compare_params: Mapping[str, str] | None = None,
    compare_clients: int = 1,
    interval_s: float = 0.01,
    settle_s: float = 0.5,
    compare_timeout_s: float = 60.0,
    image: bytes | None = None,
) -> PredictDuringComparisons:
    """``predicts`` sequential ``/predict`` calls idle, then as many while comparisons run.

    ``compare_clients`` threads each ask for ``GET /compare?compare_params`` (default: the
    heaviest legal comparison) again and again until the second series is done, then wait for
    their last answer (bounded by the service's compare budget, or ``compare_timeout_s``).
    ``settle_s`` lets the first comparison start before the second series begins.
    """
    body = image if image is not None else sample_png()
    params = dict(compare_params or HEAVY_COMPARISON)
    statuses: Counter[int] = Counter()
    done = threading.Event()

    def keep_comparing() -> None:
        with httpx.Client(timeout=compare_timeout_s) as client:
            while not done.is_set():
                try:
                    status = client.get(f"{url}/compare", params=params).status_code
                except httpx.HTTPError:
                    status = 0  # no answer: timed out or the connection failed
                statuses[status] += 1
                if status != 200:
                    time.sleep(0.05)  # a 503 comes back at once; do not spin on it

    with httpx.Client(timeout=30.0) as client:
        _time_predicts(client, url, body, min(5, predicts), interval_s)  # connection, caches
        idle = _time_predicts(client, url, body, predicts, interval_s)
        comparers = [threading.Thread(target=keep_comparing) for _ in range(compare_clients)]
        for thread in comparers:
            thread.start()
        try:
            time.sleep(settle_s)
            during = _time_predicts(client, url, body, predicts, interval_s)
        finally:
            done.set()
            for thread in comparers:
                thread.join(timeout=compare_timeout_s + 5)
    return PredictDuringComparisons(
        idle=idle,
        during=during,
        compare_params=params,
        compare_clients=compare_clients,
        compare_statuses=dict(statuses),
    )
