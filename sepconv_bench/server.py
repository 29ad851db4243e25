"""Start ``sepconv-serve`` in its own process for a benchmark or a load run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    pid: int


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    url: str, running: Callable[[], bool], timeout_s: float, poll_s: float = 0.2
) -> bool:
    """Poll ``GET url/health/ready`` until it answers 200 (True), or until the server stops
    running or ``timeout_s`` passes (False)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if not running() or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


@contextmanager
def running_service(
    model_dir: Path,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[ServiceProcess]:
    """``python -m service`` on a free loopback port, yielded once ``/health/ready`` is 200."""
    port = free_port()
    env = {
        **os.environ,
        "SEPCONV_MODEL_DIR": str(model_dir),
        "SEPCONV_PORT": str(port),
        "SEPCONV_HOST": "127.0.0.1",
        "SEPCONV_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    sink = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    finally:
        if log is not None and not isinstance(sink, int):
            sink.close()
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, lambda: process.poll() is None, ready_timeout_s):
            detail = f"; its log:\n{log.read_text()}" if log is not None else ""
            raise SystemExit(f"the service did not become ready{detail}")
        yield ServiceProcess(url, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
