"""``POST /predict`` and ``POST /predict/batch``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from sepconv_contract.schemas import BatchPredictResponse, PredictResponse
from service.api.deps import StateDep
from service.api.openapi import BATCH_BODY, ERRORS, IMAGE_BODY
from service.core.prediction import classify, decode_upload
from service.edge.one_image import answer_one_image
from service.edge.queries import MODEL, PREVIEW, RUNTIME, TOP_K, PredictQuery
from service.edge.uploads import read_images, read_one_image
from service.errors import ApiError, in_file

router = APIRouter(prefix="/predict", tags=["predict"])

# Built from the same specification as the fast path's parser, so both take the same queries.
ModelQuery = Annotated[str, Query(max_length=MODEL.max_length, description=MODEL.description)]
TopKQuery = Annotated[int, Query(ge=TOP_K.minimum, le=TOP_K.maximum, description=TOP_K.description)]
PreviewQuery = Annotated[bool, Query(description=PREVIEW.description)]
RuntimeQuery = Annotated[
    str, Query(pattern=f"{RUNTIME.pattern}|^$", description=RUNTIME.description)
]


async def predict_query(
    model: ModelQuery = MODEL.default,
    top_k: TopKQuery = TOP_K.default,
    preview: PreviewQuery = PREVIEW.default,
    runtime: RuntimeQuery = RUNTIME.default,
) -> PredictQuery:
    """The query both routes take, read once for either."""
    return PredictQuery(model, top_k, preview, runtime)


QueryDep = Annotated[PredictQuery, Depends(predict_query)]
# Both routes answer with None fields left out and document the same errors.
ROUTE_OPTIONS: dict[str, Any] = {"response_model_exclude_none": True, "responses": ERRORS}


@router.post("", response_model=PredictResponse, openapi_extra=IMAGE_BODY, **ROUTE_OPTIONS)
async def predict(request: Request, state: StateDep, query: QueryDep) -> Response:
    """Classify one image with every model (or one), side by side."""
    return await answer_one_image(state, query, lambda: read_one_image(request), request.receive)


@router.post(
    "/batch", response_model=BatchPredictResponse, openapi_extra=BATCH_BODY, **ROUTE_OPTIONS
)
async def predict_batch(request: Request, state: StateDep, query: QueryDep) -> BatchPredictResponse:
    """Classify 1-64 images (repeated multipart field ``files``), answers in upload order."""
    started = time.perf_counter()
    entries = state.inference.select(query.model, query.runtime)
    limit = state.settings.max_batch_files
    images = await read_images(request, field="files", max_files=limit)
    decoded = []
    for index, image in enumerate(images):
        try:
            decoded.append(
                await decode_upload(
                    image.data,
                    state.settings.max_image_pixels,
                    state.decode_budget,
                    request.receive,
                    tracing=state.inference.tracing,
                )
            )
        except ApiError as error:  # which of up to 64 files was bad, as the client named it
            raise in_file(error, index, image.name) from None
    # A batch is taken whole or refused whole (503) before any of it is queued.
    state.inference.ensure_capacity(entries, len(decoded))
    # All images go to the batchers at once, so they share engine calls.
    results = await asyncio.gather(
        *(
            classify(
                state.inference, image, decode_ms, entries, query.top_k, query.preview, started
            )
            for image, decode_ms in decoded
        )
    )
    return BatchPredictResponse(results=list(results), count=len(results))
