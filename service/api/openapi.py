"""The OpenAPI fragments the routers share: documented error answers and upload bodies.

The routes read their uploads themselves (so the edge can cap and time them), which leaves
FastAPI nothing to infer the request body from; these fragments document it instead. Every
error answer is the envelope (``ErrorResponse``), whatever its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sepconv_contract.schemas import ErrorResponse
from service.process.settings import Settings

OpenApiResponses = dict[int | str, dict[str, Any]]


def error_responses(descriptions: Mapping[int, str]) -> OpenApiResponses:
    """``responses=`` for a route: each status documented as the envelope, its codes named."""
    return {
        status: {"model": ErrorResponse, "description": description}
        for status, description in descriptions.items()
    }


# Every error an upload route can answer (/predict, /predict/batch, /compare).
ERRORS = error_responses(
    {
        400: "INVALID_IMAGE, MISSING_FILE, TOO_MANY_FILES or INVALID_MULTIPART",
        404: "MODEL_NOT_FOUND",
        408: "REQUEST_TIMEOUT: the body did not arrive in time",
        413: "PAYLOAD_TOO_LARGE or IMAGE_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        422: "VALIDATION_ERROR",
        503: "OVERLOADED (with Retry-After) or NOT_READY",
    }
)

_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
_FILE_FIELD: dict[str, Any] = {
    "schema": {"type": "object", "required": ["file"], "properties": {"file": _BINARY}}
}


def _request_body(content: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": content}}


# One image in multipart field ``file``.
UPLOAD_BODY = _request_body({"multipart/form-data": _FILE_FIELD})
# One image in field ``file``, or the raw image as the body (the fast path's case).
IMAGE_BODY = _request_body({"multipart/form-data": _FILE_FIELD, "image/*": {"schema": _BINARY}})
# The documented bound is the setting's default: the schema is built once, at import, and a
# server started with another SEPCONV_MAX_BATCH_FILES enforces that one (400 TOO_MANY_FILES).
MAX_BATCH_FILES_DEFAULT: int = Settings.model_fields["max_batch_files"].default
# Many images, the repeated multipart field ``files``.
BATCH_BODY = _request_body(
    {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": _BINARY,
                        "minItems": 1,
                        "maxItems": MAX_BATCH_FILES_DEFAULT,
                        "description": (
                            f"One to {MAX_BATCH_FILES_DEFAULT} images (the default; the "
                            "server's SEPCONV_MAX_BATCH_FILES sets the limit), answered in "
                            "order. More are refused with 400 TOO_MANY_FILES, none with 400 "
                            "MISSING_FILE."
                        ),
                    }
                },
            }
        }
    }
)
