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


def in_file(error: ApiError, index: int, name: str | None) -> ApiError:
    """``error``, about the ``index``-th file of a batch (from 0), named as the client named it."""
    label = f"file {index}" + (f" ({name!r})" if name else "")
    details = {**(error.details or {}), "file": {"index": index, "name": name}}
    return ApiError(
        error.status_code,
        error.code,
        f"{label}: {error.message}",
        headers=error.headers,
        details=details,
    )


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


def bad_request(message: str) -> ApiError:
    """A request the HTTP parser cannot read (uvicorn would answer it in plain text)."""
    return ApiError(400, "BAD_REQUEST", f"{message[:200]}; send a well-formed HTTP/1.1 request")


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


def head_timeout(timeout_s: float) -> ApiError:
    return ApiError(
        408,
        "REQUEST_TIMEOUT",
        f"the request line and headers did not arrive within {timeout_s:g} seconds "
        "(SEPCONV_HEAD_TIMEOUT_S); send the whole head at once",
    )


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
    """A request (a prediction or a comparison) asked for a runtime the service did not load
    at start-up."""
    return ApiError(
        409,
        "RUNTIME_UNAVAILABLE",
        f"runtime {runtime} is not loaded (loaded: {', '.join(loaded)}); add it to "
        f"SEPCONV_COMPARE_RUNTIMES (any of {', '.join(known)}) and restart the service",
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


def image_too_costly(
    width: int, height: int, mode: str, cost_bytes: int, budget_bytes: int
) -> ApiError:
    """Decoding the image alone would take more memory than this worker's whole decode budget."""
    return ApiError(
        413,
        "IMAGE_TOO_LARGE",
        f"decoding this {width}x{height} {mode} image would take about "
        f"{_mib(cost_bytes)} of memory, over the decode budget of {_mib(budget_bytes)} "
        "(SEPCONV_DECODE_MEMORY_BYTES); downscale it, or send it as 8-bit RGB JPEG or PNG",
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"


def uri_too_long(limit_bytes: int) -> ApiError:
    return ApiError(
        414,
        "URI_TOO_LONG",
        f"the request target exceeds the limit of {limit_bytes} bytes "
        "(SEPCONV_MAX_HEADER_BYTES); send long parameters in the body instead",
    )


def header_too_large(limit_bytes: int, *, whole_head: bool) -> ApiError:
    """One header line, or the whole head (request line and every header), is over its cap."""
    what, setting = (
        ("the request head", "SEPCONV_MAX_HEAD_BYTES")
        if whole_head
        else ("a header line", "SEPCONV_MAX_HEADER_BYTES")
    )
    return ApiError(
        431,
        "HEADER_FIELDS_TOO_LARGE",
        f"{what} exceeds the limit of {limit_bytes} bytes ({setting}); "
        "send fewer or shorter headers (large cookies?)",
    )


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UNSUPPORTED_MEDIA_TYPE", message)


def validation_error(message: str) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", message)


def image_too_complex(what: str, limit: int) -> ApiError:
    """A well-formed JPEG whose structure alone costs seconds to decode (thousands of scans)."""
    setting = " (SEPCONV_MAX_JPEG_SCANS)" if what == "scans" else ""
    return ApiError(
        422,
        "IMAGE_TOO_COMPLEX",
        f"the JPEG has more {what} than the limit of {limit}{setting}; "
        "re-encode it as a baseline JPEG or with a standard progressive script",
    )


def image_metadata_too_large(chunk_bytes: int, total_bytes: int) -> ApiError:
    """PNG text or ICC chunks that inflate past the limits: a decompression bomb in metadata."""
    return ApiError(
        422,
        "IMAGE_TOO_COMPLEX",
        f"the PNG's text or ICC profile chunks inflate to over {chunk_bytes // 1024} KiB each "
        f"or {total_bytes // 1024} KiB in all; strip the metadata (e.g. optipng -strip all) "
        "and send it again",
    )


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


def comparison_busy(retry_after_s: int, *, waited_s: float | None, waiting: int) -> ApiError:
    """Another comparison holds the server's one comparison slot (shared by every worker).

    ``waited_s``: how long this request queued for it; None when it could not queue because
    ``waiting`` requests, the most allowed, were queued already.
    """
    why = (
        f"did not finish within the {waited_s:g} seconds a request may wait for it"
        if waited_s is not None
        else f"{waiting} more are waiting for it, the most that may"
    )
    return ApiError(
        503,
        "OVERLOADED",
        "a comparison is already running (they run one at a time per server, so that they do "
        f"not time each other) and {why}; retry after {retry_after_s} seconds (Retry-After)",
        headers=_retry_after(retry_after_s),
    )


def decoders_busy(in_use_bytes: int, budget_bytes: int, retry_after_s: int = 1) -> ApiError:
    """The worker's decode memory budget stayed taken for the whole wait."""
    return ApiError(
        503,
        "OVERLOADED",
        f"the image decoders are busy ({_mib(in_use_bytes)} of the {_mib(budget_bytes)} "
        "decode budget in use); retry after the Retry-After delay",
        headers=_retry_after(retry_after_s),
    )


def too_many_connections(limit: int, retry_after_s: int = 1) -> ApiError:
    """This worker holds as many connections as it may (SEPCONV_MAX_CONNECTIONS)."""
    return ApiError(
        503,
        "OVERLOADED",
        f"the server holds its limit of {limit} open connections; retry after the "
        "Retry-After delay, and reuse one connection for several requests",
        headers=_retry_after(retry_after_s),
    )


def not_ready(
    message: str, *, details: dict[str, Any] | None = None, retry_after_s: int = 1
) -> ApiError:
    """The service, or the model asked for, cannot answer yet (loading, failed, stopping)."""
    return ApiError(503, "NOT_READY", message, headers=_retry_after(retry_after_s), details=details)


def stopped_before_answer() -> ApiError:
    """The server stopped (its graceful shutdown period ended) while this request still ran."""
    return not_ready(
        "the server stopped before this request finished: its graceful shutdown period "
        "ended; retry, and another instance, or this one restarted, will answer"
    )
