"""``SEPCONV_WORKERS=2``: two real server processes on one port, their metrics summed; and the
default, auto, starting one per CPU."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sepconv_client.client import SepconvClient

from service.core.cpus import available_cpus
from service.process.workers import host_plan
from tests.helpers.images import image_bytes
from tests.helpers.servers import (
    SERVE,
    ServeProcess,
    free_port,
    kill_process_group,
    serve_process,
    wait_until_ready,
)

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
    env = {
        "SEPCONV_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # A worker killed while its supervisor pings it is noticed only after this timeout.
        "SEPCONV_WORKER_START_TIMEOUT_S": "10",
    }
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
    # A new connection per request lets either worker take it. No retries: a worker accepts
    # connections only once its models are loaded, so none answers 503 NOT_READY.
    for _ in range(REQUESTS):
        with SepconvClient(server.url, max_retries=0) as client:
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


def test_sighup_replaces_workers_one_by_one_without_refusing_a_request(
    exported_models: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(exported_models, models)
    env = {"SEPCONV_WORKERS": "2", "SEPCONV_GRACEFUL_TIMEOUT_S": "5"}
    with serve_process(models, tmp_path / "server.log", env) as server:
        before = _serving(server)
        assert len(before) == 2
        assert _model_version(server.url, "separable") == 1
        # A new version on disk is what the replacement workers load.
        shutil.copytree(models / "separable" / "1", models / "separable" / "2")

        answers: list[str] = []
        stop = threading.Event()

        def predict_until_stopped() -> None:
            while not stop.is_set():
                # A fresh connection each time, so the new workers get some. A worker that
                # retires closes a connection it accepted but had not read yet; the client
                # retries that (predictions have no side effects), but never a 503.
                try:
                    with SepconvClient(server.url, max_retries=2) as client:
                        answer = client.predict(image_bytes(), model="separable")
                    answers.append(answer.predictions[0].model)
                except Exception as error:  # noqa: BLE001 - reported by the assertion below
                    answers.append(repr(error))

        client = threading.Thread(target=predict_until_stopped)
        client.start()
        try:
            time.sleep(0.5)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 120
            while _serving(server) & before or len(_serving(server)) < 2:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.5)
            time.sleep(0.5)
        finally:
            stop.set()
            client.join(timeout=60)

        assert answers and set(answers) == {"separable"}, (answers[:20], server.output())
        # No worker answered while still loading (the retired workers' counts included).
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert 'endpoint="/predict",method="POST",status="200"' in metrics
        assert 'status="503"' not in metrics, metrics
        assert _model_version(server.url, "separable") == 2
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.output()


def _serving(server: ServeProcess) -> set[int]:
    """The live uvicorn workers (not the resource tracker) under the supervisor."""
    return {
        pid
        for pid in _worker_pids(server.process.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def _model_version(url: str, name: str) -> int:
    version = httpx.get(f"{url}/models/{name}", timeout=5).json()["version"]
    assert isinstance(version, int)
    return version


def test_a_killed_worker_is_replaced_and_its_live_gauges_dropped(
    workers: tuple[ServeProcess, Path],
) -> None:
    server, metrics_dir = workers
    victim = min(_serving(server))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while victim in _serving(server) or len(_serving(server)) < 2:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)
    # The replacement accepts connections once loaded; until then its sibling serves.
    with SepconvClient(server.url, max_retries=0) as client:
        assert client.predict(image_bytes(), model="separable").predictions

    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))
    assert 'sepconv_model_info{architecture="separable"' in text


def test_workers_that_cannot_start_stop_the_server_with_status_3(
    exported_models: Path, tmp_path: Path
) -> None:
    # A TensorFlow that fails to import: the supervisor never imports it, only the workers do.
    broken = tmp_path / "broken" / "tensorflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("tensorflow is broken here")\n')
    env = {
        **os.environ,
        "PYTHONPATH": str(broken.parent),
        "SEPCONV_WORKERS": "2",
        # A worker that dies while its supervisor pings it is noticed after this timeout.
        "SEPCONV_WORKER_START_TIMEOUT_S": "5",
        "SEPCONV_MODEL_DIR": str(exported_models),
        "SEPCONV_PORT": str(free_port()),
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SERVE)], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        status = process.wait(timeout=60)
    finally:
        kill_process_group(process)
    output = log.read_text(errors="replace")
    assert status == 3, output
    assert "this worker cannot start" in output and "tensorflow is broken here" in output


def test_defaults_start_one_worker_per_cpu_and_report_it(
    exported_models: Path, tmp_path: Path
) -> None:
    # No SEPCONV_WORKERS at all: auto, one worker per CPU (2 on a 2-CPU machine) where the
    # memory is ample and no GPU is visible.
    planned = host_plan("auto", ["tensorflow"])
    if not planned.gpu_visible and (planned.available_memory_bytes or 0) >= 8 * 1024**3:
        assert planned.workers == available_cpus(), planned
    env = {
        **{k: v for k, v in os.environ.items() if k != "SEPCONV_WORKERS"},
        "SEPCONV_MODEL_DIR": str(exported_models),
        "SEPCONV_PORT": str(port := free_port()),
        "SEPCONV_WARMUP_RUNS": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SERVE)], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServeProcess(process, port, log)
    try:
        assert wait_until_ready(server.url, lambda: process.poll() is None, 120), server.output()
        deadline = time.monotonic() + 60
        while len(_serving(server)) < planned.workers and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _serving(server) if planned.workers > 1 else {process.pid}
        assert len(workers) == planned.workers, server.output()
        # Each worker counts itself in /metrics once its models are loaded.
        serving = f"sepconv_workers {planned.workers:.1f}"
        while serving not in (text := httpx.get(f"{server.url}/metrics", timeout=5).text):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
    finally:
        kill_process_group(process)
    # Each worker's engines share the CPUs between them.
    threads = max(1, available_cpus() // planned.workers)
    assert f"sepconv_engine_threads {threads:.1f}" in text, text
