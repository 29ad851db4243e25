"""One image through ``/predict``: the same steps whichever way it came in (the multipart
route or the raw-body fast path), so the two cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive

from service.core.prediction import answer_response, classify, decode_upload
from service.edge.queries import PredictQuery
from service.process.state import ServiceState


async def answer_one_image(
    state: ServiceState,
    query: PredictQuery,
    read_image: Callable[[], Awaitable[bytes]],
    receive: Receive,
) -> Response:
    """The 200 answer for the image ``read_image`` returns; every failure is an ``ApiError``.

    The models are chosen first: an unknown model is 404 and a runtime it lacks 409 before any
    of the upload is read. ``receive`` lets a decode stop being waited for when the client
    hangs up.
    """
    started = time.perf_counter()
    entries = state.inference.select(query.model, query.runtime)
    data = await read_image()
    decoded, decode_ms = await decode_upload(
        data,
        state.settings.max_image_pixels,
        state.decode_budget,
        receive,
        tracing=state.inference.tracing,
    )
    answer = await classify(
        state.inference, decoded, decode_ms, entries, query.top_k, query.preview, started
    )
    return answer_response(answer)
