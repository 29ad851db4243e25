"""Request bodies that are too big, never end or trickle in, against a real uvicorn.

The body cap and the body deadline are enforced while the body streams in: an oversized or
endless body gets 413 once the cap is passed, a slow one 408 once the deadline passes, and
the connection is closed rather than drained, while other clients are served as usual.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.process.settings import MiB, Settings
from tests.helpers.images import encode
from tests.helpers.reliability import assert_error
from tests.helpers.servers import live_server

pytestmark = pytest.mark.network

BODY_TIMEOUT_S = 1.0
IMAGE = encode(Image.new("RGB", (40, 36), (30, 120, 200)), "PNG")


@pytest.fixture(scope="module")
def base_url(exported_models: Path) -> Iterator[str]:
    settings = Settings(
        model_dir=exported_models,
        max_upload_bytes=MiB,
        body_timeout_s=BODY_TIMEOUT_S,
        warmup_runs=1,
    )
    with live_server(settings) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@dataclass
class RawExchange:
    """What a raw-socket client saw: the answer, when it came, and whether the server hung up."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    answered_after_s: float | None = None
    closed_after_s: float | None = None
    bytes_sent: int = 0


def _parse(received: bytes, exchange: RawExchange) -> bool:
    """Fill ``exchange`` from ``received``; True once the whole response is in."""
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    lines = head.decode("latin-1").split("\r\n")
    exchange.status = int(lines[0].split()[1])
    exchange.headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    exchange.body = body
    return len(body) >= int(exchange.headers.get("content-length", "0"))


def raw_request(
    port: int,
    head: bytes,
    chunks: Iterator[bytes],
    *,
    pace_s: float = 0.0,
    limit_s: float = 10.0,
    linger_s: float = 3.0,
) -> RawExchange:
    """Send ``head``, then ``chunks`` (one every ``pace_s``) while reading the answer.

    Stops when the server closes the connection, ``linger_s`` after the answer, or at
    ``limit_s``: every loop here is bounded in bytes and time.
    """
    exchange = RawExchange()
    sock = socket.create_connection(("127.0.0.1", port), timeout=limit_s)
    sock.setblocking(False)
    started = time.monotonic()
    pending, sending, next_send = head, True, started
    received = b""
    try:
        while time.monotonic() - started < limit_s:
            now = time.monotonic()
            if exchange.answered_after_s is not None and now - started > (
                exchange.answered_after_s + linger_s
            ):
                break
            may_send = sending and now >= next_send
            readable, writable, _ = select.select(
                [sock], [sock] if may_send else [], [], 0.02 if may_send else 0.05
            )
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    exchange.closed_after_s = time.monotonic() - started
                    break
                received += data
                if exchange.answered_after_s is None and _parse(received, exchange):
                    exchange.answered_after_s = time.monotonic() - started
            if writable:
                if not pending:
                    pending = next(chunks, b"")
                    if not pending:
                        sending = False
                        continue
                try:
                    count = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    sending = False
                    continue
                exchange.bytes_sent += count
                pending = pending[count:]
                if not pending and pace_s:
                    next_send = time.monotonic() + pace_s
    finally:
        sock.close()
    return exchange


def endless_chunks(size: int = 64 * 1024, at_most: int = 4096) -> Iterator[bytes]:
    """HTTP/1.1 chunked-encoding frames, ``at_most`` of them (256 MiB): "never ends" here."""
    frame = b"%x\r\n" % size + b"\0" * size + b"\r\n"
    for _ in range(at_most):
        yield frame


def test_declared_oversized_body_is_refused_before_it_is_sent(base_url: str) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\n\r\n" % (2 * MiB)
    )
    exchange = raw_request(port_of(base_url), head, iter(()))
    assert exchange.status == 413, exchange
    assert exchange.answered_after_s is not None and exchange.answered_after_s < 1.0
    assert exchange.headers.get("connection") == "close"
    assert exchange.closed_after_s is not None
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post(
            "/predict", content=b"\0" * (2 * MiB), headers={"content-type": "image/png"}
        )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_oversized_body_without_content_length_is_413(base_url: str) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(48):  # 3 MiB in 64 KiB pieces, sent chunked
            yield b"\0" * (64 * 1024)

    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post("/predict", content=body(), headers={"content-type": "image/png"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert time.monotonic() - started < 3.0


def test_endless_chunked_body_is_cut_off_at_the_cap(base_url: str) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    exchange = raw_request(port_of(base_url), head, endless_chunks())
    assert exchange.status == 413, exchange
    assert b"PAYLOAD_TOO_LARGE" in exchange.body
    assert exchange.answered_after_s is not None and exchange.answered_after_s < 2.0
    # The server hangs up instead of draining the rest for keep-alive.
    assert exchange.headers.get("connection") == "close"
    assert exchange.closed_after_s is not None, "the server kept reading an endless body"
    assert exchange.closed_after_s - exchange.answered_after_s < 1.0
    assert exchange.bytes_sent < 64 * MiB


def test_endless_streamed_body_from_httpx_gets_413_promptly(base_url: str) -> None:
    def forever() -> Iterator[bytes]:
        for _ in range(100_000):  # 6 GiB: far more than the client ever gets to send
            yield b"\0" * (64 * 1024)

    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post("/predict", content=forever(), headers={"content-type": "image/png"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert time.monotonic() - started < 2.0


def slow_head(length: int = 1000) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def one_byte_per_second() -> Iterator[bytes]:
    for _ in range(30):
        yield b"\x89"


def test_slow_body_gets_408_while_others_are_served(base_url: str) -> None:
    port = port_of(base_url)
    exchanges: list[RawExchange] = []

    def trickle() -> None:
        exchanges.append(
            raw_request(port, slow_head(), one_byte_per_second(), pace_s=1.0, linger_s=1.5)
        )

    slow_clients = [threading.Thread(target=trickle) for _ in range(6)]
    for thread in slow_clients:
        thread.start()
    # While six clients trickle their bodies in, everyone else is answered promptly.
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get("/health/live").status_code == 200
            response = client.post("/predict", content=IMAGE, headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < 1.0
            time.sleep(0.1)
    for thread in slow_clients:
        thread.join(timeout=20)
    assert len(exchanges) == 6
    for exchange in exchanges:
        assert exchange.status == 408, exchange
        assert b"REQUEST_TIMEOUT" in exchange.body
        assert exchange.answered_after_s is not None
        assert BODY_TIMEOUT_S * 0.9 < exchange.answered_after_s < BODY_TIMEOUT_S + 1.5
        assert exchange.headers.get("connection") == "close"
        assert exchange.closed_after_s is not None
        assert exchange.bytes_sent < len(slow_head()) + 5


def _statuses(metrics: str, endpoint: str) -> dict[str, float]:
    labels = rf'endpoint="{re.escape(endpoint)}",method="POST",status="(\d+)"'
    pattern = rf"^sepconv_requests_total\{{{labels}\}} (\S+)$"
    return {status: float(count) for status, count in re.findall(pattern, metrics, re.M)}


def test_client_hanging_up_mid_upload_is_not_a_server_error(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        before = _statuses(client.get("/metrics").text, "/predict")
        with socket.create_connection(("127.0.0.1", port_of(base_url))) as sock:
            sock.sendall(slow_head() + b"\x89PNG")
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while (after := _statuses(client.get("/metrics").text, "/predict")) == before:
            assert time.monotonic() < deadline, "the server never finished the request"
            time.sleep(0.05)
    assert after.get("499", 0) == before.get("499", 0) + 1
    assert after.get("500", 0) == before.get("500", 0)
