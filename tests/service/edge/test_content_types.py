"""One reading of Content-Type for the fast path (raw ASGI headers) and the upload reader."""

from __future__ import annotations

import pytest

from service.edge.content_types import MULTIPART, is_raw_image, media_type, scope_media_type


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("image/png", "image/png"),
        ("  Image/PNG ; charset=binary", "image/png"),
        ("multipart/form-data; boundary=x", MULTIPART),
        ("", ""),
    ],
)
def test_media_type_drops_parameters_and_case(header: str, expected: str) -> None:
    assert media_type(header) == expected


@pytest.mark.parametrize(
    ("media", "raw"),
    [
        ("image/jpeg", True),
        ("application/octet-stream", True),
        (MULTIPART, False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_is_raw_image_takes_images_and_untyped_bytes(media: str, raw: bool) -> None:
    assert is_raw_image(media) is raw


def test_scope_media_type_reads_the_first_content_type_like_starlette() -> None:
    scope = {
        "headers": [
            (b"host", b"x"),
            (b"content-type", b"IMAGE/PNG; q=1"),
            (b"content-type", b"text/plain"),
        ]
    }
    assert scope_media_type(scope) == "image/png"
    assert scope_media_type({"headers": [(b"host", b"x")]}) == ""
