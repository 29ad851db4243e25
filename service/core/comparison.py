"""A fair latency comparison: the models take turns (A, B, A, B, ...) on the same input.

Interleaving means drift in the machine's speed (thermal, other load) hits every model alike.
It runs directly on the engines, off the event loop, one comparison at a time.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from sepconv_contract.schemas import (
    CompareEntry,
    ComparePrediction,
    CompareResponse,
    CompareSummary,
    LatencyStats,
)
from service.core.engines import Engine
from service.core.registry import ModelEntry

SYNTHETIC_SEED = 20260101


def synthetic_image() -> npt.NDArray[np.uint8]:
    """A fixed 32x32 RGB input, the same on every call and machine."""
    return np.random.default_rng(SYNTHETIC_SEED).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def latency_stats(samples_ms: list[float]) -> LatencyStats:
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencyStats(
        mean=round(float(values.mean()), 4),
        std=round(float(values.std()), 4),
        min=round(float(values.min()), 4),
        p50=round(float(p50), 4),
        p95=round(float(p95), 4),
        p99=round(float(p99), 4),
        max=round(float(values.max()), 4),
    )


def _ratio(values: list[int | None]) -> float | None:
    known = [v for v in values if v]
    if len(known) < 2:
        return None
    return round(max(known) / min(known), 3)


def run_comparison(
    engines: list[tuple[ModelEntry, Engine]],
    image: npt.NDArray[np.uint8],
    *,
    repeats: int,
    batch_size: int,
    warmup: int,
    uploaded: bool,
    budget_s: float = float("inf"),
) -> CompareResponse:
    """Time every (model, runtime) ``repeats`` times, interleaved, on ``batch_size`` copies."""
    batch = np.repeat(image[np.newaxis].astype(np.float32), batch_size, axis=0)
    several_runtimes = len({engine.runtime for _, engine in engines}) > 1

    def key(entry: ModelEntry, engine: Engine) -> str:
        return f"{entry.name} ({engine.runtime})" if several_runtimes else entry.name

    for _ in range(warmup):
        for _, engine in engines:
            engine.predict(batch)
    samples: dict[str, list[float]] = {key(entry, engine): [] for entry, engine in engines}
    outputs: dict[str, npt.NDArray[np.float32]] = {}
    # A wall-time budget bounds one comparison (and so the wait of the next one in line):
    # 1000 rounds of batch 256 on the regular model would otherwise hold both cores for minutes.
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < repeats and (rounds == 0 or time.perf_counter() < deadline):
        for entry, engine in engines:
            started = time.perf_counter()
            outputs[key(entry, engine)] = engine.predict(batch)
            samples[key(entry, engine)].append((time.perf_counter() - started) * 1000.0)
        rounds += 1

    results: list[CompareEntry] = []
    for entry, engine in engines:
        stats = latency_stats(samples[key(entry, engine)])
        prediction = None
        if uploaded:
            probabilities = outputs[key(entry, engine)][0]
            best = int(np.argmax(probabilities))
            prediction = ComparePrediction(
                label=entry.classes[best], confidence=float(probabilities[best])
            )
        info = entry.info()
        results.append(
            CompareEntry(
                model=entry.name,
                runtime=engine.runtime,
                parameters=info.parameters,
                macs_per_image=info.macs_per_image,
                test_accuracy=info.test_accuracy,
                latency_ms=stats,
                images_per_second=round(batch_size * 1000.0 / stats.mean, 2) if stats.mean else 0.0,
                prediction=prediction,
            )
        )

    by_p50 = sorted(results, key=lambda r: r.latency_ms.p50)
    fastest, slowest = by_p50[0], by_p50[-1]
    labels = {r.prediction.label for r in results if r.prediction is not None}
    devices = sorted({engine.device for _, engine in engines})
    return CompareResponse(
        repeats=rounds,
        requested_repeats=repeats,
        batch_size=batch_size,
        warmup=warmup,
        device=", ".join(devices),
        input="upload" if uploaded else "synthetic",
        models=results,
        summary=CompareSummary(
            fastest=f"{fastest.model} ({fastest.runtime})" if several_runtimes else fastest.model,
            speedup=round(slowest.latency_ms.p50 / fastest.latency_ms.p50, 3)
            if fastest.latency_ms.p50
            else 1.0,
            parameter_ratio=_ratio([r.parameters for r in results]),
            mac_ratio=_ratio([r.macs_per_image for r in results]),
            agreement=(len(labels) == 1) if uploaded else None,
        ),
    )
