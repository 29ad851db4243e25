"""Classifying one upload: decode it, run it through the selected models, shape the answer.

Shared by the ``/predict`` routes and the raw-body fast path, so both answer alike.
"""

from __future__ import annotations

import asyncio
import time

from starlette.responses import Response

from sepconv_contract.schemas import PredictResponse, PredictTiming
from service.core.imaging import (
    DecodedImage,
    decode_image,
    finish_decoding,
    open_image,
    preview_data_url,
)
from service.core.inference import InferenceService
from service.core.registry import ModelEntry

# Small files of small canvases decode in well under a millisecond: cheaper on the event loop
# than the hop to a worker thread. Anything bigger goes to a thread: a small file may claim a
# large canvas, and a large one may hold thousands of chunks that Pillow walks in Python.
INLINE_DECODE_BYTES = 64 * 1024
INLINE_DECODE_PIXELS = 256 * 256


async def decode_upload(data: bytes, max_pixels: int) -> tuple[DecodedImage, float]:
    """The 32x32 model input of an upload, and the milliseconds decoding took."""
    started = time.perf_counter()
    if len(data) > INLINE_DECODE_BYTES:
        decoded = await asyncio.to_thread(decode_image, data, max_pixels)
    else:
        opened = open_image(data, max_pixels)  # the header only
        if opened.pixels <= INLINE_DECODE_PIXELS:
            decoded = finish_decoding(opened)
        else:
            decoded = await asyncio.to_thread(finish_decoding, opened)
    return decoded, (time.perf_counter() - started) * 1000.0


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
