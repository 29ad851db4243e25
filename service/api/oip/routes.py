"""The Open Inference Protocol's REST routes (KServe v2), beside the service's own API.

Inference goes through the same registry, decode path and micro-batchers as ``/predict``: an
FP32 image and the same image sent to ``/predict`` ride the same engine calls. Errors answer
as ``{"error": "<message>"}`` with the service's usual statuses (``service.edge.envelope``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from fastapi import APIRouter, Request, Response

from sepconv_contract.limits import MIN_TOP_K
from service.api.deps import StateDep
from service.api.oip.codec import (
    BINARY_MEDIA_TYPE,
    HEADER_LENGTH,
    JSON_MEDIA_TYPE,
    inflate,
    join_body,
    split_body,
)
from service.api.oip.config import EXTENSIONS, model_metadata, triton_config, versions_of
from service.api.oip.errors import unknown_model, unknown_version
from service.api.oip.schemas import (
    InferRequest,
    InferResponse,
    ModelMetadataResponse,
    ModelReady,
    ProtocolError,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TritonModelConfig,
)
from service.api.oip.tensors import (
    ImageInput,
    OutputRequest,
    encode_probabilities,
    parse_request,
    read_image_input,
    read_output_request,
)
from service.core.batching import Pixels
from service.core.prediction import decode_upload
from service.core.registry import ModelEntry
from service.errors import not_ready
from service.process.settings import Settings
from service.process.state import ServiceState

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

# Larger bodies are inflated and parsed in a thread: a few megabytes of JSON numbers would
# hold the event loop for tens of milliseconds.
INLINE_BODY_BYTES = 64 * 1024


def _errors(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ProtocolError, "description": description}
        for status, description in descriptions.items()
    }


MODEL_ERRORS = _errors({404: "No such model, or no such version"})
READY_ERRORS = _errors({404: "No such model, or no such version", 503: "Not ready"})
INFER_ERRORS = _errors(
    {
        400: "Wrong tensor name, shape, datatype, element count or framing; too many images; "
        "an image that cannot be decoded",
        404: "No such model, or no such version",
        408: "The body did not arrive in time",
        413: "Body or image too large",
        415: "Unsupported Content-Encoding",
        422: "An image too complex to decode",
        503: "Not ready, or overloaded (with Retry-After)",
    }
)


def _entry(state: ServiceState, name: str, version: str | None = None) -> ModelEntry:
    entry = state.registry.get(name)
    if entry is None:
        raise unknown_model(name, state.registry.names)
    if version is not None and version not in versions_of(entry):
        raise unknown_version(name, version, entry.version)
    return entry


# Server


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    """The server's name, version and the protocol extensions it supports."""
    return ServerMetadata(
        name=request.app.title, version=request.app.version, extensions=EXTENSIONS
    )


