"""A comparison as a runtime x model grid: what each runtime scores, and what separable
convolutions buy on it.

The separable network does about 8.35 times fewer multiply-adds per image than the regular
one, but a runtime turns that into time only as far as its depthwise kernels are as efficient
as its dense ones; the "depthwise efficiency" (achieved speed-up / MAC ratio) says how far.
Accuracies come from each artifact's evaluation at export (``metadata.json`` ``runtimes``),
never from the timing run, which sees one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sepconv_contract.schemas import CompareEntry, CompareMatrix, RuntimeAccuracy, SeparableSpeedup
from service.core.registry import ModelEntry

# The architectures' names (training.architectures.ARCHITECTURES), which the service cannot
# import without Keras.
REGULAR = "regular"
SEPARABLE = "separable"
# The reference every "x TF" ratio is measured against.
REFERENCE_RUNTIME = "tensorflow"

Precision = Literal["float32", "int8"]


def precision_of(runtime: str) -> Precision:
    """The arithmetic a runtime runs: every ``<library>-int8`` runtime is int8, the rest fp32."""
    return "int8" if runtime.endswith("-int8") else "float32"


def runtime_accuracy(entry: ModelEntry, runtime: str) -> RuntimeAccuracy | None:
    """What ``runtime``'s artifact of ``entry`` scored at export; None when nothing was recorded.

    The tensorflow runtime is the SavedModel itself, so its top-level test evaluation stands in
    when the export recorded no runtimes (models evaluated before runtimes were exported).
    """
    metadata = entry.metadata
    if metadata is None:
        return None
    artifact = (metadata.runtimes or {}).get(runtime)
    if artifact is not None and artifact.test_accuracy is not None:
        return RuntimeAccuracy(
            test_accuracy=artifact.test_accuracy,
            test_accuracy_interval=artifact.test_accuracy_interval,
            test_images=artifact.test_images,
            agreement=artifact.agreement,
        )
    if runtime == REFERENCE_RUNTIME and metadata.test_accuracy is not None:
        return RuntimeAccuracy(
            test_accuracy=metadata.test_accuracy,
            test_accuracy_interval=metadata.test_accuracy_interval,
            test_images=metadata.test_images,
        )
    return None


def architecture_of(entry: ModelEntry) -> str:
    """The network a model is (regular or separable), as its metadata says, else its name."""
    recorded = entry.metadata.architecture if entry.metadata else None
    return recorded or entry.name


def over_tensorflow(results: Sequence[CompareEntry]) -> list[CompareEntry]:
    """``results`` with each entry's "x TF" ratio: its model's tensorflow p50 over its own."""
    reference = {r.model: r.latency_ms.p50 for r in results if r.runtime == REFERENCE_RUNTIME}
    return [
        result.model_copy(
            update={
                "speedup_over_tensorflow": _ratio(reference[result.model], result.latency_ms.p50)
                if result.model in reference
                else None
            }
        )
        for result in results
    ]


def build_matrix(entries: Sequence[ModelEntry], results: Sequence[CompareEntry]) -> CompareMatrix:
    """The grid of ``results`` (``entries[i]`` is the model ``results[i]`` timed) and, for each
    runtime on which a regular and a separable network were both timed, the separable one's
    speed-up against its MAC ratio."""
    runtimes = list(dict.fromkeys(r.runtime for r in results))
    regular = _first(entries, results, REGULAR)
    separable = _first(entries, results, SEPARABLE)
    mac_ratio = None
    if regular and separable and regular.macs_per_image and separable.macs_per_image:
        mac_ratio = round(regular.macs_per_image / separable.macs_per_image, 3)
    speedups = []
    if regular and separable:
        cells = {(r.model, r.runtime): r for r in results}
        for runtime in runtimes:
            slow = cells.get((regular.model, runtime))
            fast = cells.get((separable.model, runtime))
            if slow is not None and fast is not None:
                speedups.append(_speedup(runtime, slow, fast, mac_ratio))
    return CompareMatrix(
        models=list(dict.fromkeys(r.model for r in results)),
        runtimes=runtimes,
        mac_ratio=mac_ratio,
        separable_speedups=speedups,
    )


def _first(
    entries: Sequence[ModelEntry], results: Sequence[CompareEntry], architecture: str
) -> CompareEntry | None:
    return next(
        (r for e, r in zip(entries, results, strict=True) if architecture_of(e) == architecture),
        None,
    )


def _speedup(
    runtime: str, regular: CompareEntry, separable: CompareEntry, mac_ratio: float | None
) -> SeparableSpeedup:
    speedup = _ratio(regular.latency_ms.p50, separable.latency_ms.p50)
    throughput = _ratio(separable.images_per_second, regular.images_per_second)
    # From the published, rounded figures, so that a reader can check the division.
    efficiency = round(speedup / mac_ratio, 3) if speedup and mac_ratio else None
    difference = None
    slow, fast = regular.runtime_accuracy, separable.runtime_accuracy
    if slow and fast and slow.test_accuracy is not None and fast.test_accuracy is not None:
        difference = round(fast.test_accuracy - slow.test_accuracy, 6)
    return SeparableSpeedup(
        runtime=runtime,
        precision=separable.precision,
        regular_model=regular.model,
        separable_model=separable.model,
        regular_p50_ms=regular.latency_ms.p50,
        separable_p50_ms=separable.latency_ms.p50,
        speedup=speedup,
        throughput_ratio=throughput,
        mac_ratio=mac_ratio,
        depthwise_efficiency=efficiency,
        accuracy_difference=difference,
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    # A p50 that rounds to 0 ms (images_per_second then says 0) has no meaningful ratio.
    return round(numerator / denominator, 3) if numerator and denominator else None
