"""``POST /predict`` and ``POST /predict/batch``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sepconv_contract.schemas import BatchPredictResponse, ErrorResponse, PredictResponse
from service.api.deps import StateDep
from service.core.prediction import answer_response, classify, decode_upload
from service.edge.uploads import read_images, read_one_image

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
    entries = state.inference.select(model)  # an unknown model is a 404 before the upload
    data = await read_one_image(request)
    decoded, decode_ms = await decode_upload(data, state.settings.max_image_pixels)
    answer = await classify(state.inference, decoded, decode_ms, entries, top_k, preview, started)
    return answer_response(answer)


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
    entries = state.inference.select(model)
    limit = state.settings.max_batch_files
    images = await read_images(request, field="files", max_files=limit)
    decoded = [await decode_upload(data, state.settings.max_image_pixels) for data in images]
    # A batch is taken whole or refused whole (503) before any of it is queued.
    state.inference.ensure_capacity(entries, len(decoded))
    # All images go to the batchers at once, so they share engine calls.
    results = await asyncio.gather(
        *(
            classify(state.inference, image, decode_ms, entries, top_k, preview, started)
            for image, decode_ms in decoded
        )
    )
    return BatchPredictResponse(results=list(results), count=len(results))
