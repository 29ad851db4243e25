"""Classifying one upload: decode it, run it through the selected models, shape the answer.

Shared by the ``/predict`` routes and the raw-body fast path, so both answer alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.responses import Response
from starlette.types import Receive

from sepconv_contract.schemas import PredictResponse, PredictTiming
from service.core.decode_budget import DecodeBudget, Reservation, return_freed_memory
from service.core.decode_cost import open_steps
from service.core.imaging import (
    MAX_JPEG_SCANS,
    DecodedImage,
    OpenedImage,
    finish_decoding,
    open_image,
    preview_data_url,
)
from service.core.inference import InferenceService
from service.core.registry import ModelEntry
from service.errors import client_closed_request, image_too_costly
from service.process.tracing import DECODE, NO_TRACING, UPLOAD_BYTES, Tracing

# Small, simple files of small canvases decode in well under a millisecond: cheaper on the
# event loop than the hop to a worker thread. Anything else goes to a thread, judged by what it
# costs rather than its size alone: a small file may claim a large canvas (memory), hold
# hundreds of chunks or segments Pillow walks in Python (CPU), or both.
INLINE_UPLOAD_BYTES = 8 * 1024
INLINE_OPEN_STEPS = 16
INLINE_DECODE_PIXELS = 256 * 256
INLINE_DECODE_COST_BYTES = 8 * 1024 * 1024


async def decode_upload(
    data: bytes,
    max_pixels: int,
    budget: DecodeBudget | None = None,
    receive: Receive | None = None,
    *,
    tracing: Tracing = NO_TRACING,
) -> tuple[DecodedImage, float]:
    """The 32x32 model input of an upload, and the milliseconds decoding took.

    Off the event loop, a decode first reserves its estimated memory in ``budget`` (none: no
    limit); given the request's ASGI ``receive``, it stops being waited for (499) when the
    client hangs up. Either way its thread runs to the end, and the reservation is released
    when it does, not before. With ``tracing`` on, it is the request's ``decode`` span.
    """
    if not tracing.enabled:
        return await _decode(data, max_pixels, budget, receive)
    with tracing.span(DECODE, {UPLOAD_BYTES: len(data)}):
        return await _decode(data, max_pixels, budget, receive)


async def _decode(
    data: bytes, max_pixels: int, budget: DecodeBudget | None, receive: Receive | None
) -> tuple[DecodedImage, float]:
    started = time.perf_counter()
    max_scans = budget.max_jpeg_scans if budget is not None else MAX_JPEG_SCANS
    simple = len(data) <= INLINE_UPLOAD_BYTES and open_steps(data, INLINE_OPEN_STEPS) <= (
        INLINE_OPEN_STEPS
    )
    if simple:
        opened = open_image(data, max_pixels, max_scans)  # the header only
    else:
        opened = await asyncio.to_thread(open_image, data, max_pixels, max_scans)
    cost = opened.cost_bytes
    if simple and opened.pixels <= INLINE_DECODE_PIXELS and cost <= INLINE_DECODE_COST_BYTES:
        decoded = finish_decoding(opened)
    else:
        decoded = await _decode_off_loop(opened, cost, budget, receive)
    return decoded, (time.perf_counter() - started) * 1000.0


async def _decode_off_loop(
    opened: OpenedImage, cost: int, budget: DecodeBudget | None, receive: Receive | None
) -> DecodedImage:
    reservation: Reservation | None = None
    if budget is not None:
        if not budget.fits(cost):
            opened.image.close()
            info = opened.info
            raise image_too_costly(info.width, info.height, info.mode, cost, budget.memory_bytes)
        try:
            reservation = await budget.reserve(cost)
        except BaseException:
            opened.image.close()
            raise
    abandoned = threading.Event()
    decoding = asyncio.get_running_loop().run_in_executor(
        None, _decode_in_thread, opened, cost, abandoned
    )

    def finished(future: asyncio.Future[DecodedImage]) -> None:
        # On the event loop, once the thread has ended (never on cancellation: nothing cancels
        # this future), whether or not anyone still waits for it.
        if reservation is not None:
            reservation.release()
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not logged as lost

    decoding.add_done_callback(finished)
    waiting: list[asyncio.Future[Any]] = [decoding]
    watcher = asyncio.ensure_future(_client_gone(receive)) if receive is not None else None
    if watcher is not None:
        waiting.append(watcher)
    try:
        # ``wait`` never cancels what it waits for: a cancelled request leaves the decode to
        # finish (and release its reservation) on its own.
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        abandoned.set()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    if decoding not in done:
        abandoned.set()
        raise client_closed_request()
    return decoding.result()


def _decode_in_thread(opened: OpenedImage, cost: int, abandoned: threading.Event) -> DecodedImage:
    if abandoned.is_set():  # the client left while this waited for a thread
        opened.image.close()
        raise client_closed_request()
    try:
        return finish_decoding(opened)
    finally:
        return_freed_memory(cost)


async def _client_gone(receive: Receive) -> None:
    """Return when the client disconnects (the body is already read: nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def classify(
    inference: InferenceService,
    decoded: DecodedImage,
    decode_ms: float,
    entries: list[ModelEntry],
    top_k: int,
    preview: bool,
    started: float,
) -> PredictResponse:
    """The answer of every model in ``entries`` for one image (``started``: perf_counter)."""
    predictions = await inference.predict(decoded.pixels, entries, top_k)
    return PredictResponse(
        image=decoded.info,
        predictions=predictions,
        agreement=len({p.label for p in predictions}) == 1,
        timing_ms=PredictTiming(
            decode=round(decode_ms, 3), total=round((time.perf_counter() - started) * 1000.0, 3)
        ),
        preview=preview_data_url(decoded.pixels) if preview else None,
    )


def answer_response(answer: PredictResponse) -> Response:
    """The 200 answer: serialised once, here (handing FastAPI the object would validate it
    against the response model again), with the ``Server-Timing`` header."""
    return Response(
        answer.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers={"Server-Timing": server_timing(answer)},
    )


def server_timing(answer: PredictResponse) -> str:
    """The ``Server-Timing`` header: decoding and each model's engine call."""
    decode_ms = answer.timing_ms.decode
    return ", ".join(
        [f"decode;dur={decode_ms:.3f}"]
        + [
            f'{p.model};desc="{p.model} inference";dur={p.latency_ms:.3f}'
            for p in answer.predictions
        ]
    )
