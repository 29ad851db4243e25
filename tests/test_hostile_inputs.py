"""Hostile and odd inputs against the real app: each gets its documented answer, never a 500.

Every answer is the error envelope with the documented status and code, holds no stack trace
and no server path, and the service is unchanged afterwards: a reference image gets bit-identical
probabilities and ``/models`` the same answer before and after the whole module.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from service.settings import MiB, Settings
from tests.reliability import (
    animated_gif,
    assert_clean,
    assert_error,
    encode,
    exif_with_orientation,
    gif_claiming,
    png_claiming,
    ready_client,
)

pytestmark = pytest.mark.usefixtures("baseline")


def pattern(width: int = 64, height: int = 48) -> Image.Image:
    """Gradients and a checkerboard: every rotation of it looks different to the models."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 4 % 256, yy * 5 % 256, ((xx // 8 + yy // 8) % 2) * 255], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


REFERENCE = encode(pattern(), "PNG")


@pytest.fixture(scope="module")
def model_dir(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test models, with a real SavedModel ``decoy`` just outside the directory.

    A service that resolved model names as paths would find the decoy through ``../decoy``.
    """
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(exported_models, root / "models")
    shutil.copytree(exported_models / "separable", root / "decoy")
    return root / "models"


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with ready_client(Settings(model_dir=model_dir, warmup_runs=1)) as ready:
        yield ready


def reference_answer(client: TestClient) -> dict[str, Any]:
    response = client.post("/predict?top_k=10", content=REFERENCE, headers=PNG)
    assert response.status_code == 200, response.text
    return {p["model"]: p["probabilities"] for p in response.json()["predictions"]}


@pytest.fixture(scope="module")
def baseline(client: TestClient) -> dict[str, Any]:
    """The service's answers before any hostile input (every test here uses this fixture)."""
    return {"reference": reference_answer(client), "models": client.get("/models").json()}


PNG = {"content-type": "image/png"}


def upload(client: TestClient, data: bytes, name: str = "image.png", **params: Any) -> Any:
    return client.post(
        "/predict", params=params, files={"file": (name, data, "application/octet-stream")}
    )


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


MULTIPART_PART = (
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + REFERENCE + b"\r\n--B--\r\n"
)


def test_predict_refuses_malformed_requests(client: TestClient, model_dir: Path) -> None:
    image = ("image.png", REFERENCE, "image/png")
    cases: list[tuple[str, Any, int, str]] = [
        ("empty body", client.post("/predict"), 400, "MISSING_FILE"),
        (
            "empty image body",
            client.post("/predict", content=b"", headers=PNG),
            400,
            "MISSING_FILE",
        ),
        (
            "wrong field name",
            client.post("/predict", files={"image": image}),
            400,
            "MISSING_FILE",
        ),
        (
            "two files",
            client.post("/predict", files=[("file", image), ("file", image)]),
            400,
            "TOO_MANY_FILES",
        ),
        (
            "thousands of empty fields",
            client.post("/predict", data={f"f{i}": "" for i in range(5000)}, files={"file": image}),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "huge text field",
            client.post("/predict", data={"note": "x" * (5 * MiB)}, files={"file": image}),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "JSON",
            client.post("/predict", json={"image": base64.b64encode(REFERENCE).decode()}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "form-urlencoded",
            client.post("/predict", data={"file": "abc"}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "wrong boundary",
            client.post(
                "/predict",
                content=MULTIPART_PART,
                headers={"content-type": "multipart/form-data; boundary=other"},
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "missing boundary",
            client.post(
                "/predict", content=MULTIPART_PART, headers={"content-type": "multipart/form-data"}
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "megabytes of preamble",
            client.post(
                "/predict",
                content=b"x" * (3 * MiB) + b"\r\n" + MULTIPART_PART,
                headers={"content-type": "multipart/form-data; boundary=B"},
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "body over the size cap",
            client.post("/predict", content=b"\x89PNG" + b"\0" * (10 * MiB), headers=PNG),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "65 files to /predict/batch",
            client.post("/predict/batch", files=[("files", image)] * 65),
            400,
            "TOO_MANY_FILES",
        ),
    ]
    for name, response, status, code in cases:
        assert response.status_code == status, (name, response.text[:300])
        assert_error(response, status, code, server_paths=[model_dir])


def test_predict_ignores_multipart_blank_line_preamble(client: TestClient) -> None:
    # Leading blank lines before the first boundary are legal (RFC 2046) and cost nothing.
    response = client.post(
        "/predict",
        content=b"\r\n" * MiB + MULTIPART_PART,
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 200, response.text


MODEL_NAMES = [
    "nope",
    "",
    "all ",
    "REGULAR",
    "../models",
    "..",
    "%2e%2e",
    "../decoy",
    "regular/../separable",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "regular\x00",
]


@pytest.mark.parametrize("name", MODEL_NAMES + ["<model dir>/separable", "<decoy>"])
def test_predict_unknown_model_names_are_404(
    client: TestClient, model_dir: Path, name: str
) -> None:
    # Absolute paths of real SavedModels, the one inside the model directory included.
    name = name.replace("<model dir>", str(model_dir)).replace(
        "<decoy>", str(model_dir.parent / "decoy")
    )
    response = client.post("/predict", params={"model": name}, content=REFERENCE, headers=PNG)
    assert_error(response, 404, "MODEL_NOT_FOUND", server_paths=[model_dir], echoed=name)
    response = client.get("/compare", params={"models": name, "repeats": 1})
    if name.strip() in ("", "all"):
        assert response.status_code == 200, response.text  # empty or blank means every model
    else:
        assert_error(response, 404, "MODEL_NOT_FOUND", server_paths=[model_dir], echoed=name)


@pytest.mark.parametrize(
    "path",
    [
        "/predict?model=%2e%2e",
        "/predict?model=..%2fdecoy",
        "/predict?model=%2Fetc%2Fpasswd",
        "/models/%2e%2e",
        "/models/..%2fdecoy",
        "/models/%2Fetc%2Fpasswd",
        "/models/..%5c..%5cdecoy",
        "/models/nope/history",
        "/models/%2e%2e/history",
        "/models/%00",
    ],
)
def test_path_like_model_names_never_reach_the_file_system(
    client: TestClient, model_dir: Path, path: str
) -> None:
    if path.startswith("/predict"):
        response = client.post(path, content=REFERENCE, headers=PNG)
    else:
        response = client.get(path)
    assert_error(response, 404, ("MODEL_NOT_FOUND", "NOT_FOUND"), server_paths=[model_dir])
    names = [m["name"] for m in client.get("/models").json()["models"]]
    assert names == ["regular", "separable"]


INVALID_QUERIES = [
    ("post", "/predict", {"top_k": "0"}),
    ("post", "/predict", {"top_k": "11"}),
    ("post", "/predict", {"top_k": "-1"}),
    ("post", "/predict", {"top_k": "three"}),
    ("post", "/predict", {"top_k": "2.5"}),
    ("post", "/predict", {"top_k": "1e3"}),
    ("post", "/predict", {"top_k": ""}),
    ("post", "/predict", {"preview": "maybe"}),
    ("post", "/predict", {"model": "m" * 129}),
    ("post", "/predict/batch", {"top_k": "99999999999999999999999"}),
    ("get", "/compare", {"repeats": "0"}),
    ("get", "/compare", {"repeats": "1001"}),
    ("get", "/compare", {"repeats": "many"}),
    ("get", "/compare", {"repeats": "NaN"}),
    ("get", "/compare", {"batch_size": "0"}),
    ("get", "/compare", {"batch_size": "257"}),
    ("get", "/compare", {"batch_size": "1000000000"}),
    ("get", "/compare", {"batch_size": "ten"}),
    ("get", "/compare", {"warmup": "-1"}),
    ("get", "/compare", {"warmup": "101"}),
    ("get", "/compare", {"models": "x" * 257}),
    ("post", "/compare", {"repeats": "-5"}),
]


@pytest.mark.parametrize(("method", "path", "params"), INVALID_QUERIES)
def test_out_of_range_parameters_are_422(
    client: TestClient, method: str, path: str, params: dict[str, str]
) -> None:
    started = time.perf_counter()
    if method == "post":
        response = client.post(path, params=params, content=REFERENCE, headers=PNG)
    else:
        response = client.get(path, params=params)
    message = assert_error(response, 422, "VALIDATION_ERROR")
    assert next(iter(params)) in message
    assert time.perf_counter() - started < 2.0  # refused before any comparison runs
    for value in params.values():
        if len(value) > 3:
            assert value not in message  # the client's input is not echoed back


def _multipart_with_filename(filename: bytes) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + REFERENCE
        + b"\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    "filename",
    [
        b"\xff\xfe\x80not-utf8.png",
        "caf\u00e9 \u2603.png".encode(),
        b"../../../../etc/passwd",
        b"/etc/passwd",
        b"..\\..\\windows\\win.ini",
        b"<written>",
        b"a" * 2000 + b".png",
        b"",
    ],
)
def test_predict_upload_file_name_is_never_a_path(
    client: TestClient, tmp_path: Path, filename: bytes
) -> None:
    target = tmp_path / "written-by-the-service.png"
    filename = filename.replace(b"<written>", str(target).encode())
    response = client.post(
        "/predict",
        content=_multipart_with_filename(filename),
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 200, response.text
    assert not target.exists()
    assert_clean(response.text)


def test_service_unchanged_after_hostile_inputs(
    client: TestClient, baseline: dict[str, Any]
) -> None:
    # Runs last in this module: everything above was thrown at the same app.
    assert reference_answer(client) == baseline["reference"]
    assert client.get("/models").json() == baseline["models"]
    assert client.get("/health/ready").status_code == 200
