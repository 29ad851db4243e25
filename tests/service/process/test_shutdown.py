"""Graceful shutdown of the real ``sepconv-serve`` process: SIGTERM drains, then exits 0."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import ServeProcess, serve_process

pytestmark = pytest.mark.network

# Long enough for three comparisons on a loaded CI machine (about a second each when idle): the
# test waits for them, not for the grace period, so a generous one costs nothing.
GRACE_S = 30.0


@pytest.fixture(params=["1", "2"], ids=["one-worker", "two-workers"])
def server(
    exported_models: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServeProcess]:
    """``sepconv-serve`` on the test models, as a container would start it; killed if still up.
    With two workers the supervisor holds the listening socket too, and must let go of it."""
    settings = {
        "SEPCONV_WORKERS": request.param,
        "SEPCONV_GRACEFUL_TIMEOUT_S": str(GRACE_S),
        # Comparisons run one at a time: the later ones wait in flight for the first, and each
        # runs flat out (no duty cycle), so all three fit in the grace period.
        "SEPCONV_COMPARE_DUTY": "1",
        "SEPCONV_COMPARE_WAIT_S": str(GRACE_S * 2),
    }
    with serve_process(exported_models, tmp_path / "server.log", settings) as started:
        yield started


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_in_flight_requests_then_exits_zero(server: ServeProcess) -> None:
    answers: list[httpx.Response | Exception] = []

    def compare() -> None:
        # A few hundred timed engine calls: long enough to still be running at SIGTERM.
        try:
            answers.append(httpx.get(f"{server.url}/compare?repeats=200", timeout=GRACE_S * 2))
        except Exception as error:  # noqa: BLE001 - reported by the assertions below
            answers.append(error)

    clients = [threading.Thread(target=compare) for _ in range(3)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    # Comparisons run one at a time, so the later ones are still in flight.
    assert any(thread.is_alive() for thread in clients), "the requests finished before SIGTERM"

    server.process.send_signal(signal.SIGTERM)
    terminated = time.monotonic()

    # The listening socket closes at once: new connections are refused while old ones drain.
    while not refuses_connections(server.port):
        assert time.monotonic() - terminated < 2.0, "still accepting connections after SIGTERM"
        time.sleep(0.05)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health/live", timeout=2)

    for thread in clients:
        thread.join(timeout=GRACE_S * 2)
    for answer in answers:
        assert isinstance(answer, httpx.Response), f"{answer!r}\n{server.output()}"
        assert answer.status_code == 200, answer.text
        assert answer.json()["repeats"] == 200
    assert len(answers) == 3

    exit_code = server.process.wait(timeout=GRACE_S + 5)
    assert exit_code == 0, server.output()
    assert time.monotonic() - terminated < GRACE_S, "exited only after the grace period"
    assert "Traceback" not in server.output()


@pytest.fixture
def short_grace_server(exported_models: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    """One worker whose grace period (1 s) is far shorter than the comparison it is given."""
    settings = {"SEPCONV_GRACEFUL_TIMEOUT_S": "1", "SEPCONV_COMPARE_DUTY": "1"}
    with serve_process(exported_models, tmp_path / "server.log", settings) as started:
        yield started


def test_request_outliving_the_grace_period_is_told_to_retry(
    short_grace_server: ServeProcess,
) -> None:
    server = short_grace_server
    answers: list[httpx.Response | Exception] = []

    def compare() -> None:
        # Many times longer than the grace period: still running when it ends.
        try:
            answers.append(
                httpx.get(f"{server.url}/compare?repeats=1000&batch_size=256", timeout=60)
            )
        except Exception as error:  # noqa: BLE001 - reported by the assertions below
            answers.append(error)

    client = threading.Thread(target=compare)
    client.start()
    time.sleep(0.5)
    assert client.is_alive(), "the comparison finished before SIGTERM"
    server.process.send_signal(signal.SIGTERM)
    client.join(timeout=30)

    assert len(answers) == 1
    answer = answers[0]
    assert isinstance(answer, httpx.Response), f"{answer!r}\n{server.output()}"
    # Not uvicorn's bare 500: the envelope, a retryable status, and the connection closed.
    assert answer.status_code == 503, f"{answer.text}\n{server.output()}"
    assert answer.json()["error"]["code"] == "NOT_READY"
    assert "graceful shutdown period" in answer.json()["error"]["message"]
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"]
    assert server.process.wait(timeout=30) == 0, server.output()
    assert "Traceback" not in server.output()
