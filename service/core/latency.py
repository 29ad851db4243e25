"""Latency measurement shared by ``/compare`` and ``sepconv-bench``: one timing loop, one summary.

Both report the same statistics computed the same way, so a benchmark table and a comparison
on the web page can be read side by side.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sepconv_contract.schemas import LatencyStats

DECIMALS = 4


@dataclass(frozen=True)
class Rounds:
    """What one run of the timing loop did, and why it stopped where it did."""

    samples: list[list[float]]
    """Each call's milliseconds; every list has one value per complete timed round."""
    warmup_rounds: int
    """Untimed rounds completed before timing began."""
    stopped_at_budget: bool
    """The wall-time budget ran out before every warm-up and timed round was done."""
    cancelled: bool
    """The cancellation flag was set; the rounds done until then are kept."""
    elapsed_s: float
    """Wall time from the first warm-up call to the last timed one, rests included."""


def run_rounds(
    calls: Sequence[Callable[[], object]],
    *,
    max_rounds: int,
    budget_s: float = math.inf,
    min_rounds: int = 1,
    warmup_rounds: int = 0,
    cancel: threading.Event | None = None,
    duty: float = 1.0,
) -> Rounds:
    """Warm up, then time the calls taking turns (A, B, A, B, ...), round after round.

    ``budget_s`` covers everything, warm-up included: warm-up stops once it is spent, and the
    timed rounds stop after ``max_rounds`` or at the budget, whichever comes first, but never
    before ``min_rounds`` (a percentile of no samples means nothing). ``cancel``, checked
    between calls, stops the loop at once, ``min_rounds`` or not. With ``duty`` below 1 the
    loop rests after each call, so that it keeps the CPU at most that fraction of the time.
    """
    if not 0.0 < duty <= 1.0:
        raise ValueError(f"duty must be in (0, 1], got {duty}; 1 means never rest")
    stop = cancel or threading.Event()
    rest_per_busy_s = (1.0 - duty) / duty
    started = time.perf_counter()
    deadline = started + budget_s
    owed_rest_s = 0.0

    def timed(call: Callable[[], object]) -> float:
        """Rest what the previous call earned, then run this one: its busy seconds."""
        nonlocal owed_rest_s
        # Resting before a call, not after, leaves no rest at the end to delay the answer;
        # resting on the flag rather than in time.sleep lets a cancellation end it.
        rest_s = min(owed_rest_s, deadline - time.perf_counter())
        if rest_s > 0:
            stop.wait(rest_s)
        began = time.perf_counter()
        call()
        busy_s = time.perf_counter() - began
        owed_rest_s = busy_s * rest_per_busy_s
        return busy_s

    warmed = 0
    spent = False
    # A flag set mid-round ends the warm-up too, not only the round (it would spin otherwise).
    while warmed < warmup_rounds and not spent and not stop.is_set():
        for call in calls:
            if stop.is_set() or time.perf_counter() >= deadline:
                spent = not stop.is_set()
                break
            timed(call)
        else:
            warmed += 1

    samples: list[list[float]] = [[] for _ in calls]
    floor = min(min_rounds, max_rounds)
    rounds = 0
    while rounds < max_rounds and not stop.is_set():
        if rounds >= floor and time.perf_counter() >= deadline:
            spent = True
            break
        for call, timings in zip(calls, samples, strict=True):
            if stop.is_set():
                break
            timings.append(timed(call) * 1000.0)
        else:
            rounds += 1
    # A round cut short by cancellation would leave the calls with unequal counts.
    for timings in samples:
        del timings[rounds:]
    return Rounds(
        samples=samples,
        warmup_rounds=warmed,
        stopped_at_budget=spent,
        cancelled=stop.is_set(),
        elapsed_s=time.perf_counter() - started,
    )


def time_rounds(
    calls: Sequence[Callable[[], object]],
    *,
    max_rounds: int,
    budget_s: float = math.inf,
    min_rounds: int = 1,
    warmup_rounds: int = 0,
) -> list[list[float]]:
    """Each call's milliseconds, the calls taking turns, as :func:`run_rounds` times them.

    Stops after ``max_rounds`` rounds or once ``budget_s`` seconds (warm-up included) have
    passed, whichever comes first, but never before ``min_rounds``. Taking turns spreads drift
    in the machine's speed (thermal, other load) over every call alike.
    """
    return run_rounds(
        calls,
        max_rounds=max_rounds,
        budget_s=budget_s,
        min_rounds=min_rounds,
        warmup_rounds=warmup_rounds,
    ).samples


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
