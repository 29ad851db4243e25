"""What the protocol says about a model: its metadata, and Triton's model configuration.

Both are built from the contract (input and output names, the input shape) and the registry's
entry, so they describe exactly what ``/v2/models/{name}/infer`` takes and answers.
"""

from __future__ import annotations

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME
from service.api.oip.schemas import (
    ModelMetadataResponse,
    TensorMetadata,
    TritonDynamicBatching,
    TritonModelConfig,
    TritonTensorConfig,
)
from service.api.oip.tensors import FP32
from service.core.registry import ModelEntry
from service.process.settings import Settings

# Triton's names for the runtimes this service serves on: (platform, backend).
PLATFORMS = {
    "tensorflow": ("tensorflow_savedmodel", "tensorflow"),
    "onnxruntime": ("onnxruntime_onnx", "onnxruntime"),
}
# The protocol's extensions this server implements (GET /v2 lists them).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
# -1: any batch size, the protocol's spelling of the SavedModel's None.
ANY_BATCH = -1


def _platform(entry: ModelEntry) -> tuple[str, str]:
    return PLATFORMS.get(entry.runtime, (entry.runtime, entry.runtime))


def versions_of(entry: ModelEntry) -> list[str]:
    return [str(entry.version)] if entry.version is not None else []


def model_metadata(entry: ModelEntry) -> ModelMetadataResponse:
    """The tensors ``entry`` takes and answers, with the batch dimension as -1.

    ``image`` is also accepted as BYTES ``[N]`` (encoded files); the metadata names the
    model's own input, the pixels, which is what tritonclient and perf_analyzer build.
    """
    return ModelMetadataResponse(
        name=entry.name,
        versions=versions_of(entry),
        platform=_platform(entry)[0],
        inputs=[TensorMetadata(name=INPUT_NAME, datatype=FP32, shape=[ANY_BATCH, *INPUT_SHAPE])],
        outputs=[
            TensorMetadata(name=OUTPUT_NAME, datatype=FP32, shape=[ANY_BATCH, len(entry.classes)])
        ],
    )


def triton_config(entry: ModelEntry, settings: Settings) -> TritonModelConfig:
    """Triton's configuration of ``entry``: what perf_analyzer reads to build its requests."""
    platform, backend = _platform(entry)
    return TritonModelConfig(
        name=entry.name,
        platform=platform,
        backend=backend,
        # A request's limit, not the engine's batch: the micro-batcher splits and merges.
        max_batch_size=settings.max_batch_files,
        input=[
            TritonTensorConfig(
                name=INPUT_NAME, data_type="TYPE_FP32", dims=list(INPUT_SHAPE), format="FORMAT_NHWC"
            )
        ],
        output=[
            TritonTensorConfig(name=OUTPUT_NAME, data_type="TYPE_FP32", dims=[len(entry.classes)])
        ],
        version_policy=(
            {"specific": {"versions": [entry.version]}}
            if entry.version is not None
            else {"latest": {"num_versions": 1}}
        ),
        dynamic_batching=TritonDynamicBatching(
            max_queue_delay_microseconds=round(settings.batch_timeout_ms * 1000)
        ),
    )
