"""The error envelope's one encoder: ``{"error": {code, message, request_id, details?}}``.

Every non-2xx answer is written here, whoever answers it: FastAPI's exception handlers
(``service.api.error_handlers``), the raw-body fast path, and the request-context middleware,
which answers in plain ASGI outside any route. One encoder keeps their bodies byte-identical.
"""

from __future__ import annotations

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
