"""Which kind of body a request declares, read one way by the fast path and by the routes.

The fast path decides from the raw ASGI headers whether it may answer a request itself, and
``service.edge.uploads`` decides how to read the body; reading the media type differently in
the two would send a request down one path and judge it by the other's rules.
"""

from __future__ import annotations

from starlette.types import Scope

MULTIPART = "multipart/form-data"
# A raw body is the image itself: any image/* type, or bytes of no declared kind.
RAW_TYPES = ("image/", "application/octet-stream")


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value: lowercased, without its parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_raw_image(media: str) -> bool:
    """Whether a body of ``media`` (as ``media_type`` reads it) is the image bytes themselves."""
    return media.startswith(RAW_TYPES)


def scope_media_type(scope: Scope) -> str:
    """The media type an ASGI request declares (its first Content-Type), or "" for none."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return media_type(value.decode("latin-1"))
    return ""
