"""Pure ASGI middleware: request ids, one log line per request, metrics, body size and deadline.

Pure ASGI rather than ``BaseHTTPMiddleware``: it wraps ``receive`` so a body is capped and timed
while it streams in (not only by its Content-Length), and it costs little per request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.edge.envelope import error_response
from service.errors import (
    ApiError,
    internal_error,
    payload_too_large,
    request_timeout,
    stopped_before_answer,
)
from service.process.metrics import ServiceMetrics

logger = logging.getLogger("sepconv.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIds:
    """Unique 32-hex-digit ids: a random prefix per process and a counter.

    As unique as ``uuid4().hex`` for this purpose, without a system call for 16 random bytes on
    every request.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF:012x}"


def _endpoint(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Give each request an id, cap and time its body, log it and count it."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int, body_timeout_s: float
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else self.request_ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False
        body_refused = False

        def refuse_body() -> None:
            nonlocal body_refused
            body_refused = True

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
                if body_refused and not any(k == b"connection" for k, _ in message["headers"]):
                    # The rest of the body was never read: close the connection instead of
                    # letting the server drain an oversized or endless body for keep-alive.
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._refuse(
                    send_with_id, payload_too_large(self.max_body_bytes), request_id, scope
                )
                return
            await self.app(scope, self._guarded_receive(receive, refuse_body), send_with_id)
        except ApiError as error:
            # Raised by the receive guard outside any route (e.g. while FastAPI reads a form
            # for validation): answer it here unless a response is already on its way.
            if response_started:
                raise
            await self._refuse(send_with_id, error, request_id, scope)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its graceful shutdown period
            # (SEPCONV_GRACEFUL_TIMEOUT_S) ends, and would answer them with a bare
            # "Internal Server Error". Nothing is wrong with such a request: tell its client
            # to retry, in the envelope, and let the task end as handled.
            if response_started:
                raise
            _uncancel()
            await self._refuse(send_with_id, stopped_before_answer(), request_id, scope)
        except Exception:
            # A bug, not a client's mistake. Answered here rather than by Starlette's outer
            # error layer so that the 500 carries X-Request-ID like every other answer.
            logger.exception("unhandled error", extra={"request_id": request_id})
            if response_started:
                raise
            await self._refuse(send_with_id, internal_error(), request_id, scope)
        finally:
            elapsed = time.perf_counter() - started
            endpoint = _endpoint(scope)
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.request_latency.labels(endpoint).observe(elapsed)
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"][:200],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )

    def _guarded_receive(self, receive: Receive, on_refused: Callable[[], None]) -> Receive:
        received = 0
        deadline = time.monotonic() + self.body_timeout_s

        async def guarded() -> Message:
            nonlocal received, deadline
            if deadline == float("inf"):
                return await receive()
            try:
                message = await _within(receive, max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                on_refused()
                raise request_timeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    on_refused()
                    raise payload_too_large(self.max_body_bytes)
                if not message.get("more_body", False):
                    # Once the body is complete the deadline no longer applies: later receive
                    # calls only wait for a disconnect.
                    deadline = float("inf")
            return message

        return guarded

    async def _refuse(self, send: Send, error: ApiError, request_id: str, scope: Scope) -> None:
        """Answer ``error`` in plain ASGI, outside any route, and close the connection."""
        # The body may be unread (too large, too slow, or a failure mid-stream): closing the
        # connection spares the server draining it for keep-alive.
        response = error_response(
            error, request_id, path=scope["path"], headers={"Connection": "close"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def _uncancel() -> None:
    """Mark this task's cancellation handled (3.11+), so an outer ``asyncio.timeout`` or
    ``TaskGroup`` does not take it for its own."""
    task = asyncio.current_task()
    if task is not None and sys.version_info >= (3, 11):
        task.uncancel()


async def _within(receive: Receive, seconds: float) -> Message:
    """``await receive()``, or ``asyncio.TimeoutError`` after ``seconds``.

    ``asyncio.timeout`` (3.11+) only arms a timer; ``wait_for`` wraps the call in a new task,
    a cost paid on every request of the hot path.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await receive()
    return await asyncio.wait_for(receive(), seconds)
