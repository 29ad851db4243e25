"""Graceful shutdown of the real ``sepconv-serve`` process: SIGTERM drains, then exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port

pytestmark = pytest.mark.network

GRACE_S = 10.0
READY_TIMEOUT_S = 120.0
SERVE = Path(sys.executable).with_name("sepconv-serve")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def server(exported_models: Path, tmp_path: Path) -> Iterator[Server]:
    """``sepconv-serve`` on the test models, as a container would start it; killed if still up."""
    assert SERVE.is_file(), f"{SERVE} is missing; install the project: pip install -e '.[dev]'"
    port = free_port()
    env = {
        **os.environ,
        "SEPCONV_MODEL_DIR": str(exported_models),
        "SEPCONV_PORT": str(port),
        "SEPCONV_GRACEFUL_TIMEOUT_S": str(GRACE_S),
        "SEPCONV_WARMUP_RUNS": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(SERVE)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    started = Server(process, port, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, f"server exited early:\n{started.output()}"
            try:
                if httpx.get(f"{started.url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{started.output()}"
            time.sleep(0.2)
        yield started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_in_flight_requests_then_exits_zero(server: Server) -> None:
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
