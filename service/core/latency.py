"""Latency measurement shared by ``/compare`` and ``sepconv-bench``: one timing loop, one summary.

Both report the same statistics computed the same way, so a benchmark table and a comparison
on the web page can be read side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from sepconv_contract.schemas import LatencyStats

DECIMALS = 4


def time_rounds(
    calls: Sequence[Callable[[], object]],
    *,
    max_rounds: int,
    budget_s: float = float("inf"),
    min_rounds: int = 1,
    warmup_rounds: int = 0,
) -> list[list[float]]:
    """Each call's milliseconds, the calls taking turns (A, B, A, B, ...), round after round.

    Stops after ``max_rounds`` rounds or once ``budget_s`` seconds have passed, whichever comes
    first, but never before ``min_rounds`` (a percentile of no samples means nothing). The
    ``warmup_rounds`` before are not timed. Taking turns spreads drift in the machine's speed
    (thermal, other load) over every call alike.
    """
    for _ in range(warmup_rounds):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    floor = min(min_rounds, max_rounds)
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < max_rounds and (rounds < floor or time.perf_counter() < deadline):
        for call, timings in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            timings.append((time.perf_counter() - started) * 1000.0)
        rounds += 1
    return samples


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Mean, spread and percentiles (numpy's linear interpolation) of at least one sample."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("latency_stats needs at least one sample; time at least one call")
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencyStats(
        mean=round(float(values.mean()), DECIMALS),
        std=round(float(values.std()), DECIMALS),
        min=round(float(values.min()), DECIMALS),
        p50=round(float(p50), DECIMALS),
        p95=round(float(p95), DECIMALS),
        p99=round(float(p99), DECIMALS),
        max=round(float(values.max()), DECIMALS),
    )


def images_per_second(batch_size: int, stats: LatencyStats) -> float:
    """Throughput at the median call: the statistic every speed ratio here is taken from."""
    return round(batch_size * 1000.0 / stats.p50, 2) if stats.p50 > 0 else 0.0
