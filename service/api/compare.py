"""``GET /compare`` (synthetic input) and ``POST /compare`` (an uploaded image).

A comparison holds the server's one comparison slot (``service.process.admission``) while a
thread times the engines; it stops between engine calls once its client hangs up or the
process stops, so an abandoned comparison neither holds the slot nor keeps the CPU. Asked with
``Accept: application/x-ndjson`` (or ``stream=true``), it answers progress lines as it goes
(``service.api.compare_stream``); otherwise one JSON answer at the end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import StreamingResponse

from sepconv_contract.schemas import CompareResponse
from service.api.compare_example import compare_example
from service.api.compare_stream import (
    STREAM_RESPONSE,
    StreamHooks,
    StreamPlan,
    stream_comparison,
    wants_stream,
)
from service.api.deps import StateDep
from service.api.openapi import ERRORS, UPLOAD_BODY, error_responses
from service.core.comparison import ComparisonCancelled, run_comparison, synthetic_image
from service.core.engines import RUNTIMES, Engine
from service.core.prediction import decode_upload
from service.core.registry import ModelEntry
from service.edge.uploads import read_one_image
from service.errors import (
    client_closed_request,
    not_ready,
    runtime_not_loaded,
    runtime_unavailable,
    validation_error,
)

router = APIRouter(prefix="/compare", tags=["compare"])

COMPARE_RESPONSES = {
    # The plain answer's schema is the response model's; its example shows a runtime matrix.
    200: {
        **STREAM_RESPONSE,
        "content": {
            "application/json": {"example": compare_example()},
            **STREAM_RESPONSE["content"],
        },
    },
    **ERRORS,
    **error_responses(
        {
            409: "RUNTIME_UNAVAILABLE: a runtime not loaded at start-up "
            "(SEPCONV_COMPARE_RUNTIMES), or a model without an engine on it",
            503: "OVERLOADED (with Retry-After): another comparison is running and this one "
            "could not wait for it; or NOT_READY",
        }
    ),
}
# How often the route looks for a client that hung up while the engines are being timed.
DISCONNECT_POLL_S = 0.1
# Every runtime the engines know, from the one list (longest first: onnxruntime-int8 before
# onnxruntime).
RUNTIME_NAMES = "(" + "|".join(sorted(RUNTIMES, key=len, reverse=True)) + ")"

RepeatsQuery = Annotated[int, Query(ge=1, le=1000, description="Timed calls per model")]
BatchQuery = Annotated[int, Query(ge=1, le=256, description="Images per engine call")]
WarmupQuery = Annotated[int, Query(ge=0, le=100, description="Untimed calls per model first")]
ModelsQuery = Annotated[
    str, Query(max_length=256, description="Comma-separated model names, or 'all'")
]
RuntimesQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        pattern=rf"^ *{RUNTIME_NAMES} *(, *{RUNTIME_NAMES} *)*$",
        description="Comma-separated runtimes: " + ", ".join(RUNTIMES) + " (default: the "
        "service's runtime); naming several puts each model's runtimes side by side, and the "
        "answer's matrix gives the separable network's speed-up on each. A runtime other than "
        "the service's must be loaded at start-up: SEPCONV_COMPARE_RUNTIMES",
        examples=["tensorflow", "onnxruntime", "tensorflow,onnxruntime-int8,litert-int8"],
    ),
]
StreamQuery = Annotated[
    bool,
    Query(
        description="Answer progress lines (application/x-ndjson) as the comparison runs, "
        "as Accept: application/x-ndjson does"
    ),
]


def _select(state: StateDep, models: str) -> list[ModelEntry]:
    names = [n.strip() for n in models.split(",") if n.strip()]
    if not names and models.strip():
        raise validation_error(
            "models names no model: expected comma-separated model names, or 'all'"
        )
    # Straight from the registry: /compare runs the engines itself, never the batchers.
    return state.registry.select(names)


def _runtimes(state: StateDep, runtimes: str | None) -> list[str]:
    if runtimes is None or not runtimes.strip():
        return [state.settings.runtime]
    chosen = list(dict.fromkeys(r.strip() for r in runtimes.split(",") if r.strip()))
    if not chosen:
        raise validation_error(f"runtimes names no runtime: expected {', '.join(RUNTIMES)}")
    unknown = [r for r in chosen if r not in RUNTIMES]
    if unknown:
        raise validation_error(
            f"unknown runtime {unknown[0][:40]!r}: expected {', '.join(RUNTIMES)}"
        )
    return chosen


def _engines(
    state: StateDep, entries: list[ModelEntry], runtimes: list[str]
) -> list[tuple[ModelEntry, Engine]]:
    """Each model's engine on each runtime, all loaded at start-up, or a 409."""
    configured = state.settings.compare_runtime_list
    missing = [r for r in runtimes if r not in configured]
    if missing:
        raise runtime_not_loaded(missing[0], configured, RUNTIMES)
    pairs = []
    for entry in entries:
        for runtime in runtimes:
            engine = state.registry.engine(entry, runtime)
            if engine is None:
                reason = entry.runtime_errors.get(runtime, "not loaded")
                raise runtime_unavailable(entry.name, runtime, reason)
            pairs.append((entry, engine))
    return pairs


