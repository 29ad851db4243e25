"""``POST /predict`` and ``POST /predict/batch``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service.deps import StateDep
from service.imaging import (
    DecodedImage,
    decode_image,
    finish_decoding,
    open_image,
    preview_data_url,
)
from service.schemas import BatchPredictResponse, ErrorResponse, PredictResponse, PredictTiming
from service.uploads import read_images, read_one_image

router = APIRouter(prefix="/predict", tags=["predict"])

ModelQuery = Annotated[str, Query(max_length=128, description="A model name, or 'all'")]
TopKQuery = Annotated[int, Query(ge=1, le=10, description="How many top classes to list")]
PreviewQuery = Annotated[bool, Query(description="Include the 32x32 input as a PNG data URL")]

_FILE_FIELD: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}},
    }
}
# The OpenAPI request bodies: routes read uploads themselves (to cap and time them).
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": _FILE_FIELD}}
}
_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": _FILE_FIELD,
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "INVALID_IMAGE, MISSING_FILE, TOO_MANY_FILES or INVALID_MULTIPART",
        404: "MODEL_NOT_FOUND",
        408: "REQUEST_TIMEOUT: the body did not arrive in time",
        413: "PAYLOAD_TOO_LARGE or IMAGE_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        422: "VALIDATION_ERROR",
        503: "OVERLOADED (with Retry-After) or NOT_READY",
    }.items()
}


# Small files of small canvases decode in well under a millisecond: cheaper on the event loop
# than the hop to a worker thread. Anything bigger goes to a thread: a small file may claim a
# large canvas, and a large one may hold thousands of chunks that Pillow walks in Python.
INLINE_DECODE_BYTES = 64 * 1024
INLINE_DECODE_PIXELS = 256 * 256


async def _decode(state: StateDep, data: bytes) -> tuple[DecodedImage, float]:
    started = time.perf_counter()
    max_pixels = state.settings.max_image_pixels
    if len(data) > INLINE_DECODE_BYTES:
        decoded = await asyncio.to_thread(decode_image, data, max_pixels)
    else:
        opened = open_image(data, max_pixels)  # the header only
        if opened.pixels <= INLINE_DECODE_PIXELS:
            decoded = finish_decoding(opened)
        else:
            decoded = await asyncio.to_thread(finish_decoding, opened)
    return decoded, (time.perf_counter() - started) * 1000.0


async def _answer(
    state: StateDep,
    decoded: DecodedImage,
    decode_ms: float,
    model: str,
    top_k: int,
    preview: bool,
    started: float,
) -> PredictResponse:
    entries = state.inference.select(model)
    predictions = await state.inference.predict(decoded.pixels, entries, top_k)
    return PredictResponse(
        image=decoded.info,
        predictions=predictions,
        agreement=len({p.label for p in predictions}) == 1,
        timing_ms=PredictTiming(
            decode=round(decode_ms, 3), total=round((time.perf_counter() - started) * 1000.0, 3)
        ),
        preview=preview_data_url(decoded.pixels) if preview else None,
    )


@router.post(
    "",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=_IMAGE_BODY,
)
async def predict(
    request: Request,
    state: StateDep,
    model: ModelQuery = "all",
    top_k: TopKQuery = 3,
    preview: PreviewQuery = False,
) -> Response:
    """Classify one image with every model (or one), side by side."""
    started = time.perf_counter()
    state.inference.select(model)  # an unknown model is a 404 before the upload is read
    data = await read_one_image(request)
    decoded, decode_ms = await _decode(state, data)
    answer = await _answer(state, decoded, decode_ms, model, top_k, preview, started)
    timings = [f"decode;dur={decode_ms:.3f}"] + [
        f'{p.model};desc="{p.model} inference";dur={p.latency_ms:.3f}' for p in answer.predictions
    ]
    # Serialised once here: handing FastAPI the object would validate it against the
    # response model again, a fixed cost on every request of the hot path.
    return Response(
        answer.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers={"Server-Timing": ", ".join(timings)},
    )


@router.post(
    "/batch",
    response_model=BatchPredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=_BATCH_BODY,
)
async def predict_batch(
    request: Request,
    state: StateDep,
    model: ModelQuery = "all",
    top_k: TopKQuery = 3,
    preview: PreviewQuery = False,
) -> BatchPredictResponse:
    """Classify 1-64 images (repeated multipart field ``files``), answers in upload order."""
    started = time.perf_counter()
    state.inference.select(model)
    limit = state.settings.max_batch_files
    images = await read_images(request, field="files", max_files=limit)
    decoded = [await _decode(state, data) for data in images]
    # A batch is taken whole or refused whole (503) before any of it is queued.
    state.inference.ensure_capacity(state.inference.select(model), len(decoded))
    # All images go to the batchers at once, so they share engine calls.
    results = await asyncio.gather(
        *(
            _answer(state, image, decode_ms, model, top_k, preview, started)
            for image, decode_ms in decoded
        )
    )
    return BatchPredictResponse(results=list(results), count=len(results))
