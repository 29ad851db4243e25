"""``SEPCONV_WORKERS=2``: two real server processes on one port, their metrics summed."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.client import SepconvClient
from tests.live_server import ServeProcess, serve_process
from tests.service_fixtures import image_bytes

pytestmark = pytest.mark.network

REQUESTS = 40
_PREDICT_200 = re.compile(
    r'^sepconv_requests_total\{endpoint="/predict",method="POST",status="200"\} (\S+)$', re.M
)


@pytest.fixture
def workers(exported_models: Path, tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # A stale file from an earlier run must not add its counts to this one.
    (metrics_dir / "counter_1.db").write_bytes(b"stale")
    env = {"SEPCONV_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with serve_process(exported_models, tmp_path / "server.log", env) as started:
        yield started, metrics_dir


def _worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()}


def test_two_workers_serve_and_report_one_sum(workers: tuple[ServeProcess, Path]) -> None:
    server, metrics_dir = workers
    # uvicorn's supervisor, plus multiprocessing's resource tracker.
    pids = _worker_pids(server.process.pid)
    assert len(pids) >= 2, server.output()

    image = image_bytes()
    # A new connection per request lets either worker take it; the client retries the
    # 503 NOT_READY of a worker still loading, as it would in production.
    for _ in range(REQUESTS):
        with SepconvClient(server.url, max_retries=20) as client:
            answer = client.predict(image, model="all")
        assert {p.model for p in answer.predictions} == {"regular", "separable"}

    # Every worker has written metric files, and /metrics adds them up, whichever answers.
    writers = {int(m.group(1)) for m in map(_pid_of, metrics_dir.glob("*.db")) if m}
    assert len(writers & pids) == 2, (writers, pids)
    assert not (metrics_dir / "counter_1.db").exists()
    for _ in range(4):
        text = httpx.get(f"{server.url}/metrics", timeout=5).text
        served = _PREDICT_200.search(text)
        assert served is not None, text
        assert float(served.group(1)) == REQUESTS

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0, server.output()
    assert not any(_alive(pid) for pid in pids)
    assert "Traceback" not in server.output()


def _pid_of(path: Path) -> re.Match[str] | None:
    return re.search(r"_(\d+)\.db$", path.name)


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True
