"""Request and response bodies of the HTTP API (pydantic schemas, shared with the client).

"Model" in this project means a neural network, so these classes are schemas, never models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sepconv_contract.metadata import Interval, PairedComparison, ValidationSplitInfo


class Schema(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ImageInfo(Schema):
    format: str = Field(description="Pillow format name, e.g. JPEG or PNG")
    width: int
    height: int
    mode: str = Field(description="Pillow mode of the upload, before conversion to RGB")


class ClassProbability(Schema):
    label: str
    probability: float


class ModelPrediction(Schema):
    model: str
    label: str
    confidence: float
    top_k: list[ClassProbability]
    probabilities: dict[str, float]
    latency_ms: float = Field(description="Engine time of the batch this image ran in")
    batch_size: int = Field(1, description="Images in the engine call that served this image")


class PredictTiming(Schema):
    decode: float
    total: float


class PredictResponse(Schema):
    image: ImageInfo
    predictions: list[ModelPrediction]
    agreement: bool = Field(description="True when every model predicts the same label")
    timing_ms: PredictTiming
    preview: str | None = Field(
        None, description="With preview=true: the 32x32 RGB input the models saw, as a PNG data URL"
    )


class BatchPredictResponse(Schema):
    results: list[PredictResponse]
    count: int


class RuntimeAccuracy(Schema):
    """What one runtime's artifact of a model scored on the test split when it was exported
    (``metadata.json`` ``runtimes``): the accuracy this runtime serves, not the SavedModel's."""

    test_accuracy: float | None = None
    test_accuracy_interval: Interval | None = Field(
        None, description="95% Wilson interval of the test accuracy"
    )
    test_images: int | None = None
    agreement: float | None = Field(
        None,
        description="Share of the test images on which its top-1 class is the fp32 SavedModel's",
    )


class RuntimeInfo(RuntimeAccuracy):
    """One runtime's artifact of a model: its size, what it scores, and whether it is loaded."""

    runtime: str = Field(description="tensorflow, onnxruntime, onnxruntime-int8, litert, ...")
    file: str | None = Field(None, description="The artifact in the version folder")
    precision: Literal["float32", "int8"] | None = None
    size_bytes: int | None = None
    loaded: bool = Field(
        False, description="Loaded in this service: /predict?runtime= and /compare can use it"
    )
    error: str | None = Field(None, description="Why it failed to load, when it was asked for")


class ModelInfo(Schema):
    name: str
    version: int | None
    architecture: str | None
    parameters: int | None
    trainable_parameters: int | None
    macs_per_image: int | None
    size_bytes: int | None
    input_shape: list[int | None]
    classes: list[str]
    test_accuracy: float | None
    test_accuracy_interval: Interval | None = Field(
        None, description="95% Wilson interval of the test accuracy"
    )
    test_images: int | None = None
    validation: ValidationSplitInfo | None = Field(
        None, description="The validation split that chose the epoch (never the test split)"
    )
    validation_accuracy: float | None = Field(
        None, description="Accuracy on the validation split at the restored epoch"
    )
    paired: list[PairedComparison] | None = Field(
        None,
        description="This model against each other one on the same test images: discordant "
        "counts, McNemar's exact p-value and a 95% CI of the accuracy difference",
    )
    epochs: int | None
    device: str | None = Field(description="Where the model runs, e.g. CPU:0 or GPU:0")
    runtime: str
    status: Literal["loading", "ready", "failed"]
    error: str | None
    runtimes: list[RuntimeInfo] = Field(
        default_factory=list,
        description="One entry per runtime the model was exported for or the service loads",
    )


class ModelList(Schema):
    models: list[ModelInfo]
    count: int


class TrainingHistory(Schema):
    model: str
    epochs: list[dict[str, float]]


class LatencyStats(Schema):
    mean: float
    std: float
    min: float
    p50: float
    p95: float
    p99: float
    max: float


class ComparePrediction(Schema):
    label: str
    confidence: float


class CompareEntry(Schema):
    model: str
    runtime: str
    parameters: int | None
    macs_per_image: int | None
    test_accuracy: float | None = Field(
        description="The model's (fp32 SavedModel's) test accuracy; runtime_accuracy holds "
        "this runtime's own"
    )
    latency_ms: LatencyStats
    images_per_second: float = Field(description="Images per second at the p50 latency")
    prediction: ComparePrediction | None
    precision: Literal["float32", "int8"] | None = Field(
        None, description="The runtime's arithmetic: int8 for the -int8 runtimes"
    )
    runtime_accuracy: RuntimeAccuracy | None = Field(
        None,
        description="This runtime's artifact's test accuracy, interval and agreement with the "
        "fp32 SavedModel, as recorded at export; null when metadata.json has none for it",
    )
    speedup_over_tensorflow: float | None = Field(
        None,
        description="The same model's p50 on tensorflow divided by this one's (the 'x TF' "
        "ratio); null unless tensorflow was timed in this comparison",
    )


