"""The Open Inference Protocol's own errors, built by the factories of ``service.errors``.

They answer as ``{"error": "<message>"}`` (``service.edge.envelope.error_response``): only the
status and the message reach the client, so each is built by the factory of its status with
a message of the protocol's terms (which tensor, which field, what to send instead).
"""

from __future__ import annotations

from collections.abc import Sequence

from service.errors import ApiError, http_error, not_found, unsupported_media_type


def _shown(value: str) -> str:
    """``value`` as it may appear in a message: short and printable, else hex."""
    return value if len(value) <= 64 and value.isprintable() else value[:64].encode().hex()


def invalid_request(message: str) -> ApiError:
    """The request's JSON, a tensor's shape, datatype or data is not what the model takes."""
    return http_error(400, message)


def too_many_images(count: int, limit: int) -> ApiError:
    return http_error(
        400,
        f"the request carries {count} images, over the limit of {limit} per request "
        "(SEPCONV_MAX_BATCH_FILES; max_batch_size in the model's config); split it",
    )


def unknown_model(name: str, available: Sequence[str]) -> ApiError:
    return not_found(
        f"no model named {_shown(name)!r}; available: {', '.join(available) or 'none'}"
    )


def unknown_version(name: str, version: str, serving: int | None) -> ApiError:
    served = f"it serves version {serving}" if serving is not None else "it has no version"
    return not_found(
        f"model {name!r} has no version {_shown(version)!r}; {served} "
        "(or leave the version out of the path)"
    )


def unsupported_encoding(encoding: str) -> ApiError:
    return unsupported_media_type(
        f"Content-Encoding {_shown(encoding)!r} is not supported; send gzip, deflate or "
        "an uncompressed body"
    )
