"""Decode limits through the real app: a scan bomb refused before decoding, the per-worker
decode memory budget (wait, then 503 with Retry-After; 413 for an image over all of it), and
decoding no longer waited for once the client hangs up (a real uvicorn)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

import service.core.imaging as imaging
import service.core.prediction as prediction
from sepconv_bench.decode_attacks import deep_png, lossless_webp, scan_bomb_jpeg
from service.process.settings import Settings
from tests.helpers.apps import ready_client
from tests.helpers.reliability import assert_error
from tests.helpers.servers import live_server

MiB = 1024 * 1024
RAW = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def client(exported_models: Path) -> Iterator[TestClient]:
    # Room for one 6324x6324 16-bit PNG (about 92 MiB) at a time, and a short wait for it.
    settings = Settings(
        model_dir=exported_models, warmup_runs=1, decode_memory_bytes=128 * MiB, decode_wait_s=0.2
    )
    with ready_client(settings) as ready:
        yield ready


@pytest.mark.timeout(60)
def test_scan_bomb_is_refused_before_decoding_on_every_route(client: TestClient) -> None:
    bomb = scan_bomb_jpeg()  # 4,000 empty scans: 20 s of libjpeg before this limit

    started = time.perf_counter()
    raw = client.post("/predict", content=bomb, headers=RAW)
    upload = client.post("/predict", files={"file": ("bomb.jpg", bomb, "image/jpeg")})
    batch = client.post("/predict/batch", files=[("files", ("bomb.jpg", bomb, "image/jpeg"))] * 64)

    assert time.perf_counter() - started < 5.0
    for response in (raw, upload, batch):
        message = assert_error(response, 422, "IMAGE_TOO_COMPLEX")
        assert "scans" in message


@pytest.mark.timeout(60)
def test_decode_budget_taken_answers_503_with_retry_after(client: TestClient) -> None:
    image = deep_png()  # 78 KB, about 92 MiB to decode: one at a time fits the budget

    budget = client.app.state.sepconv.decode_budget  # type: ignore[attr-defined]

    def send(after_first_holds_the_budget: bool) -> httpx.Response:
        # The second upload is sent once the first decode holds its memory, however slowly the
        # first one got there on a busy machine.
        deadline = time.monotonic() + 20
        while after_first_holds_the_budget and budget.in_use_bytes == 0:
            assert time.monotonic() < deadline, "the first decode never took the budget"
            time.sleep(0.005)
        response: httpx.Response = client.post("/predict", content=image, headers=RAW)
        return response

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(send, [False, True])

    assert first.status_code == 200, first.text
    message = assert_error(second, 503, "OVERLOADED")
    assert second.headers["retry-after"] == "1"
    assert "decode budget" in message
    # Once the first decode ended its memory is free again.
    assert client.post("/predict", content=image, headers=RAW).status_code == 200


def test_image_over_the_whole_budget_is_413_before_decoding(client: TestClient) -> None:
    webp = lossless_webp(8000, 2000)  # a few dozen bytes, 16 bytes a pixel to decode

    started = time.perf_counter()
    response = client.post("/predict", files={"file": ("wide.webp", webp, "image/webp")})

    assert time.perf_counter() - started < 0.5
    message = assert_error(response, 413, "IMAGE_TOO_LARGE")
    assert "8000x2000" in message and "SEPCONV_DECODE_MEMORY_BYTES" in message


def _multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = "decode-limits-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


@pytest.mark.timeout(120)
def test_batch_stops_decoding_when_the_client_hangs_up(
    exported_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight JPEGs of about half a second of libjpeg each (120 scans, allowed here).
    slow = scan_bomb_jpeg(40_000, 600, 119)
    decodes: list[float] = []
    decode = imaging.finish_decoding

    def counted(opened: Any) -> Any:
        decodes.append(time.monotonic())
        return decode(opened)

    monkeypatch.setattr(prediction, "finish_decoding", counted)
    settings = Settings(model_dir=exported_models, warmup_runs=1, max_jpeg_scans=1000)
    body, boundary = _multipart([slow] * 8)
    with live_server(settings) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port)) as connection:
            connection.sendall(
                (
                    f"POST /predict/batch HTTP/1.1\r\nHost: {address.netloc}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            deadline = time.monotonic() + 30
            while not decodes and time.monotonic() < deadline:
                time.sleep(0.01)
        # Long enough for four more to decode, had the batch gone on.
        time.sleep(5.0)
        assert decodes, "the batch never started decoding"
        # The decode running at the hang-up ends on its own; no other image is decoded.
        assert len(decodes) <= 2, len(decodes)
        # The server still answers normally.
        ok = httpx.get(f"{url}/health/ready", timeout=10)
        assert ok.status_code == 200


def test_decode_budget_is_shared_by_the_app_state(exported_models: Path) -> None:
    settings = Settings(model_dir=exported_models, decode_memory_bytes=64 * MiB, max_jpeg_scans=8)
    with ready_client(settings) as ready:
        budget = ready.app.state.sepconv.decode_budget  # type: ignore[attr-defined]
        response = ready.post("/predict", content=scan_bomb_jpeg(2000, 600, 8), headers=RAW)

    assert (budget.memory_bytes, budget.max_jpeg_scans, budget.in_use_bytes) == (64 * MiB, 8, 0)
    assert_error(response, 422, "IMAGE_TOO_COMPLEX")
