"""A real uvicorn serving the app on a free loopback port: in a thread, or as ``sepconv-serve``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from sepconv_bench.server import free_port, wait_until_ready
from service.main import create_app
from service.process.cli import _uvicorn_options
from service.process.settings import Settings


@contextlib.contextmanager
def live_server(settings: Settings, ready_timeout_s: float = 90.0) -> Iterator[str]:
    """Yield the base URL once ``/health/ready`` answers 200; stop the server afterwards."""
    port = free_port()
    # The command's own options (protocol, caps, deadlines), on a free loopback port.
    options = {
        **_uvicorn_options(settings),
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
    }
    config = uvicorn.Config(create_app(settings), **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, thread.is_alive, ready_timeout_s, poll_s=0.1):
            raise RuntimeError(f"server on port {port} did not become ready")
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
        # One process unless a test asks for more: the default, auto, follows the machine.
        "SEPCONV_WORKERS": "1",
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
        ready = wait_until_ready(started.url, lambda: process.poll() is None, ready_timeout_s)
        assert ready, f"not ready (exit status {process.poll()}):\n{started.output()}"
        yield started
    finally:
        kill_process_group(process)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of ``process``'s group (a supervisor and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
