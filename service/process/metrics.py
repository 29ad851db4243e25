"""Prometheus metrics of one app instance (its own registry, so test apps never collide).

With several server processes (``SEPCONV_WORKERS`` > 1) ``sepconv-serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; prometheus-client then keeps every value
in a file there, and any worker's ``/metrics`` answers the sum over all of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.process.fleet import worker_running

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ServiceMetrics:
    """Requests, latencies, batch sizes, queue depth and model facts."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        registry = self.registry
        by_model = ["model"]
        self.requests = Counter(
            "sepconv_requests", "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"], registry=registry
        )  # fmt: skip
        self.request_latency = Histogram(
            "sepconv_request_duration_seconds", "HTTP request latency by endpoint",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry
        )  # fmt: skip
        self.inference_latency = Histogram(
            "sepconv_inference_duration_seconds", "Engine call latency by model",
            by_model, buckets=LATENCY_BUCKETS, registry=registry
        )  # fmt: skip
        self.batch_size = Histogram(
            "sepconv_batch_size", "Images per engine call by model",
            by_model, buckets=BATCH_BUCKETS, registry=registry
        )  # fmt: skip
        # The multiprocess modes only apply with several workers: queues add up over the live
        # workers; model facts are the same in each, so the live maximum is the fact.
        self.queue_depth = Gauge(
            "sepconv_queue_depth", "Images waiting for an engine call by model",
            by_model, multiprocess_mode="livesum", registry=registry
        )  # fmt: skip
        self.rejected = Counter(
            "sepconv_overloaded", "Requests refused with 503 OVERLOADED by model",
            by_model, registry=registry
        )  # fmt: skip
        self.batcher_restarts = Counter(
            "sepconv_batcher_restarts", "Micro-batcher workers restarted after a crash, by model",
            by_model, registry=registry
        )  # fmt: skip
        self.model_info = Gauge(
            "sepconv_model_info", "1 for each known model, labelled with its facts",
            ["model", "version", "architecture", "runtime", "device", "status"],
            multiprocess_mode="livemax", registry=registry
        )  # fmt: skip
        self.model_parameters = Gauge(
            "sepconv_model_parameters", "Parameters by model",
            by_model, multiprocess_mode="livemax", registry=registry
        )  # fmt: skip
        # Each worker counts itself once its models are loaded: the sum is how many serve.
        self.workers = Gauge(
            "sepconv_workers", "Server processes serving the port, their models loaded",
            multiprocess_mode="livesum", registry=registry
        )  # fmt: skip
        self.engine_threads = Gauge(
            "sepconv_engine_threads", "Intra-op threads of each worker's engines",
            multiprocess_mode="livemax", registry=registry
        )  # fmt: skip

    def observe_batch(self, model: str, batch_size: int, latency_ms: float) -> None:
        self.inference_latency.labels(model).observe(latency_ms / 1000.0)
        self.batch_size.labels(model).observe(batch_size)

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's metrics, or every worker's, summed."""
        if not multiprocess_mode():
            return generate_latest(self.registry)
        forget_dead_workers(Path(os.environ[MULTIPROCESS_DIR_ENV]))
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    def close(self) -> None:
        """A worker that stops takes its live gauges out of the sums."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR_ENV))


def forget_dead_workers(folder: Path) -> None:
    """Drop the live gauges of workers that died without a clean shutdown (killed, OOM).

    A clean shutdown does it itself (``close``); a worker killed outright leaves its files,
    and its last queue depth would stay in the sum. Counters and histograms are kept: what a
    dead worker counted still happened.
    """
    pids = {int(match.group(1)) for match in map(_LIVE_GAUGE.match, os.listdir(folder)) if match}
    for pid in pids - {os.getpid()}:
        if not worker_running(pid):
            multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


_LIVE_GAUGE = re.compile(r"^gauge_live\w+_(\d+)\.db$")
