"""Request heads that never end, trickle in or cannot be parsed, and too many connections.

Against a real uvicorn with the command's own protocol (``service.edge.protocol``): an endless
header line or URL is refused with 431 or 414 once past its cap, a head that does not arrive
within the deadline is closed (408), connections past the bound get 503 at once, and every
answer is the error envelope; other clients are served meanwhile.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.process.settings import Settings
from tests.helpers.images import encode
from tests.helpers.servers import live_server

pytestmark = pytest.mark.network

HEAD_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 1.0
MAX_CONNECTIONS = 24
MAX_HEADER_BYTES = 16 * 1024
MAX_HEAD_BYTES = 32 * 1024


@pytest.fixture(scope="module")
def base_url(exported_models: Path) -> Iterator[str]:
    settings = Settings(
        model_dir=exported_models,
        warmup_runs=1,
        head_timeout_s=HEAD_TIMEOUT_S,
        keep_alive_s=KEEP_ALIVE_S,
        max_connections=MAX_CONNECTIONS,
        max_header_bytes=MAX_HEADER_BYTES,
        max_head_bytes=MAX_HEAD_BYTES,
    )
    with live_server(settings) as url:
        yield url


def connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float | None]:
    """What the server sent, and after how long it closed (None: still open at ``limit_s``)."""
    started = time.monotonic()
    received = b""
    while time.monotonic() - started < limit_s:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return received, time.monotonic() - started
            received += data
    return received, None


def envelope(received: bytes) -> tuple[int, dict[str, str]]:
    """The status and the ``error`` object of a raw answer, which must be the envelope."""
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"content-type: application/json" in head.lower(), head
    assert b"connection: close" in head.lower(), head
    error = json.loads(body)["error"]
    assert error["request_id"] and error["message"], error
    return status, error


def trickle(sock: socket.socket, chunk: bytes, total: int, limit_s: float = 10.0) -> int:
    """Send ``chunk`` until ``total`` bytes went out or the server stops reading; bytes sent."""
    sock.setblocking(False)
    sent, started = 0, time.monotonic()
    while sent < total and time.monotonic() - started < limit_s:
        _, writable, _ = select.select([], [sock], [], 0.05)
        if writable:
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
    return sent


def rss_bytes() -> int:
    """This process's resident memory: the server runs in one of its threads."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_endless_header_line_is_refused_431_with_bounded_memory(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: ")
        before = rss_bytes()
        # Loopback socket buffers take a few MiB the server never reads: memory is the measure.
        trickle(sock, b"a" * 16 * 1024, 2 * 1024 * 1024)
        grown = rss_bytes() - before
        received, closed_after = read_until_closed(sock, 5)
    status, error = envelope(received)
    assert (status, error["code"]) == (431, "HEADER_FIELDS_TOO_LARGE")
    assert closed_after is not None
    assert grown < 5 * 1024 * 1024


def test_many_short_headers_over_the_head_cap_are_refused_431(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        trickle(sock, b"X-Filler: " + b"b" * 1000 + b"\r\n", 128 * 1024)
        received, closed_after = read_until_closed(sock, 5)
    status, error = envelope(received)
    assert (status, error["code"], closed_after is not None) == (
        431,
        "HEADER_FIELDS_TOO_LARGE",
        True,
    )
    assert "SEPCONV_MAX_HEAD_BYTES" in error["message"]


def test_endless_url_is_refused_414(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"GET /health/live?q=")
        trickle(sock, b"a" * 16 * 1024, 2 * 1024 * 1024)
        received, closed_after = read_until_closed(sock, 5)
    status, error = envelope(received)
    assert (status, error["code"], closed_after is not None) == (414, "URI_TOO_LONG", True)


def test_long_header_sent_at_once_is_refused_431(base_url: str) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n"
    with connect(base_url) as sock:
        sock.sendall(head)
        received, _ = read_until_closed(sock, 5)
    assert envelope(received)[0] == 431


def test_silent_connection_is_closed_after_the_head_deadline(base_url: str) -> None:
    with connect(base_url) as sock:
        received, closed_after = read_until_closed(sock, HEAD_TIMEOUT_S + 4)
    assert closed_after is not None and closed_after >= HEAD_TIMEOUT_S * 0.8, closed_after
    assert received == b""


def test_trickled_request_line_gets_408_after_the_head_deadline(base_url: str) -> None:
    with connect(base_url) as sock:
        started = time.monotonic()
        for byte in b"GET /health/li":
            sock.send(bytes([byte]))
            received, closed_after = read_until_closed(sock, 0.2)
            if closed_after is not None:
                break
        else:
            received, closed_after = read_until_closed(sock, HEAD_TIMEOUT_S + 3)
        elapsed = time.monotonic() - started
    status, error = envelope(received)
    assert (status, error["code"]) == (408, "REQUEST_TIMEOUT")
    assert "SEPCONV_HEAD_TIMEOUT_S" in error["message"]
    assert HEAD_TIMEOUT_S * 0.8 <= elapsed < HEAD_TIMEOUT_S + 3


def test_idle_keep_alive_connection_is_closed(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        received, closed_after = read_until_closed(sock, KEEP_ALIVE_S + 4)
    assert received.startswith(b"HTTP/1.1 200")
    assert closed_after is not None


def test_connections_past_the_bound_get_503_and_health_still_answers(base_url: str) -> None:
    held = [connect(base_url) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        time.sleep(0.2)
        # Well within the head deadline, which would close the held ones (silently) too.
        answers = [read_until_closed(sock, 0.02) for sock in held]
        refused = [envelope(received) for received, _closed in answers if received]
        assert [(status, error["code"]) for status, error in refused] == [(503, "OVERLOADED")] * 5
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200


def test_unparsable_request_gets_400_in_the_envelope(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"GARBAGE \x01\x02 NONSENSE\r\n\r\n")
        received, closed_after = read_until_closed(sock, 5)
    status, error = envelope(received)
    assert (status, error["code"], closed_after is not None) == (400, "BAD_REQUEST", True)


def test_pipelining_client_hanging_up_logs_no_traceback(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    image = encode(Image.new("RGB", (32, 32), (30, 120, 200)), "PNG")
    predict = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\n\r\n" % len(image) + image
    )
    live = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    caplog.set_level(logging.INFO)
    for _ in range(3):
        with connect(base_url) as sock:
            sock.sendall((live + predict) * 20)
    time.sleep(1.5)
    assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200
    failures = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
    assert any("pipelined requests unanswered" in r.getMessage() for r in caplog.records)
