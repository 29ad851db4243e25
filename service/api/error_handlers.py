"""FastAPI's exception handlers: every error, FastAPI's own 404/405/422 included, as the envelope
(or, under ``/v2``, the Open Inference Protocol's ``{"error": "<message>"}``).

The errors themselves (one factory per code) are in ``service.errors``; this module only maps
what FastAPI and Starlette raise onto them and answers through ``service.edge.envelope``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.edge.envelope import error_response
from service.errors import (
    ApiError,
    client_closed_request,
    http_error,
    internal_error,
    validation_error,
)

logger = logging.getLogger("sepconv.errors")


def request_id_of(request: Request) -> str | None:
    """The id ``RequestContextMiddleware`` gave the request (None outside it, e.g. in a test)."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def _answer(request: Request, error: ApiError) -> Response:
    # The envelope, or the Open Inference Protocol's own shape under /v2.
    return error_response(error, request_id_of(request), path=request.scope["path"])


def _validation_message(error: RequestValidationError) -> str:
    # Say which parameter and why, but never echo the client's input back.
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{location or 'request'}: {item.get('msg', 'invalid value')}")
    return "invalid request parameters: " + "; ".join(parts)


def _http_message(request: Request, error: StarletteHTTPException) -> str:
    if error.status_code == 404:
        return f"no route for {request.method} {request.url.path[:200]}; see /docs"
    if error.status_code == 405:
        return f"method {request.method} is not allowed here; see /docs"
    return str(error.detail)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, FastAPI's own 404/405/422 included, through the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> Response:
        return _answer(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        return _answer(request, validation_error(_validation_message(error)))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = _http_message(request, error)
        return _answer(request, http_error(error.status_code, message, error.headers))

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnect(request: Request, error: ClientDisconnect) -> Response:
        # The client hung up mid-upload: no server error, and nobody reads this answer.
        logger.info("client disconnected mid-request", extra={"request_id": request_id_of(request)})
        return _answer(request, client_closed_request())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        logger.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return _answer(request, internal_error())
