"""A fair latency comparison: the models take turns (A, B, A, B, ...) on the same input.

Interleaving means drift in the machine's speed (thermal, other load) hits every model alike.
It runs directly on the engines, off the event loop, one comparison at a time. The summary puts
the accuracy the speed costs (from each model's evaluation metadata) next to the speed gain.

It shares the engines with ``/predict``, so it rests between calls (``SEPCONV_COMPARE_DUTY``,
0.5: as long as each call took). The bound that buys: ``/predict``'s median stays near its idle
value, and any one ``/predict`` waits at most about one comparison call longer than it would
(an engine call cannot be interrupted; ``sepconv_bench.comparison_attacks`` measures both).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from sepconv_contract import INPUT_SHAPE, Interval
from sepconv_contract.schemas import (
    CompareAccuracy,
    CompareEntry,
    ComparePrediction,
    CompareResponse,
    CompareSummary,
    SeparableSpeedup,
)
from service.core.engines import Engine, Probabilities
from service.core.latency import Rounds, images_per_second, latency_stats, run_rounds
from service.core.registry import ModelEntry
from service.core.runtime_matrix import (
    build_matrix,
    over_tensorflow,
    precision_of,
    runtime_accuracy,
)

SYNTHETIC_SEED = 20260101


class ComparisonCancelled(Exception):
    """The cancellation flag was set before the comparison finished: it has no answer."""


@dataclass(frozen=True)
class ComparisonProgress:
    """How far a running comparison has got, reported after each complete round."""

    phase: Literal["warmup", "timing"]
    warmup_done: int
    rounds_done: int


ProgressReport = Callable[[ComparisonProgress], None]


def synthetic_image() -> npt.NDArray[np.uint8]:
    """A fixed 32x32 RGB input, the same on every call and machine."""
    return np.random.default_rng(SYNTHETIC_SEED).integers(0, 256, INPUT_SHAPE, dtype=np.uint8)


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
    budget_s: float = math.inf,
    cancel: threading.Event | None = None,
    duty: float = 1.0,
    progress: ProgressReport | None = None,
) -> CompareResponse:
    """Time every (model, runtime) ``repeats`` times, interleaved, on ``batch_size`` copies.

    ``budget_s`` bounds the whole run, warm-up and every runtime included. ``cancel`` is
    checked between engine calls; once set, the run stops and raises ``ComparisonCancelled``.
    ``duty`` is the most of the wall time it keeps an engine busy (see ``run_rounds``).
    ``progress``, called from this thread after each complete round, sees how far it has got.
    """
    batch = np.repeat(image[np.newaxis].astype(np.float32), batch_size, axis=0)
    several_runtimes = len({engine.runtime for _, engine in engines}) > 1
    keys = [
        f"{entry.name} ({engine.runtime})" if several_runtimes else entry.name
        for entry, engine in engines
    ]
    outputs: dict[str, Probabilities] = {}

    def caller(key: str, engine: Engine) -> Callable[[], None]:
        def call() -> None:
            outputs[key] = engine.predict(batch)

        return call

    # A wall-time budget bounds one comparison (and so the wait of the next one in line):
    # 1000 rounds of batch 256 on the regular model would otherwise hold both cores for minutes.
    rounds = _timed_rounds(
        [caller(key, engine) for key, (_, engine) in zip(keys, engines, strict=True)],
        repeats=repeats,
        warmup=warmup,
        budget_s=budget_s,
        cancel=cancel or threading.Event(),
        duty=duty,
        progress=progress,
    )
    if rounds.cancelled:
        raise ComparisonCancelled(f"cancelled after {len(rounds.samples[0])} timed rounds")
    samples = rounds.samples

    results: list[CompareEntry] = []
    for key, (entry, engine), timings in zip(keys, engines, samples, strict=True):
        stats = latency_stats(timings)
        prediction = None
        if uploaded:
            probabilities = outputs[key][0]
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
                images_per_second=images_per_second(batch_size, stats),
                prediction=prediction,
                precision=precision_of(engine.runtime),
                runtime_accuracy=runtime_accuracy(entry, engine.runtime),
            )
        )
    results = over_tensorflow(results)

    order = sorted(range(len(results)), key=lambda i: results[i].latency_ms.p50)
    fastest, slowest = order[0], order[-1]
    fastest_p50, slowest_p50 = results[fastest].latency_ms.p50, results[slowest].latency_ms.p50
    speedup = round(slowest_p50 / fastest_p50, 3) if fastest_p50 else 1.0
    accuracy = accuracy_cost(engines[fastest][0], engines[slowest][0])
    labels = {r.prediction.label for r in results if r.prediction is not None}
    devices = sorted({engine.device for _, engine in engines})
    matrix = build_matrix([entry for entry, _ in engines], results)
    sentence = headline(
        keys[fastest],
        keys[slowest],
        speedup,
        accuracy,
        same_network=engines[fastest][0].name == engines[slowest][0].name,
        fastest_p50=fastest_p50,
    )
    if len(matrix.separable_speedups) > 1:
        # Across runtimes the fastest-against-slowest ratio mixes a runtime's gain with the
        # network's (it can pass the 8.35x the arithmetic allows): say the like-for-like range.
        entries = {entry.name: entry for entry, _ in engines}
        sentence = runtime_headline(matrix.separable_speedups, entries) or sentence
    return CompareResponse(
        repeats=len(samples[0]),
        requested_repeats=repeats,
        batch_size=batch_size,
        warmup=warmup,
        device=", ".join(devices),
        input="upload" if uploaded else "synthetic",
        models=results,
        warmup_done=rounds.warmup_rounds,
        stopped_at_budget=rounds.stopped_at_budget,
        elapsed_s=round(rounds.elapsed_s, 3),
        matrix=matrix,
        summary=CompareSummary(
            fastest=keys[fastest],
            speedup=speedup,
            speedup_versus=keys[slowest],
            parameter_ratio=_ratio([r.parameters for r in results]),
            mac_ratio=_ratio([r.macs_per_image for r in results]),
            agreement=(len(labels) == 1) if uploaded else None,
            accuracy=accuracy,
            headline=sentence,
        ),
    )


def _timed_rounds(
    calls: Sequence[Callable[[], None]],
    *,
    repeats: int,
    warmup: int,
    budget_s: float,
    cancel: threading.Event,
    duty: float,
    progress: ProgressReport | None,
) -> Rounds:
    """``run_rounds`` with a report after every round: warm-up and timing run as two loops,
    so that each report knows its phase even when the budget cuts the warm-up short."""
    started = time.perf_counter()
    phase: Literal["warmup", "timing"] = "warmup"
    done = {"warmup": 0, "timing": 0}
    calls_in_phase = 0
    last_busy_s = 0.0

    def reporting(call: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            nonlocal calls_in_phase, last_busy_s
            began = time.perf_counter()
            call()
            last_busy_s = time.perf_counter() - began
            calls_in_phase += 1
            if calls_in_phase % len(calls) == 0:
                done[phase] = calls_in_phase // len(calls)
                if progress is not None:
                    progress(ComparisonProgress(phase, done["warmup"], done["timing"]))

        return run

    wrapped = [reporting(call) for call in calls]
    warm = run_rounds(
        wrapped, max_rounds=0, budget_s=budget_s, warmup_rounds=warmup, cancel=cancel, duty=duty
    )
    phase, calls_in_phase = "timing", 0
    # The rest the last warm-up call earned, which the first loop leaves owed at its end.
    remaining_s = budget_s - (time.perf_counter() - started)
    if warm.warmup_rounds and not cancel.is_set():
        cancel.wait(max(0.0, min(last_busy_s * (1.0 - duty) / duty, remaining_s)))
    timed = run_rounds(
        wrapped,
        max_rounds=repeats,
        budget_s=max(0.0, budget_s - (time.perf_counter() - started)),
        cancel=cancel,
        duty=duty,
    )
    return Rounds(
        samples=timed.samples,
        warmup_rounds=warm.warmup_rounds,
        stopped_at_budget=warm.stopped_at_budget or timed.stopped_at_budget,
        cancelled=cancel.is_set(),
        elapsed_s=time.perf_counter() - started,
    )


def accuracy_cost(fastest: ModelEntry, slowest: ModelEntry) -> CompareAccuracy | None:
    """``fastest``'s test accuracy against ``slowest``'s, paired on the same images when the
    evaluation recorded it; None for one network, or when either lacks a test evaluation."""
    if fastest.name == slowest.name:
        return None
    # The evaluation may have recorded the pair from either side; from the slow side every
    # sign flips.
    for this, other, sign in ((fastest, slowest, 1.0), (slowest, fastest, -1.0)):
        paired = this.metadata.paired if this.metadata else None
        match = next((p for p in paired or [] if p.other == other.name), None)
        if match is None:
            continue
        interval = match.difference_interval
        if sign < 0:
            interval = interval.model_copy(update={"low": -interval.high, "high": -interval.low})
        return CompareAccuracy(
            model=fastest.name,
            versus=slowest.name,
            difference=sign * match.accuracy_difference,
            difference_interval=interval,
            mcnemar_p=match.mcnemar_p,
            test_images=match.images,
        )
    fast = fastest.metadata.test_accuracy if fastest.metadata else None
    slow = slowest.metadata.test_accuracy if slowest.metadata else None
    if fast is None or slow is None:
        return None
    return CompareAccuracy(model=fastest.name, versus=slowest.name, difference=fast - slow)


def headline(
    fastest: str,
    slowest: str,
    speedup: float,
    accuracy: CompareAccuracy | None,
    *,
    same_network: bool,
    fastest_p50: float,
) -> str:
    """One sentence: how much faster the fastest entry is, against what, at what accuracy."""
    if fastest == slowest:
        return f"{fastest} alone was timed: {fastest_p50:.2f} ms at p50 latency"
    speed = f"{fastest} is {speedup:.1f}x faster at p50 latency than {slowest}"
    if same_network:
        return f"{speed}: the same network on another runtime, so the same accuracy"
    if accuracy is None:
        return (
            f"{speed}; the accuracy difference is unknown "
            "(no test evaluation in the models' metadata)"
        )
    return f"{speed}, {_accuracy_phrase(accuracy)}"


def runtime_headline(
    speedups: Sequence[SeparableSpeedup], entries: Mapping[str, ModelEntry]
) -> str | None:
    """With both networks on several runtimes: the separable speed-up on the same runtime, from
    the least to the most, and the paired accuracy cost of the fp32 models beside it."""
    measured = sorted((row for row in speedups if row.speedup), key=lambda row: row.speedup or 0)
    if not measured:
        return None
    low, high = measured[0], measured[-1]
    separable, regular = high.separable_model, high.regular_model
    speed = (
        f"On the same runtime, {separable} is {low.speedup:.1f}x ({low.runtime}) to "
        f"{high.speedup:.1f}x ({high.runtime}) faster at p50 latency than {regular}"
    )
    accuracy = accuracy_cost(entries[separable], entries[regular])
    if accuracy is None:
        return f"{speed}; the accuracy difference is unknown"
    return f"{speed}; as fp32 models, {_accuracy_phrase(accuracy)}"


def _accuracy_phrase(accuracy: CompareAccuracy) -> str:
    """``1.6 points less accurate (95% CI 0.8 to 2.4, McNemar p = 0.0003)``."""
    points = accuracy.difference * 100.0
    less = points < 0
    if abs(points) < 0.05:
        text = "about as accurate"
    else:
        text = f"{abs(points):.1f} points {'less' if less else 'more'} accurate"
    details = []
    if accuracy.difference_interval is not None:
        details.append(_interval_phrase(accuracy.difference_interval, flip=less))
    if accuracy.mcnemar_p is not None:
        details.append(f"McNemar {_p_phrase(accuracy.mcnemar_p)}")
    else:
        details.append("unpaired test accuracies")
    return f"{text} ({', '.join(details)})"


def _interval_phrase(interval: Interval, *, flip: bool) -> str:
    # Stated in the sentence's own direction: "less accurate" reads the interval of the loss.
    low, high = (-interval.high, -interval.low) if flip else (interval.low, interval.high)
    return f"{interval.level:.0%} CI {low * 100:.1f} to {high * 100:.1f}"


def _p_phrase(p: float) -> str:
    if p < 0.0001:
        return "p < 0.0001"
    return f"p = {p:.1g}" if p < 0.01 else f"p = {p:.2f}"
