"""``POST /predict`` and ``POST /predict/batch``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from sepconv_contract.schemas import BatchPredictResponse, PredictResponse
from service.api.deps import StateDep

# Re-exported while compare.py still imports them from here; their home is service.api.openapi.
from service.api.openapi import BATCH_BODY, ERRORS, IMAGE_BODY
from service.core.prediction import answer_response, classify, decode_upload
from service.edge.queries import MODEL, PREVIEW, TOP_K
from service.edge.uploads import read_images, read_one_image

router = APIRouter(prefix="/predict", tags=["predict"])

# Built from the same specification as the fast path's parser, so both take the same queries.
ModelQuery = Annotated[str, Query(max_length=MODEL.max_length, description=MODEL.description)]
TopKQuery = Annotated[int, Query(ge=TOP_K.minimum, le=TOP_K.maximum, description=TOP_K.description)]
PreviewQuery = Annotated[bool, Query(description=PREVIEW.description)]


@router.post(
    "",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=IMAGE_BODY,
)
async def predict(
    request: Request,
    state: StateDep,
    model: ModelQuery = MODEL.default,
    top_k: TopKQuery = TOP_K.default,
    preview: PreviewQuery = PREVIEW.default,
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
    openapi_extra=BATCH_BODY,
)
async def predict_batch(
    request: Request,
    state: StateDep,
    model: ModelQuery = MODEL.default,
    top_k: TopKQuery = TOP_K.default,
    preview: PreviewQuery = PREVIEW.default,
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
