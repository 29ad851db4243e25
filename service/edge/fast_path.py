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
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from service.edge.content_types import is_raw_image, scope_media_type
from service.edge.envelope import envelope_response
from service.edge.one_image import answer_one_image
from service.edge.queries import MODEL, PREVIEW, RUNTIME, TOP_K, PredictQuery
from service.errors import ApiError, client_closed_request, empty_body
from service.process.state import ServiceState

logger = logging.getLogger("sepconv.errors")
PATH = "/predict"


@dataclass(frozen=True)
class _Route:
    """What the metrics label a request with (``RequestContextMiddleware`` reads ``path``)."""

    path: str


_PREDICT_ROUTE = _Route(PATH)


def parse_query(query_string: bytes) -> PredictQuery | None:
    """The query of a plain request, or None when FastAPI should judge it.

    Only unambiguous values are taken (``service.edge.queries`` says which): a repeated,
    over-long or unusual value is left to the route's own validation, so both paths accept and
    refuse exactly the same requests.
    """
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            return None
        seen[key] = value
    model = MODEL.read(seen.get(MODEL.name))
    top_k = TOP_K.read(seen.get(TOP_K.name))
    preview = PREVIEW.read(seen.get(PREVIEW.name))
    runtime = RUNTIME.read(seen.get(RUNTIME.name))
    if model is None or top_k is None or preview is None or runtime is None:
        return None
    return PredictQuery(model, top_k, preview, runtime)


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
            and is_raw_image(scope_media_type(scope))
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
            await envelope_response(error, request_id)(scope, receive, send)

    async def _predict(
        self, query: PredictQuery, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = await answer_one_image(self.state, query, lambda: _read_body(receive), receive)
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            logger.info("client disconnected mid-request")
            raise client_closed_request()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    data = b"".join(chunks)
    if not data:
        raise empty_body()
    return data
