"""Hostile and odd images against the real app: each gets its documented answer, never a 500.

Every refusal is the error envelope with the documented status and code, holds no stack trace
and no server path; odd but valid images are classified; and the service is unchanged
afterwards: a reference image gets bit-identical probabilities and ``/models`` the same answer
before and after the whole module.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from tests.helpers.hostile import (  # noqa: F401 - the fixtures are found by name
    PNG,
    REFERENCE,
    assert_unchanged,
    baseline,
    client,
    model_dir,
    pattern,
    upload,
)
from tests.helpers.images import encode
from tests.helpers.reliability import (
    animated_gif,
    assert_error,
    exif_with_orientation,
    gif_claiming,
    png_claiming,
)

pytestmark = pytest.mark.usefixtures("baseline")


def eps() -> bytes:
    return encode(pattern(), "EPS")


def psd_header() -> bytes:
    # Signature, version 1, reserved, 3 channels, 48x64, 8 bits, RGB mode.
    return b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + b"\x00\x00\x00\x30\x00\x00\x00\x40"


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt_ihdr_crc(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[29] ^= 0xFF  # the IHDR chunk's CRC is bytes 29-32 of every PNG
    return bytes(damaged)


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'
REFUSED: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "zero-byte file": (lambda: b"", 400, "INVALID_IMAGE"),
    "text as image/png": (lambda: b"this is not a picture\n" * 20, 400, "INVALID_IMAGE"),
    "random bytes named .jpg": (
        lambda: np.random.default_rng(7).bytes(8192),
        400,
        "INVALID_IMAGE",
    ),
    "truncated PNG": (lambda: truncated(encode(pattern(), "PNG")), 400, "INVALID_IMAGE"),
    "truncated JPEG": (lambda: truncated(encode(pattern(), "JPEG")), 400, "INVALID_IMAGE"),
    "corrupt PNG CRC": (lambda: corrupt_ihdr_crc(REFERENCE), 400, "INVALID_IMAGE"),
    "TIFF": (lambda: encode(pattern(), "TIFF"), 415, "UNSUPPORTED_MEDIA_TYPE"),
    "ICO": (lambda: encode(pattern(), "ICO"), 415, "UNSUPPORTED_MEDIA_TYPE"),
    "PSD": (psd_header, 415, "UNSUPPORTED_MEDIA_TYPE"),
    "SVG": (lambda: SVG, 415, "UNSUPPORTED_MEDIA_TYPE"),
    "EPS": (eps, 415, "UNSUPPORTED_MEDIA_TYPE"),
    "PDF": (lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 415, "UNSUPPORTED_MEDIA_TYPE"),
    "10000x10000 PNG": (lambda: png_claiming(10_000, 10_000), 413, "IMAGE_TOO_LARGE"),
    "PNG bomb": (lambda: png_claiming(100_000, 100_000), 413, "IMAGE_TOO_LARGE"),
    "GIF bomb": (lambda: gif_claiming(65_535, 65_535), 413, "IMAGE_TOO_LARGE"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_predict_refuses_bad_upload(client: TestClient, model_dir: Path, case: str) -> None:
    make, status, code = REFUSED[case]
    name = "random.jpg" if case.endswith(".jpg") else "upload.png"
    data = make()
    assert_error(upload(client, data, name), status, code, server_paths=[model_dir])
    # The same bytes as a raw body get the same answer.
    raw = client.post("/predict", content=data, headers=PNG)
    expected = (400, "MISSING_FILE") if not data else (status, code)
    assert_error(raw, *expected, server_paths=[model_dir])


def test_predict_image_too_large_names_its_size(client: TestClient) -> None:
    message = assert_error(upload(client, png_claiming(10_000, 10_000)), 413, "IMAGE_TOO_LARGE")
    assert "10000x10000" in message and "40000000" in message
    message = assert_error(upload(client, png_claiming(8_000, 6_000)), 413, "IMAGE_TOO_LARGE")
    assert "8000x6000" in message


@pytest.mark.parametrize("bomb_format", ["PNG", "GIF"])
def test_predict_refuses_bombs_fast_even_twenty_at_once(
    client: TestClient, bomb_format: str
) -> None:
    # A few dozen bytes whose header claims a canvas of billions of pixels.
    bomb = png_claiming(100_000, 100_000) if bomb_format == "PNG" else gif_claiming(65_535, 65_535)

    def send(_: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = upload(client, bomb)
        return response.status_code, time.perf_counter() - started

    status, seconds = send(0)
    assert status == 413 and seconds < 0.5, (status, seconds)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [status for status, _ in answers] == [413] * 20
    assert max(seconds for _, seconds in answers) < 1.0, answers
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("ghostscript_on_path", [True, False], ids=["fake-gs", "no-gs"])
def test_predict_refuses_eps_without_running_ghostscript(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ghostscript_on_path: bool
) -> None:
    # A `gs` that leaves a mark if anything ever runs it: Pillow's EPS plugin would.
    marker = tmp_path / "ghostscript-ran"
    fake_gs = tmp_path / "bin" / "gs"
    fake_gs.parent.mkdir()
    fake_gs.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    fake_gs.chmod(fake_gs.stat().st_mode | stat.S_IEXEC)
    path = os.environ.get("PATH", "")
    if ghostscript_on_path:
        monkeypatch.setenv("PATH", f"{fake_gs.parent}{os.pathsep}{path}")
        assert shutil.which("gs") == str(fake_gs)
    started = time.perf_counter()
    assert_error(upload(client, eps(), "figure.eps"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert time.perf_counter() - started < 0.5
    assert not marker.exists()


ACCEPTED: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "1x1": (lambda: encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), "PNG", "RGB"),
    "CMYK JPEG": (lambda: encode(pattern().convert("CMYK"), "JPEG"), "JPEG", "CMYK"),
    "16-bit PNG": (
        lambda: encode(
            Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20), "PNG"
        ),
        "PNG",
        "I;16",
    ),
    "grayscale PNG": (lambda: encode(pattern().convert("L"), "PNG"), "PNG", "L"),
    "palette with transparency": (
        lambda: encode(pattern().convert("P"), "PNG", transparency=0),
        "PNG",
        "P",
    ),
    "RGBA PNG": (lambda: encode(pattern().convert("RGBA"), "PNG"), "PNG", "RGBA"),
    "malformed EXIF": (
        lambda: encode(
            pattern(),
            "JPEG",
            # An IFD entry that claims more values than the segment holds.
            exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff\xff\xff",
        ),
        "JPEG",
        "RGB",
    ),
    "WEBP": (lambda: encode(pattern(), "WEBP"), "WEBP", "RGB"),
    "BMP": (lambda: encode(pattern(), "BMP"), "BMP", "RGB"),
}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("case", list(ACCEPTED))
def test_predict_accepts_unusual_image(client: TestClient, case: str) -> None:
    make, image_format, mode = ACCEPTED[case]
    response = upload(client, make())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"]["format"] == image_format and body["image"]["mode"] == mode
    for prediction in body["predictions"]:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_animated_gif_uses_first_frame_in_bounded_time(client: TestClient) -> None:
    gif = animated_gif(3000)
    assert getattr(Image.open(io.BytesIO(gif)), "n_frames", 1) > 2000
    started = time.perf_counter()
    response = upload(client, gif, "animation.gif", top_k=10)
    assert time.perf_counter() - started < 2.0
    assert response.status_code == 200, response.text
    red = upload(client, encode(Image.new("RGB", (32, 32), (255, 0, 0)), "PNG"), top_k=10)
    got = {p["model"]: p["probabilities"] for p in response.json()["predictions"]}
    assert got == {p["model"]: p["probabilities"] for p in red.json()["predictions"]}


def _preview(response: Any) -> np.ndarray:
    encoded = response.json()["preview"].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"), np.int16)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_predict_applies_exif_orientation(
    client: TestClient, orientation: int, image_format: str
) -> None:
    options: dict[str, Any] = {"quality": 95, "subsampling": 0} if image_format == "JPEG" else {}
    tagged = encode(pattern(), image_format, exif=exif_with_orientation(orientation), **options)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(tagged))).convert("RGB")
    rotated = encode(upright, image_format, **options)
    unrotated = encode(pattern(), image_format, **options)

    answers = [upload(client, data, preview="true", top_k=10) for data in (tagged, rotated)]
    plain = upload(client, unrotated, preview="true")
    for answer in (*answers, plain):
        assert answer.status_code == 200, answer.text
    # The model input of the tagged upload is the physically rotated image's, not the raw one's.
    seen, expected, raw = (_preview(a) for a in (*answers, plain))
    assert np.abs(seen - expected).mean() < 1.0
    assert np.abs(seen - raw).mean() > 20.0
    for got, want in zip(*(a.json()["predictions"] for a in answers), strict=True):
        assert got["label"] == want["label"]
        for label, probability in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(probability, abs=5e-3)


def test_service_unchanged_after_hostile_inputs(
    client: TestClient, baseline: dict[str, Any]
) -> None:
    # Runs last in this module: everything above was thrown at the same app.
    assert_unchanged(client, baseline)
