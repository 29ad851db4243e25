"""``/compare`` as a stream of progress: one JSON object a line (``application/x-ndjson``).

A client that asks for it (``Accept: application/x-ndjson``, or ``stream=true``) is told where
its comparison stands while it runs, not only at the end: ``queued`` while another comparison
holds the slot, ``started`` once this one has it, ``progress`` every ``PROGRESS_INTERVAL_S``
(rounds done, elapsed time), then one ``result`` (the plain answer's fields) or one ``error``
(the usual envelope). Mistakes found before the comparison is admitted (a bad query, a bad
image, a full queue) are still answered with their own status and the plain envelope.

Hanging up cancels: the response's task is cancelled, which sets the comparison's flag, and
the comparison stops at its next engine call and gives the slot up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from sepconv_contract.schemas import CompareResponse
from service.api.error_handlers import request_id_of
from service.core.comparison import ComparisonProgress
from service.edge.envelope import encode_envelope
from service.errors import ApiError, internal_error
from service.process.admission import Queued

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
# Often enough for a progress bar to move smoothly, rarely enough to cost nothing.
PROGRESS_INTERVAL_S = 0.25


class QueuedEvent(BaseModel):
    """Another comparison holds the slot; this one waits for it (sent again each interval)."""

    event: Literal["queued"] = "queued"
    waited_s: float
    running_ends_in_s: int
    wait_at_most_s: float


class StartedEvent(BaseModel):
    """This comparison holds the slot now, and what it will do."""

    event: Literal["started"] = "started"
    requested_repeats: int
    warmup: int
    batch_size: int
    budget_s: float


class ProgressEvent(BaseModel):
    """Rounds done so far (every model called once a round), each interval while it runs."""

    event: Literal["progress"] = "progress"
    phase: Literal["warmup", "timing"]
    warmup_done: int
    warmup: int
    rounds_done: int
    requested_repeats: int
    elapsed_s: float
    budget_s: float


@dataclass(frozen=True)
class StreamPlan:
    """What the comparison was asked to do: the ``started`` and ``progress`` lines say it."""

    requested_repeats: int
    warmup: int
    batch_size: int
    budget_s: float


@dataclass
class StreamHooks:
    """What the comparison tells the stream, and the flag the stream stops it with."""

    cancel: threading.Event = field(default_factory=threading.Event)
    queued: Queued | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    progress: ComparisonProgress | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)

    def on_queued(self, queued: Queued) -> None:
        self.queued, self.queued_at = queued, time.monotonic()
        self.decided.set()

    def on_started(self) -> None:
        self.started_at = time.monotonic()
        self.decided.set()

    def on_progress(self, progress: ComparisonProgress) -> None:
        # Called from the comparison's thread: one assignment, read whole by the loop.
        self.progress = progress


Comparison = Callable[[StreamHooks], Awaitable[CompareResponse]]
# The comparisons whose client hung up run on until their next engine call: held here so
# that the loop does not drop them meanwhile.
_finishing: set[asyncio.Task[CompareResponse]] = set()


def wants_stream(request: Request, stream: bool) -> bool:
    """Whether the client asked for progress lines rather than one answer at the end."""
    return stream or NDJSON in request.headers.get("accept", "").lower()


async def stream_comparison(
    request: Request, plan: StreamPlan, comparison: Comparison
) -> StreamingResponse:
    """Start ``comparison``; once it is queued or running, stream its progress lines.

    Raises the comparison's error instead when it fails before either (a full queue, a
    stopping service), so that the client gets its status, not a 200 with an error line.
    """
    hooks = StreamHooks()
    runner = asyncio.ensure_future(comparison(hooks))
    _finishing.add(runner)
    runner.add_done_callback(_forget)
    decided = asyncio.ensure_future(hooks.decided.wait())
    try:
        await asyncio.wait({runner, decided}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        decided.cancel()
    if runner.done() and not hooks.decided.is_set():
        runner.result()  # raises the comparison's error
    return StreamingResponse(
        _lines(request, plan, hooks, runner),
        media_type=NDJSON,
        # Proxies (nginx) buffer responses unless told not to, which would hold the lines back.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _lines(
    request: Request,
    plan: StreamPlan,
    hooks: StreamHooks,
    runner: asyncio.Future[CompareResponse],
) -> AsyncIterator[bytes]:
    announced = False
    try:
        while not runner.done():
            if hooks.started_at is None and hooks.queued is not None:
                yield _line(_queued(hooks))
            elif hooks.started_at is not None:
                if not announced:
                    announced = True
                    yield _line(StartedEvent(**asdict(plan)).model_dump())
                yield _line(_progress(plan, hooks))
            await asyncio.wait({runner}, timeout=PROGRESS_INTERVAL_S)
        if hooks.started_at is not None and not announced:
            # It started and finished within one interval: `started` still precedes the result.
            yield _line(StartedEvent(**asdict(plan)).model_dump())
        yield _line(_final(request, runner))
    finally:
        # Reached when the client hangs up too (the stream is cancelled): stop the work.
        hooks.cancel.set()


def _queued(hooks: StreamHooks) -> dict[str, Any]:
    assert hooks.queued is not None
    return QueuedEvent(
        waited_s=round(time.monotonic() - hooks.queued_at, 2),
        running_ends_in_s=hooks.queued.running_ends_in_s,
        wait_at_most_s=hooks.queued.wait_at_most_s,
    ).model_dump()


def _progress(plan: StreamPlan, hooks: StreamHooks) -> dict[str, Any]:
    assert hooks.started_at is not None
    progress = hooks.progress or ComparisonProgress(
        "warmup" if plan.warmup else "timing", warmup_done=0, rounds_done=0
    )
    return ProgressEvent(
        phase=progress.phase,
        warmup_done=progress.warmup_done,
        warmup=plan.warmup,
        rounds_done=progress.rounds_done,
        requested_repeats=plan.requested_repeats,
        elapsed_s=round(time.monotonic() - hooks.started_at, 2),
        budget_s=plan.budget_s,
    ).model_dump()


def _final(request: Request, runner: asyncio.Future[CompareResponse]) -> dict[str, Any]:
    error = runner.exception()
    if error is None:
        return {"event": "result", **runner.result().model_dump(mode="json")}
    if not isinstance(error, ApiError):
        logger.error(
            "comparison failed mid-stream",
            exc_info=error,
            extra={"request_id": request_id_of(request)},
        )
        error = internal_error()
    envelope: dict[str, Any] = json.loads(encode_envelope(error, request_id_of(request)))
    return {"event": "error", "status": error.status_code, **envelope}


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _forget(task: asyncio.Future[CompareResponse]) -> None:
    _finishing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Retrieved here, so that an abandoned comparison's 499 is not logged as unhandled.
        logger.debug("comparison ended: %s", task.exception())


def _event_schema(event: type[BaseModel]) -> dict[str, Any]:
    schema = event.model_json_schema()
    schema.pop("title", None)
    return schema


# The lines' schemas for the OpenAPI document (each a JSON object, one a line).
STREAM_RESPONSE: dict[str, Any] = {
    "description": "The comparison, as plain JSON (the default), or as progress lines "
    f"({NDJSON}) with `Accept: {NDJSON}` or `stream=true`: `queued` while another "
    f"comparison runs (every {PROGRESS_INTERVAL_S:g} s), `started`, `progress` every "
    f"{PROGRESS_INTERVAL_S:g} s, then one `result` (the JSON answer's fields) or one "
    "`error` (the error envelope and its `status`). Close the connection to cancel.",
    "content": {
        NDJSON: {
            "schema": {
                "oneOf": [
                    _event_schema(QueuedEvent),
                    _event_schema(StartedEvent),
                    _event_schema(ProgressEvent),
                    {
                        "allOf": [
                            {"$ref": "#/components/schemas/CompareResponse"},
                            {
                                "type": "object",
                                "required": ["event"],
                                "properties": {"event": {"const": "result"}},
                            },
                        ]
                    },
                    {
                        "allOf": [
                            {"$ref": "#/components/schemas/ErrorResponse"},
                            {
                                "type": "object",
                                "required": ["event", "status"],
                                "properties": {
                                    "event": {"const": "error"},
                                    "status": {"type": "integer"},
                                },
                            },
                        ]
                    },
                ]
            },
            "example": (
                '{"event":"started","requested_repeats":50,"warmup":5,"batch_size":1,'
                '"budget_s":30.0}\n'
                '{"event":"progress","phase":"timing","warmup_done":5,"warmup":5,'
                '"rounds_done":12,"requested_repeats":50,"elapsed_s":1.5,"budget_s":30.0}\n'
                '{"event":"result","repeats":50,"requested_repeats":50,"...":"..."}\n'
            ),
        }
    },
}
