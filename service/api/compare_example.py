"""The OpenAPI example of a ``/compare`` answer: two networks on two runtimes, on an upload.

Its p50 latencies are the committed models' at batch 1 on a 2-vCPU AMD EPYC
(``docs/runtimes.md``, "Engine speed"), its accuracies their export's; the other percentiles
and the predictions are illustrative. The grid and the ratios are computed by the code that
computes a real answer's, so the example cannot drift from it. It is an upload's answer
because FastAPI drops every null from an example, and a synthetic answer's predictions are
null: a ``GET`` answers the same with ``input: synthetic`` and no predictions.
"""

from __future__ import annotations

from typing import Any

from sepconv_contract import Interval, ModelMetadata
from sepconv_contract.metadata import RuntimeArtifact
from sepconv_contract.schemas import (
    CompareEntry,
    ComparePrediction,
    CompareResponse,
    CompareSummary,
    LatencyStats,
)
from service.core.comparison import accuracy_cost, headline
from service.core.latency import images_per_second
from service.core.registry import ModelEntry
from service.core.runtime_matrix import (
    build_matrix,
    over_tensorflow,
    precision_of,
    runtime_accuracy,
)

RUNTIMES = ("tensorflow", "onnxruntime-int8")
# Each model's illustrative confidence in "cat", on each runtime in turn.
CONFIDENCE = {"regular": (0.81, 0.79), "separable": (0.74, 0.71)}
# model: (parameters, MACs per image, {runtime: (p50 ms, top-1, low, high, agreement)})
FIGURES: dict[str, tuple[int, int, dict[str, tuple[float, float, float, float, float]]]] = {
    "regular": (
        1_186_378,
        152_805_376,
        {
            "tensorflow": (5.21, 0.7323, 0.723534, 0.740888, 1.0),
            "onnxruntime-int8": (1.98, 0.7314, 0.722625, 0.739997, 0.9823),
        },
    ),
    "separable": (
        174_821,
        18_295_808,
        {
            "tensorflow": (2.27, 0.687, 0.677841, 0.696015, 1.0),
            "onnxruntime-int8": (0.57, 0.6881, 0.678949, 0.697106, 0.9709),
        },
    ),
}


def _entry(name: str) -> ModelEntry:
    parameters, macs, scores = FIGURES[name]
    artifacts = {
        runtime: RuntimeArtifact(
            file="saved_model.pb" if runtime == "tensorflow" else "model_int8.onnx",
            size_bytes=0,
            precision=precision_of(runtime),
            test_accuracy=top1,
            test_accuracy_interval=Interval(low=low, high=high, method="wilson"),
            test_images=10_000,
            agreement=agreement,
        )
        for runtime, (_, top1, low, high, agreement) in scores.items()
    }
    metadata = ModelMetadata(
        name=name,
        version=1,
        architecture=name,
        macs_per_image=macs,
        test_accuracy=scores["tensorflow"][1],
        runtimes=artifacts,
    )
    return ModelEntry(name, None, 1, "tensorflow", "ready", metadata=metadata)


def _stats(p50: float) -> LatencyStats:
    return LatencyStats(
        mean=round(p50 * 1.04, 3),
        std=round(p50 * 0.08, 3),
        min=round(p50 * 0.93, 3),
        p50=p50,
        p95=round(p50 * 1.18, 3),
        p99=round(p50 * 1.35, 3),
        max=round(p50 * 1.6, 3),
    )


def compare_example() -> dict[str, Any]:
    """A whole answer of ``POST /compare?runtimes=tensorflow,onnxruntime-int8``, as JSON."""
    entries = [_entry(name) for name in FIGURES for _ in RUNTIMES]
    results = []
    for entry, runtime in zip(entries, RUNTIMES * len(FIGURES), strict=True):
        parameters, macs, scores = FIGURES[entry.name]
        stats = _stats(scores[runtime][0])
        results.append(
            CompareEntry(
                model=entry.name,
                runtime=runtime,
                parameters=parameters,
                macs_per_image=macs,
                test_accuracy=scores["tensorflow"][1],
                latency_ms=stats,
                images_per_second=images_per_second(1, stats),
                prediction=ComparePrediction(
                    label="cat", confidence=CONFIDENCE[entry.name][RUNTIMES.index(runtime)]
                ),
                precision=precision_of(runtime),
                runtime_accuracy=runtime_accuracy(entry, runtime),
            )
        )
    results = over_tensorflow(results)
    # The fastest and the slowest cells, as run_comparison picks them.
    fastest = min(range(len(results)), key=lambda i: results[i].latency_ms.p50)
    slowest = max(range(len(results)), key=lambda i: results[i].latency_ms.p50)
    key = [f"{r.model} ({r.runtime})" for r in results]
    speedup = round(results[slowest].latency_ms.p50 / results[fastest].latency_ms.p50, 3)
    accuracy = accuracy_cost(entries[fastest], entries[slowest])
    answer = CompareResponse(
        repeats=50,
        requested_repeats=50,
        batch_size=1,
        warmup=5,
        device="CPU:0",
        input="upload",
        models=results,
        summary=CompareSummary(
            fastest=key[fastest],
            speedup=speedup,
            speedup_versus=key[slowest],
            parameter_ratio=round(FIGURES["regular"][0] / FIGURES["separable"][0], 3),
            mac_ratio=round(FIGURES["regular"][1] / FIGURES["separable"][1], 3),
            agreement=True,
            accuracy=accuracy,
            headline=headline(
                key[fastest],
                key[slowest],
                speedup,
                accuracy,
                same_network=False,
                fastest_p50=results[fastest].latency_ms.p50,
            ),
        ),
        warmup_done=5,
        elapsed_s=1.2,
        matrix=build_matrix(entries, results),
    )
    return answer.model_dump(mode="json")
