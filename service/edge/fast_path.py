"""The hot path, answered in plain ASGI: ``POST /predict`` with a raw image body.

FastAPI's routing, dependency injection, query validation and request/response objects cost
about as much per request as decoding the image does; on 2 cores that Python time, not the
engine, is what limits served throughput. This middleware answers the common case itself,
through the same functions as the route (``service.core.prediction``) and the same error envelope.
Everything else goes on to FastAPI unchanged: multipart uploads, other routes, and any query
string it does not take at face value (FastAPI then answers it, 422 included).

It sits inside ``RequestContextMiddleware``, so request ids, body limits, metrics and the
access log apply to both paths alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.prediction import answer_response, classify, decode_upload
from service.edge.uploads import RAW_TYPES
from service.errors import ApiError, envelope, missing_file
from service.process.state import ServiceState

logger = logging.getLogger("sepconv.errors")
PATH = "/predict"
MAX_MODEL_NAME = 128
MAX_TOP_K = 10
_TRUE = frozenset({"true", "1", "yes", "on"})
_BOOLEAN = _TRUE | {"false", "0", "no", "off"}


@dataclass(frozen=True)
class PredictQuery:
    model: str = "all"
    top_k: int = 3
    preview: bool = False


@dataclass(frozen=True)
class _Route:
    """What the metrics label a request with (``RequestContextMiddleware`` reads ``path``)."""

    path: str


_PREDICT_ROUTE = _Route(PATH)


def parse_query(query_string: bytes) -> PredictQuery | None:
    """The query of a plain request, or None when FastAPI should judge it.

    Only unambiguous values are taken: a repeated, over-long or unusual value is left to the
    route's own validation, so both paths accept and refuse exactly the same requests.
    """
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            return None
        seen[key] = value
    model = seen.get("model", "all")
    if not model or len(model) > MAX_MODEL_NAME:
        return None
    top_k_text = seen.get("top_k", "3")
    # Two digits at most: "03" is 3 for both paths, and int() of thousands of digits raises.
    if not (top_k_text.isascii() and top_k_text.isdigit() and len(top_k_text) <= 2):
        return None
    if not 1 <= int(top_k_text) <= MAX_TOP_K:
        return None
    preview_text = seen.get("preview", "false").lower()
    if preview_text not in _BOOLEAN:
        return None
    return PredictQuery(model, int(top_k_text), preview_text in _TRUE)


def raw_content_type(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.decode("latin-1").split(";", 1)[0].strip().lower()
            return media.startswith(RAW_TYPES)
    return False


class FastPredictPath:
    """Answer raw-body ``POST /predict`` directly; pass every other request on."""

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = None
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
            and raw_content_type(scope)
        ):
            query = parse_query(scope["query_string"])
        if query is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _PREDICT_ROUTE
        try:
            await self._predict(query, scope, receive, send)
        except ApiError as error:
            request_id = scope.get("state", {}).get("request_id")
            await envelope(error, request_id)(scope, receive, send)

    async def _predict(
        self, query: PredictQuery, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        state = self.state
        entries = state.inference.select(query.model)  # an unknown model: 404 before the upload
        data = await _read_body(receive)
        decoded, decode_ms = await decode_upload(data, state.settings.max_image_pixels)
        answer = await classify(
            state.inference, decoded, decode_ms, entries, query.top_k, query.preview, started
        )
        await answer_response(answer)(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Nobody reads this answer; 499 is what proxies log for a client that hung up.
            logger.info("client disconnected mid-request")
            raise ApiError(
                499, "CLIENT_CLOSED_REQUEST", "the client closed the connection mid-request"
            )
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    data = b"".join(chunks)
    if not data:
        raise missing_file("the request body is empty; send the image bytes")
    return data
