"""Start ``sepconv-serve`` in its own process for a benchmark or a load run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_GAUGE = re.compile(r"^(sepconv_workers|sepconv_engine_threads) (\S+)$", re.M)


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


def wait_for_every_worker(
    url: str, server_pid: int, running: Callable[[], bool], timeout_s: float
) -> bool:
    """Poll ``/metrics`` until every worker process serves (``sepconv_workers``, the sum of
    the workers whose models are loaded, counts them all).

    Ready means one worker answers; a load generator that connects before the others are
    would keep all its connections on that one, and measure one worker.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            serving, _ = serving_gauges(httpx.get(f"{url}/metrics", timeout=5).text)
        except httpx.TransportError:
            serving = None
        if serving is not None and serving >= len(worker_pids(server_pid)):
            return True
        if not running() or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def serving_gauges(metrics_text: str) -> tuple[int | None, int | None]:
    """``sepconv_workers`` and ``sepconv_engine_threads`` from a /metrics answer."""
    values = {name: int(float(value)) for name, value in _GAUGE.findall(metrics_text)}
    return values.get("sepconv_workers"), values.get("sepconv_engine_threads")


def worker_pids(server_pid: int) -> list[int]:
    """The processes that serve: uvicorn's spawned workers, or the server itself alone."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)$", text, re.M)
        if parent and int(parent.group(1)) == server_pid and b"spawn_main" in command:
            children.append(int(status.parent.name))
    return sorted(children) or [server_pid]


@contextmanager
def running_service(
    model_dir: Path,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[ServiceProcess]:
    """``python -m service`` on a free loopback port, yielded once ``/health/ready`` is 200
    and every worker serves."""
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

    def running() -> bool:
        return process.poll() is None

    try:
        ready = wait_until_ready(url, running, ready_timeout_s)
        if not ready or not wait_for_every_worker(url, process.pid, running, ready_timeout_s):
            detail = f"; its log:\n{log.read_text()}" if log is not None else ""
            raise SystemExit(f"the service did not become ready{detail}")
        yield ServiceProcess(url, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
