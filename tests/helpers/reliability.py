"""Helpers for the reliability tests: a ready app, crafted hostile images, error-envelope checks."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import REPOSITORY
from tests.helpers.apps import READY_TIMEOUT_S, ready_client
from tests.helpers.images import encode

__all__ = ["ready_client"]  # shared with tests/service_fixtures.py, re-exported for the suites

# Text that would mean a stack trace leaked into an answer.
TRACE_MARKERS = ("Traceback", 'File "')


def wait_until_loaded(client: TestClient, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Poll ``/health/ready`` until no model is still loading; return its last JSON answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/health/ready")
        body = response.json()
        models = body.get("models") or body.get("error", {}).get("details", {}).get("models", {})
        if models and all(m["status"] != "loading" for m in models.values()):
            return dict(body)
        if time.monotonic() > deadline:
            pytest.fail(f"models still loading after {timeout_s:g} s: {response.text}")
        time.sleep(0.05)


def assert_error(
    response: httpx.Response,
    status: int,
    code: str | Sequence[str],
    *,
    server_paths: Sequence[Path] = (),
    echoed: str = "",
) -> str:
    """The response is the error envelope with ``status`` and ``code``; return its message.

    The message must hold no trace and no server path (the repository, the model directory);
    ``echoed`` is the client's own input, which the message may quote back.
    """
    assert response.status_code == status, (response.status_code, response.text[:500])
    error = response.json()["error"]
    codes = (code,) if isinstance(code, str) else tuple(code)
    assert error["code"] in codes, error
    assert error["request_id"] == response.headers["x-request-id"]
    assert_clean(error["message"], server_paths=server_paths, echoed=echoed)
    return str(error["message"])


def assert_clean(text: str, *, server_paths: Sequence[Path] = (), echoed: str = "") -> None:
    """``text`` holds no stack trace and no path of the server's file system."""
    if echoed:
        text = text.replace(echoed, "")
    for marker in TRACE_MARKERS:
        assert marker not in text, text
    for path in (REPOSITORY, *server_paths):
        assert str(path) not in text, text
    assert "site-packages" not in text, text


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR (CRC fixed up) claims a ``width`` x ``height`` canvas.

    A real 10000x10000 PNG takes seconds to encode; the header is all the service may read
    before it refuses, so a patched header is the same test at a fraction of the cost.
    """
    small = encode(Image.new("RGB", (8, 8), (200, 40, 40)), "PNG")
    signature, ihdr_end = small[:8], 8 + 4 + 4 + 13 + 4
    ihdr = struct.pack(">II", width, height) + small[16 + 8 : 16 + 13]
    return signature + _png_chunk(b"IHDR", ihdr) + small[ihdr_end:]


def gif_claiming(width: int, height: int) -> bytes:
    """A one-frame GIF whose logical screen claims ``width`` x ``height`` (16-bit fields)."""
    small = encode(Image.new("P", (8, 8), 0), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def animated_gif(frames: int) -> bytes:
    """A 32x32 GIF of ``frames`` frames: red first, then blue and green alternating.

    Pillow takes a second or more to write thousands of frames; this writes three and repeats
    the encoded blue and green frames' bytes, which is what a GIF of many frames is.
    """
    palette = [255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9)
    images = []
    for index in range(3):
        image = Image.new("P", (32, 32), index)
        image.putpalette(palette)
        images.append(image)
    data = encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    control = b"\x21\xf9\x04"  # each frame starts with a graphic control extension
    first = data.index(control)
    second = data.index(control, first + 1)
    assert data.endswith(b";"), "a GIF ends with its trailer"
    repeated = data[second:-1]  # the blue and green frames
    return data[:second] + repeated * max(1, -(-(frames - 1) // 2)) + b";"


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()
