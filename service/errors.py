"""``ApiError`` and one factory per error code: what every layer raises for a non-2xx answer.

Each code is spelled here and nowhere else, with its status and a message that says what
happened, what was expected and how to fix it; callers name the situation, never the status.
How an error becomes a response lives elsewhere: the envelope encoder in
``service.edge.envelope`` and FastAPI's exception handlers in ``service.api.error_handlers``.
This module imports neither FastAPI nor Starlette, so the serving core can raise without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


# 4xx: the client's mistake, with what to send instead.


def invalid_image(message: str) -> ApiError:
    return ApiError(400, "INVALID_IMAGE", message)


def missing_file(message: str) -> ApiError:
    return ApiError(400, "MISSING_FILE", message)


def empty_body() -> ApiError:
    """A raw-body upload with no bytes: the same answer from the route and the fast path."""
    return missing_file("the request body is empty; send the image bytes")


def too_many_files(max_files: int) -> ApiError:
    if max_files == 1:
        return ApiError(
            400,
            "TOO_MANY_FILES",
            "this endpoint takes one image; use /predict/batch with field 'files'",
        )
    return ApiError(400, "TOO_MANY_FILES", f"at most {max_files} images per request")


def invalid_multipart(reason: str) -> ApiError:
    return ApiError(400, "INVALID_MULTIPART", f"cannot parse the multipart body: {reason[:200]}")


def model_not_found(name: str, available: list[str]) -> ApiError:
    shown = name if len(name) <= 64 and name.isprintable() else name[:64].encode().hex()
    return ApiError(
        404,
        "MODEL_NOT_FOUND",
        f"no model named {shown!r}; available: {', '.join(available) or 'none'} (or 'all')",
    )


def not_found(message: str) -> ApiError:
    """Nothing at this address: no route, or a model without the resource asked for."""
    return ApiError(404, "NOT_FOUND", message)


def request_timeout(timeout_s: float) -> ApiError:
    message = f"the request body did not arrive within {timeout_s:g} seconds"
    return ApiError(408, "REQUEST_TIMEOUT", message)


def runtime_unavailable(model: str, runtime: str, reason: str) -> ApiError:
    """``model`` has no engine on ``runtime``; ``reason`` names the failure, never a path."""
    fix = (
        "; export model.onnx with sepconv-export-onnx and install the onnx extra"
        if runtime == "onnxruntime"
        else ""
    )
    return ApiError(
        409, "RUNTIME_UNAVAILABLE", f"model {model!r} cannot run on {runtime} ({reason}){fix}"
    )


def runtime_not_loaded(runtime: str, loaded: Sequence[str], known: Sequence[str]) -> ApiError:
    """A comparison asked for a runtime the service did not load at start-up."""
    return ApiError(
        409,
        "RUNTIME_UNAVAILABLE",
        f"runtime {runtime} is not loaded for comparison (loaded: {', '.join(loaded)}); "
        f"set SEPCONV_COMPARE_RUNTIMES={','.join(known)} and restart the service",
    )


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


def image_header_too_large(limit_pixels: int) -> ApiError:
    """Pillow refused the header before its size was known (over twice its own limit)."""
    return ApiError(
        413,
        "IMAGE_TOO_LARGE",
        f"the image header claims a canvas over the limit of {limit_pixels} pixels; "
        "downscale it before sending",
    )


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UNSUPPORTED_MEDIA_TYPE", message)


def validation_error(message: str) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", message)


def client_closed_request() -> ApiError:
    # Nobody reads this answer; 499 is the status proxies log for a client that hung up.
    return ApiError(499, "CLIENT_CLOSED_REQUEST", "the client closed the connection mid-request")


# Starlette's own HTTP errors (no route, wrong method, ...), by status.
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def http_error(
    status_code: int, message: str, headers: Mapping[str, str] | None = None
) -> ApiError:
    """An error Starlette raised itself, under the code of its status (``HTTP_ERROR`` if none)."""
    code = _HTTP_CODES.get(status_code, "HTTP_ERROR")
    return ApiError(status_code, code, message, headers=dict(headers) if headers else None)


# 5xx: the server's side; 503s say when to retry.


def internal_error() -> ApiError:
    """A bug, not the client's mistake: the cause is logged, never answered."""
    return ApiError(500, "INTERNAL_ERROR", "the server failed to answer; the error was logged")


def engine_error(model: str, reason: str) -> ApiError:
    """A model's engine failed on a batch: a server fault, so the client can only retry."""
    return ApiError(
        500,
        "ENGINE_ERROR",
        f"model {model!r} failed to answer: {reason}; the failure was logged, "
        "retry or report it if it persists",
    )


def overloaded(retry_after_s: int = 1) -> ApiError:
    return ApiError(
        503,
        "OVERLOADED",
        "the inference queue is full; retry after the Retry-After delay",
        headers=_retry_after(retry_after_s),
    )


def not_ready(
    message: str, *, details: dict[str, Any] | None = None, retry_after_s: int = 1
) -> ApiError:
    """The service, or the model asked for, cannot answer yet (loading, failed, stopping)."""
    return ApiError(503, "NOT_READY", message, headers=_retry_after(retry_after_s), details=details)