class CompareAccuracy(Schema):
    """What the fastest entry's speed costs in test accuracy, against the slowest entry."""

    model: str = Field(description="The fastest entry's model")
    versus: str = Field(description="The slowest entry's model, the one it is compared with")
    difference: float = Field(
        description="model's test accuracy minus versus's, a fraction (negative: less accurate)"
    )
    difference_interval: Interval | None = Field(
        None, description="Confidence interval of the difference (paired evaluations only)"
    )
    mcnemar_p: float | None = Field(
        None, description="McNemar's exact test on the same test images (paired evaluations only)"
    )
    test_images: int | None = Field(None, description="Test images both were evaluated on")


class CompareSummary(Schema):
    fastest: str
    speedup: float = Field(description="Slowest p50 latency divided by the fastest")
    parameter_ratio: float | None = Field(description="Most parameters divided by fewest")
    mac_ratio: float | None = Field(description="Most MACs per image divided by fewest")
    agreement: bool | None = Field(description="Whether all models agree (null for synthetic)")
    speedup_versus: str | None = Field(
        None, description="The slowest entry (by p50 latency): what speedup is measured against"
    )
    accuracy: CompareAccuracy | None = Field(
        None,
        description="The fastest model's test accuracy against the slowest's; null when their "
        "metadata has no test evaluation (or both are the same network)",
    )
    headline: str = Field(
        "", description="One sentence: the speed gain and, next to it, the accuracy cost"
    )


class SeparableSpeedup(Schema):
    """On one runtime: how much faster the separable network ran than the regular one, against
    the multiply-adds it saves. An efficiency of 1 would turn every saved MAC into time saved."""

    runtime: str
    precision: Literal["float32", "int8"] | None = None
    regular_model: str = Field(description="The regular network's model name")
    separable_model: str = Field(description="The separable network's model name")
    regular_p50_ms: float = Field(description="p50 latency per engine call")
    separable_p50_ms: float = Field(description="p50 latency per engine call")
    speedup: float | None = Field(
        description="regular_p50_ms / separable_p50_ms (null if a p50 rounds to 0 ms)"
    )
    throughput_ratio: float | None = Field(
        description="Separable images per second / regular images per second (both from the "
        "p50, so equal to speedup up to rounding)"
    )
    mac_ratio: float | None = Field(
        description="Regular multiply-adds per image / separable ones: the speed-up the "
        "arithmetic allows; null when either model's metadata lacks macs_per_image"
    )
    depthwise_efficiency: float | None = Field(
        description="speedup / mac_ratio: the share of the arithmetic's saving this runtime "
        "turns into time"
    )
    accuracy_difference: float | None = Field(
        None,
        description="Separable's test accuracy minus regular's on this runtime's artifacts "
        "(a fraction, unpaired); null unless both were recorded",
    )


class CompareMatrix(Schema):
    """The comparison as a runtime x model grid, and what separable convolutions buy on each
    runtime: ``models`` holds one entry per cell."""

    models: list[str] = Field(description="The models timed, in the answer's order")
    runtimes: list[str] = Field(description="The runtimes timed, in the answer's order")
    mac_ratio: float | None = Field(
        None, description="Regular multiply-adds per image / separable ones (about 8.35)"
    )
    separable_speedups: list[SeparableSpeedup] = Field(
        default_factory=list,
        description="One per runtime on which both the regular and the separable network "
        "were timed, in runtimes' order",
    )


class CompareResponse(Schema):
    repeats: int = Field(description="Rounds timed (fewer than requested if the budget ran out)")
    requested_repeats: int
    batch_size: int
    warmup: int
    device: str
    input: Literal["synthetic", "upload"]
    models: list[CompareEntry]
    summary: CompareSummary
    warmup_done: int | None = Field(
        None, description="Warm-up rounds run (fewer than requested if the budget ran out)"
    )
    stopped_at_budget: bool = Field(
        False,
        description="The wall-time budget (SEPCONV_COMPARE_BUDGET_S), which covers warm-up "
        "and every runtime, ran out before all the rounds asked for were done",
    )
    elapsed_s: float | None = Field(
        None, description="Wall time of the comparison, warm-up included, queueing excluded"
    )
    matrix: CompareMatrix | None = Field(
        None,
        description="The runtime x model grid and, per runtime, the separable network's "
        "speed-up over the regular one against its multiply-add ratio",
    )


class ModelHealth(Schema):
    status: Literal["loading", "ready", "failed"]
    device: str | None
    error: str | None


class ReadyResponse(Schema):
    status: Literal["ready"]
    models: dict[str, ModelHealth]
    versions_differ: dict[str, list[int]] | None = Field(
        None,
        description="With several workers: each model the workers serve at more than one "
        "version, with those versions (a SIGHUP rollout under way, or a respawned worker that "
        "could not load the version the others serve); null when they all agree",
    )


class LiveResponse(Schema):
    status: Literal["alive"]


class ErrorDetail(Schema):
    code: str
    message: str
    request_id: str | None
    details: dict[str, object] | None = None


class ErrorResponse(Schema):
    error: ErrorDetail
