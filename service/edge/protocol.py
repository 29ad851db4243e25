"""uvicorn's httptools protocol with bounds on request heads and on open connections.

uvicorn keeps a request head however long it grows (httptools concatenates an unterminated
header line on every read) and for as long as its client takes, and accepts connections until
the process runs out of file descriptors. This protocol caps one head line and the whole head
(414 or 431), gives the head a deadline from the moment the connection opens or the previous
answer ends (408), refuses connections past a per-worker bound at once (503), answers
unparsable requests with a 400, all in the error envelope, and lets a pipelining client hang
up without an error logged for every answer it did not wait for.

uvicorn takes it as ``http=`` (see ``service.process.cli``): ``protocol_class(limits)`` is a
``functools.partial`` of a module-level class, so it pickles into uvicorn's worker processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from service.edge.envelope import (
    MEDIA_TYPE,
    encode_envelope,
    encode_protocol_error,
    speaks_protocol,
)
from service.errors import (
    ApiError,
    bad_request,
    head_timeout,
    header_too_large,
    too_many_connections,
    uri_too_long,
)

logger = logging.getLogger("sepconv.edge")


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds of one worker's connections, read from the settings."""

    max_header_bytes: int  # one line: the request line or one header field
    max_head_bytes: int  # the whole head, request line and every header
    head_timeout_s: float
    max_connections: int


def protocol_class(limits: ConnectionLimits) -> Callable[..., asyncio.Protocol]:
    """What uvicorn's ``http=`` option takes: the guarded protocol with these limits."""
    return functools.partial(GuardedHttpToolsProtocol, limits=limits)


class _HeadRefused(Exception):
    """Raised from a parser callback; httptools wraps it, ``data_received`` answers it."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose heads are capped and timed and whose connections are counted.

    Bytes are counted while a head is incomplete: every read from the one where the head begins
    (a read that also ends the previous request, when pipelining, is not counted, so a head may
    pass the cap by at most one read before it is refused). A head that completes within one
    read is measured exactly from what the parser collected.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.url = b""
        self._refused = False
        self._head_open = True
        self._head_bytes = 0
        self._line_bytes = 0
        # Requests finished so far: a read that finishes one ends with its body, not a head.
        self._completed = 0
        self._head_timer: TimerHandle | None = None
        self._refusal: ApiError | None = None
        self._running: RequestResponseCycle | None = None

    # Connections

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        if len(self.connections) >= self.limits.max_connections:
            # Refused before it holds anything: never in the server's set, so the connections
            # it would push out are served as before and shutdown has nothing to wait for.
            self._refused = True
            self.transport = transport
            self._answer_and_close(too_many_connections(self.limits.max_connections))
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._refused:
            return
        # uvicorn marks only the request parsed last as disconnected; the one being answered
        # and those queued behind it would then write to a closed transport and log a traceback.
        unanswered = [
            cycle
            for cycle in (self._running, *(queued for queued, _app in self.pipeline))
            if cycle is not None and not cycle.response_complete
        ]
        for cycle in unanswered:
            cycle.disconnected = True
            cycle.message_event.set()
        if self.pipeline:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            logger.info(
                "%s closed the connection with %d pipelined requests unanswered",
                client,
                len(unanswered),
            )
            self.pipeline.clear()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # Reading

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        completed = self._completed
        if self._head_open:
            self._head_bytes += len(data)
            # Also after a keep-alive answer: stray bytes (a lone CRLF) start the next head.
            self._arm_head_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refusal, self._refusal = self._refusal, None
            if refusal is None:
                refusal = bad_request(f"cannot parse the request: {exc}")
            self._answer_and_close(refusal)
            return
        if self._head_open and self._completed == completed:
            self._check_open_head(data)

    def _check_open_head(self, data: bytes) -> None:
        """Refuse a head that is still incomplete and already over a cap."""
        newline = data.rfind(b"\n")
        self._line_bytes = self._line_bytes + len(data) if newline < 0 else len(data) - newline - 1
        limits = self.limits
        if len(self.url) > limits.max_header_bytes:
            self._answer_and_close(uri_too_long(limits.max_header_bytes))
        elif self._line_bytes > limits.max_header_bytes:
            self._answer_and_close(header_too_large(limits.max_header_bytes, whole_head=False))
        elif self._head_bytes > limits.max_head_bytes:
            self._answer_and_close(header_too_large(limits.max_head_bytes, whole_head=True))

    # Parser callbacks

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_open = False
        # Only a head that came in more bytes than a line may hold can be over a cap.
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = self._measure_head()
            if self._refusal is not None:
                raise _HeadRefused
        super().on_headers_complete()

    def _measure_head(self) -> ApiError | None:
        limits = self.limits
        if len(self.url) > limits.max_header_bytes:
            return uri_too_long(limits.max_header_bytes)
        # ": " and CRLF around each field, as sent.
        lines = [len(name) + len(value) + 4 for name, value in self.headers]
        if lines and max(lines) > limits.max_header_bytes:
            return header_too_large(limits.max_header_bytes, whole_head=False)
        if len(self.url) + sum(lines) > limits.max_head_bytes:
            return header_too_large(limits.max_head_bytes, whole_head=True)
        return None

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._completed += 1
        self._head_open = True
        self._head_bytes = 0
        self._line_bytes = 0

    # The head deadline

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.head_timeout_s, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:
            # Nothing sent: nobody to tell (a browser's speculative connection, or an attack).
            self.transport.close()
            return
        self._answer_and_close(head_timeout(self.limits.head_timeout_s))

    # Answering

    def _answer_and_close(self, error: ApiError) -> None:
        """Write ``error`` in the envelope with ``Connection: close``, then close."""
        self._cancel_head_timer()
        # An id as the middleware gives one, so that a client quoting it can be found in the log.
        request_id = secrets.token_hex(16)
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        # The Open Inference Protocol's clients parse {"error": "<message>"} on its paths.
        body = (
            encode_protocol_error(error)
            if speaks_protocol(path)
            else encode_envelope(error, request_id)
        )
        content = [STATUS_LINE[error.status_code]]
        extra = error.headers or {}
        headers = [
            *self.server_state.default_headers,
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", request_id.encode()),
            *((name.lower().encode(), value.encode()) for name, value in extra.items()),
        ]
        for name, value in headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()
        # A connection flood would write one line per refused connection: those only at debug.
        level = logging.DEBUG if error.status_code == 503 else logging.INFO
        logger.log(
            level,
            "refused before the app: %d %s",
            error.status_code,
            error.code,
            extra={"request_id": request_id},
        )