@router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    """200 while the process runs."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=_errors({503: "Not ready"}))
async def server_ready(state: StateDep) -> ServerReady:
    """200 once the models are loaded and warmed, as ``/health/ready``; else 503."""
    if not state.shutting_down and state.registry.is_ready(state.settings.strict_readiness):
        return ServerReady(ready=True)
    if state.shutting_down:
        reason = "the service is shutting down"
    else:
        reason = "; ".join(
            f"{e.name}: {e.status}" + (f" ({e.error})" if e.error else "")
            for e in state.registry.entries()
        )
    raise not_ready(f"not ready: {reason or 'no models were found in the model directory'}")


# Models


@router.get("/models/{model_name}", response_model=ModelMetadataResponse, responses=MODEL_ERRORS)
async def get_model_metadata(model_name: str, state: StateDep) -> ModelMetadataResponse:
    """The model's input and output tensors (batch dimension -1) and its version."""
    return model_metadata(_entry(state, model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadataResponse,
    responses=MODEL_ERRORS,
)
async def get_version_metadata(
    model_name: str, model_version: str, state: StateDep
) -> ModelMetadataResponse:
    """The metadata of one version (the one served)."""
    return model_metadata(_entry(state, model_name, model_version))


def _ready(state: ServiceState, entry: ModelEntry) -> ModelReady:
    state.inference.select(entry.name)  # 503 while loading or failed
    return ModelReady(name=entry.name, ready=True)


@router.get("/models/{model_name}/ready", response_model=ModelReady, responses=READY_ERRORS)
async def model_ready(model_name: str, state: StateDep) -> ModelReady:
    """200 when the model can answer inference requests; else 503."""
    return _ready(state, _entry(state, model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReady,
    responses=READY_ERRORS,
)
async def version_ready(model_name: str, model_version: str, state: StateDep) -> ModelReady:
    """200 when this version can answer inference requests; else 503."""
    return _ready(state, _entry(state, model_name, model_version))


@router.get(
    "/models/{model_name}/config",
    response_model=TritonModelConfig,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
)
async def get_model_config(model_name: str, state: StateDep) -> TritonModelConfig:
    """Triton's model configuration: platform, max_batch_size, input and output dims."""
    return triton_config(_entry(state, model_name), state.settings)


@router.get(
    "/models/{model_name}/versions/{model_version}/config",
    response_model=TritonModelConfig,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
)
async def get_version_config(
    model_name: str, model_version: str, state: StateDep
) -> TritonModelConfig:
    """Triton's model configuration of one version."""
    return triton_config(_entry(state, model_name, model_version), state.settings)


# Inference


@dataclass(frozen=True)
class _Decoded:
    request: InferRequest
    images: ImageInput
    wanted: OutputRequest


def _decode_body(
    body: bytes, headers: Mapping[str, str], settings: Settings, num_classes: int
) -> _Decoded:
    data = inflate(body, headers.get("content-encoding"), settings.max_upload_bytes)
    header, binary = split_body(data, headers.get(HEADER_LENGTH))
    request = parse_request(header)
    images = read_image_input(request, binary, settings.max_batch_files)
    return _Decoded(request, images, read_output_request(request, num_classes))


async def _pixels_of(request: Request, state: ServiceState, images: ImageInput) -> list[Pixels]:
    if images.pixels is not None:
        # Float pixels go to the micro-batcher as they are: it copies each image into its
        # float32 batch, so they reach the engine unchanged, like /predict's decoded uint8.
        return [cast(Pixels, image) for image in images.pixels]
    settings = state.settings
    return [
        (
            await decode_upload(
                data,
                settings.max_image_pixels,
                state.decode_budget,
                request.receive,
                tracing=state.inference.tracing,
            )
        )[0].pixels
        for data in images.encoded or ()
    ]


async def _infer(request: Request, state: ServiceState, entry: ModelEntry) -> Response:
    entries = state.inference.select(entry.name)  # not ready: 503 before the upload
    body = await request.body()
    headers = request.headers
    decoded = (
        _decode_body(body, headers, state.settings, len(entry.classes))
        if len(body) <= INLINE_BODY_BYTES
        else await asyncio.to_thread(
            _decode_body, body, headers, state.settings, len(entry.classes)
        )
    )
    pixels = await _pixels_of(request, state, decoded.images)
    # Taken whole or refused whole (503) before any image is queued, as /predict/batch.
    state.inference.ensure_capacity(entries, len(pixels))
    answers = await asyncio.gather(
        *(state.inference.predict(image, entries, MIN_TOP_K) for image in pixels)
    )
    probabilities = np.array(
        [[answer[0].probabilities[label] for label in entry.classes] for answer in answers],
        dtype=np.float32,
    )
    output, data = encode_probabilities(probabilities, entry.classes, decoded.wanted)
    header = InferResponse(
        model_name=entry.name,
        model_version=str(entry.version) if entry.version is not None else None,
        id=decoded.request.id,
        outputs=[output],
    )
    content, header_length = join_body(
        header.model_dump_json(exclude_none=True).encode(), [data] if data is not None else []
    )
    if header_length is None:
        return Response(content, media_type=JSON_MEDIA_TYPE)
    return Response(
        content, media_type=BINARY_MEDIA_TYPE, headers={HEADER_LENGTH: str(header_length)}
    )


@router.post("/models/{model_name}/infer", response_model=InferResponse, responses=INFER_ERRORS)
async def infer(model_name: str, request: Request, state: StateDep) -> Response:
    """Classify ``image`` (FP32 pixels or BYTES files, JSON or binary) into ``probabilities``."""
    return await _infer(request, state, _entry(state, model_name))


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    response_model=InferResponse,
    responses=INFER_ERRORS,
)
async def infer_version(
    model_name: str, model_version: str, request: Request, state: StateDep
) -> Response:
    """Inference on one version (the one served)."""
    return await _infer(request, state, _entry(state, model_name, model_version))