@dataclass(frozen=True)
class CompareQuery:
    """What both comparison routes take: how long to time, on what, with which runtimes."""

    repeats: int
    batch_size: int
    warmup: int
    models: str
    runtimes: str | None
    stream: bool = False


async def compare_query(
    repeats: RepeatsQuery = 50,
    batch_size: BatchQuery = 1,
    warmup: WarmupQuery = 5,
    models: ModelsQuery = "all",
    runtimes: RuntimesQuery = None,
    stream: StreamQuery = False,
) -> CompareQuery:
    """The query of either route, read once for both."""
    return CompareQuery(repeats, batch_size, warmup, models, runtimes, stream)


QueryDep = Annotated[CompareQuery, Depends(compare_query)]


CompareAnswer = CompareResponse | StreamingResponse
Watch = Callable[[asyncio.Future[CompareResponse], threading.Event], Awaitable[CompareResponse]]


async def _compare(
    request: Request,
    state: StateDep,
    entries: list[ModelEntry],
    query: CompareQuery,
    image: npt.NDArray[np.uint8],
    *,
    uploaded: bool,
) -> CompareAnswer:
    pairs = _engines(state, entries, _runtimes(state, query.runtimes))
    run = partial(_time, state, pairs, query, image, uploaded=uploaded)
    if wants_stream(request, query.stream):
        plan = StreamPlan(
            requested_repeats=query.repeats,
            warmup=query.warmup,
            batch_size=query.batch_size,
            budget_s=state.settings.compare_budget_s,
        )
        # The stream's own cancellation (the client hanging up) sets the hooks' flag.
        return await stream_comparison(
            request, plan, lambda hooks: run(hooks.cancel, _until_done, hooks)
        )
    return await run(threading.Event(), partial(_unless_abandoned, request), None)


async def _time(
    state: StateDep,
    pairs: list[tuple[ModelEntry, Engine]],
    query: CompareQuery,
    image: npt.NDArray[np.uint8],
    cancel: threading.Event,
    watch: Watch,
    hooks: StreamHooks | None,
    *,
    uploaded: bool,
) -> CompareResponse:
    """Admit the comparison, run it in a thread, and answer it once ``watch`` has seen it end."""
    settings = state.settings
    # One comparison at a time per server: two at once would time each other, not the models.
    async with state.comparisons.admit(cancel, hooks.on_queued if hooks else None):
        if hooks is not None:
            hooks.on_started()
        work = asyncio.ensure_future(
            asyncio.to_thread(
                run_comparison,
                pairs,
                image,
                repeats=query.repeats,
                batch_size=query.batch_size,
                warmup=query.warmup,
                uploaded=uploaded,
                budget_s=settings.compare_budget_s,
                cancel=cancel,
                duty=settings.compare_duty,
                progress=hooks.on_progress if hooks else None,
            )
        )
        try:
            return await watch(work, cancel)
        except ComparisonCancelled:
            if state.comparisons.closed:
                raise not_ready("the service stopped this comparison on shutdown") from None
            raise client_closed_request() from None
        finally:
            # Also reached when this task is cancelled (uvicorn's graceful timeout): the thread
            # stops at its next engine call, and the slot is held until it has, so that the
            # next comparison never overlaps this one's last call.
            cancel.set()
            if not work.done():
                await asyncio.wait({work})


async def _until_done(
    work: asyncio.Future[CompareResponse], cancel: threading.Event
) -> CompareResponse:
    """``work``'s answer; the stream sets ``cancel`` itself when its client hangs up."""
    await asyncio.wait({work})
    return work.result()


async def _unless_abandoned(
    request: Request, work: asyncio.Future[CompareResponse], cancel: threading.Event
) -> CompareResponse:
    """``work``'s answer; a client that hangs up meanwhile sets ``cancel``, stopping it."""
    while not work.done():
        await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
        # uvicorn tells a route about a closed connection only through receive().
        if not work.done() and await request.is_disconnected():
            cancel.set()
    return work.result()


@router.get("", response_model=CompareResponse, responses=COMPARE_RESPONSES)
async def compare_synthetic(request: Request, state: StateDep, query: QueryDep) -> CompareAnswer:
    """Time the models side by side on a fixed synthetic image."""
    entries = _select(state, query.models)
    return await _compare(request, state, entries, query, synthetic_image(), uploaded=False)


@router.post(
    "", response_model=CompareResponse, responses=COMPARE_RESPONSES, openapi_extra=UPLOAD_BODY
)
async def compare_upload(request: Request, state: StateDep, query: QueryDep) -> CompareAnswer:
    """Time the models side by side on your image, with each model's prediction."""
    entries = _select(state, query.models)
    data = await read_one_image(request)
    decoded, _ = await decode_upload(
        data, state.settings.max_image_pixels, state.decode_budget, request.receive
    )
    return await _compare(request, state, entries, query, decoded.pixels, uploaded=True)
