"""The error envelope's one encoder: ``{"error": {code, message, request_id, details?}}``.

Every non-2xx answer is written here, whoever answers it: FastAPI's exception handlers
(``service.api.error_handlers``), the raw-body fast path, and the request-context middleware,
which answers in plain ASGI outside any route. One encoder keeps their bodies byte-identical.

Under ``/v2`` (the Open Inference Protocol, ``service.api.oip``) the protocol fixes the error
body as ``{"error": "<message>"}``, the shape its clients (tritonclient, KServe) parse; the
request id still travels in ``X-Request-ID``. ``error_response`` picks the shape by path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

from sepconv_contract.schemas import ErrorDetail, ErrorResponse
from service.errors import ApiError

MEDIA_TYPE = "application/json"


def encode_envelope(error: ApiError, request_id: str | None) -> bytes:
    """The envelope of ``error`` as JSON bytes; absent fields (no id, no details) are left out."""
    body = ErrorResponse(
        error=ErrorDetail(
            code=error.code, message=error.message, request_id=request_id, details=error.details
        )
    )
    return body.model_dump_json(exclude_none=True).encode()


def envelope_response(
    error: ApiError, request_id: str | None, *, headers: Mapping[str, str] | None = None
) -> Response:
    """The answer to ``error``: its status, its headers and ``headers``, the envelope as body."""
    return Response(
        encode_envelope(error, request_id),
        status_code=error.status_code,
        headers={**(error.headers or {}), **(headers or {})},
        media_type=MEDIA_TYPE,
    )


# The Open Inference Protocol's paths: their errors take the protocol's shape.
PROTOCOL_PREFIX = "/v2"


def speaks_protocol(path: str) -> bool:
    """Whether ``path`` is one of the Open Inference Protocol's (``/v2`` and below)."""
    return path == PROTOCOL_PREFIX or path.startswith(PROTOCOL_PREFIX + "/")


def encode_protocol_error(error: ApiError) -> bytes:
    """The protocol's error body, ``{"error": "<message>"}``, as JSON bytes."""
    return json.dumps({"error": error.message}).encode()


def error_response(
    error: ApiError,
    request_id: str | None,
    *,
    path: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The answer to ``error`` on ``path``: the protocol's shape under /v2, else the envelope."""
    if not speaks_protocol(path):
        return envelope_response(error, request_id, headers=headers)
    return Response(
        encode_protocol_error(error),
        status_code=error.status_code,
        headers={**(error.headers or {}), **(headers or {})},
        media_type=MEDIA_TYPE,
    )
