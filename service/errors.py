"""The one error envelope every non-2xx answer uses: ``{"error": {code, message, request_id}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sepconv_contract.schemas import ErrorDetail, ErrorResponse

logger = logging.getLogger("sepconv.errors")


class ApiError(Exception):
    """An error answered to the client with a stable code; never carries a path or a trace."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def invalid_image(message: str) -> ApiError:
    return ApiError(400, "INVALID_IMAGE", message)


def missing_file(message: str) -> ApiError:
    return ApiError(400, "MISSING_FILE", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UNSUPPORTED_MEDIA_TYPE", message)


def payload_too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"request body exceeds the limit of {limit_bytes} bytes; send a smaller image",
    )


def image_too_large(width: int, height: int, limit_pixels: int) -> ApiError:
    return ApiError(
        413,
        "IMAGE_TOO_LARGE",
        f"image is {width}x{height} ({width * height} pixels), over the limit of "
        f"{limit_pixels} pixels; downscale it before sending",
    )


def model_not_found(name: str, available: list[str]) -> ApiError:
    shown = name if len(name) <= 64 and name.isprintable() else name[:64].encode().hex()
    return ApiError(
        404,
        "MODEL_NOT_FOUND",
        f"no model named {shown!r}; available: {', '.join(available) or 'none'} (or 'all')",
    )


def overloaded(retry_after_s: int = 1) -> ApiError:
    return ApiError(
        503,
        "OVERLOADED",
        "the inference queue is full; retry after the Retry-After delay",
        headers={"Retry-After": str(retry_after_s)},
    )


def request_id_of(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    return envelope(
        ApiError(status_code, code, message, headers=headers, details=details),
        request_id_of(request),
    )


def envelope(error: ApiError, request_id: str | None) -> JSONResponse:
    """The answer to ``error``: its status and headers, the envelope as the body."""
    body = ErrorResponse(
        error=ErrorDetail(
            code=error.code, message=error.message, request_id=request_id, details=error.details
        )
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=error.status_code, headers=error.headers
    )


_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _validation_message(error: RequestValidationError) -> str:
    # Say which parameter and why, but never echo the client's input back.
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{location or 'request'}: {item.get('msg', 'invalid value')}")
    return "invalid request parameters: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, FastAPI's own 404/405/422 included, through the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(
            request, error.status_code, error.code, error.message, error.headers, error.details
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "VALIDATION_ERROR", _validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "HTTP_ERROR")
        message = {
            404: f"no route for {request.method} {request.url.path[:200]}; see /docs",
            405: f"method {request.method} is not allowed here; see /docs",
        }.get(error.status_code, str(error.detail))
        return error_response(
            request, error.status_code, code, message, getattr(error, "headers", None)
        )

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnect(request: Request, error: ClientDisconnect) -> JSONResponse:
        # The client hung up mid-upload: no server error, and nobody reads this answer.
        # 499 is the status proxies log for it ("client closed request").
        logger.info("client disconnected mid-request", extra={"request_id": request_id_of(request)})
        return error_response(
            request, 499, "CLIENT_CLOSED_REQUEST", "the client closed the connection mid-request"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return error_response(
            request, 500, "INTERNAL_ERROR", "the server failed to answer; the error was logged"
        )
