"""A real uvicorn serving the app on a free loopback port: in a thread, or as ``sepconv-serve``."""

from __future__ import annotations

import contextlib
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
import uvicorn

from service.main import create_app
from service.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(settings: Settings, ready_timeout_s: float = 90.0) -> Iterator[str]:
    """Yield the base URL once ``/health/ready`` answers 200; stop the server afterwards."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"server on port {port} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


SERVE = Path(sys.executable).with_name("sepconv-serve")


@dataclass
class ServeProcess:
    """The real ``sepconv-serve`` command running in a child process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serve_process(
    model_dir: Path, log: Path, env: dict[str, str], ready_timeout_s: float = 120.0
) -> Iterator[ServeProcess]:
    """``sepconv-serve`` on ``model_dir``, yielded once ready; killed if still up afterwards."""
    assert SERVE.is_file(), f"{SERVE} is missing; install the project: pip install -e '.[dev]'"
    port = free_port()
    full_env = {
        **os.environ,
        "SEPCONV_MODEL_DIR": str(model_dir),
        "SEPCONV_PORT": str(port),
        "SEPCONV_WARMUP_RUNS": "1",
        **env,
    }
    with log.open("wb") as sink:
        # Its own process group, so that cleanup also reaches any worker processes.
        process = subprocess.Popen(
            [str(SERVE)],
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = ServeProcess(process, port, log)
    try:
        deadline = time.monotonic() + ready_timeout_s
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
        kill_process_group(process)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of ``process``'s group (a supervisor and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
