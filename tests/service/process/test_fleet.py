"""Rollouts with several workers: a worker whose models fail never serves, respawns match the
versions the others serve, and the old workers keep serving when a new version is broken."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.process import fleet
from tests.helpers.images import image_bytes
from tests.helpers.servers import ServeProcess, serve_process

pytestmark = pytest.mark.network

PROBES = 20


@dataclass
class Fleet:
    server: ServeProcess
    models: Path
    reports: Path

    def workers(self) -> set[int]:
        """The live uvicorn workers under the supervisor (not multiprocessing's tracker)."""
        pid = self.server.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {
            int(child)
            for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        }

    def wait_for_ready_workers(self, count: int = 2, timeout_s: float = 120) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            ready = {r.pid for r in fleet.live_reports(self.reports) if r.ready}
            if len(ready) >= count and ready <= self.workers():
                return ready
            assert time.monotonic() < deadline, self.server.output()
            time.sleep(0.3)

    def wait_for_log(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.server.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.server.output()}"
            time.sleep(0.3)

    def probe(self, path: str) -> list[httpx.Response]:
        """``PROBES`` answers to ``path``, each on a new connection so every worker gets some."""
        answers = []
        for _ in range(PROBES):
            with httpx.Client(base_url=self.server.url, timeout=10) as client:
                answers.append(client.get(path))
        return answers


@pytest.fixture
def two_workers(exported_models: Path, tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    shutil.copytree(exported_models, models)
    metrics = tmp_path / "metrics"
    env = {
        "SEPCONV_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "SEPCONV_GRACEFUL_TIMEOUT_S": "5",
        # How long a replacement may take to load, and how soon a killed worker is noticed.
        "SEPCONV_WORKER_START_TIMEOUT_S": "60",
    }
    with serve_process(models, tmp_path / "server.log", env) as server:
        started = Fleet(server, models, fleet.fleet_folder(metrics) or metrics)
        started.wait_for_ready_workers()
        yield started


def publish(source: Path, target: Path, *, broken: bool = False) -> None:
    """Copy a version beside its place, then rename it in (the documented procedure).
    ``broken``: every file a complete version has, but a graph that does not load."""
    staging = target.with_name(f".tmp-{target.name}")
    shutil.copytree(source, staging)
    if broken:
        (staging / "saved_model.pb").write_bytes(b"not a graph")
    staging.rename(target)


def served_versions(answers: list[httpx.Response]) -> set[int]:
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return {a.json()["version"] for a in answers}


def test_sighup_onto_a_broken_version_keeps_the_old_workers_serving(two_workers: Fleet) -> None:
    before = two_workers.workers()
    publish(two_workers.models / "regular" / "1", two_workers.models / "regular" / "2", broken=True)

    two_workers.server.process.send_signal(signal.SIGHUP)
    two_workers.wait_for_log("rollout stopped")

    log = two_workers.server.log.read_text()
    stopped = next(json.loads(line) for line in log.splitlines() if "rollout stopped" in line)
    assert stopped["reason"].startswith("regular: failed"), stopped
    assert "this replacement worker does not serve" in log
    assert two_workers.workers() == before
    assert {a.status_code for a in two_workers.probe("/health/ready")} == {200}
    assert served_versions(two_workers.probe("/models/regular")) == {1}


def test_a_respawned_worker_serves_the_versions_the_others_serve(two_workers: Fleet) -> None:
    # A newer version is copied in; only SIGHUP may roll it out, not a worker that happens to die.
    publish(two_workers.models / "separable" / "1", two_workers.models / "separable" / "2")
    victim = min(two_workers.workers())
    os.kill(victim, signal.SIGKILL)
    two_workers.wait_for_log("starting a replacement on the versions the others serve")
    ready = two_workers.wait_for_ready_workers()
    assert victim not in ready

    assert served_versions(two_workers.probe("/models/separable")) == {1}
    readiness = two_workers.probe("/health/ready")
    assert {a.status_code for a in readiness} == {200}
    assert {a.json()["versions_differ"] is None for a in readiness} == {True}

    # SIGHUP does move every worker to the new version.
    two_workers.server.process.send_signal(signal.SIGHUP)
    two_workers.wait_for_log("rollout complete")
    assert served_versions(two_workers.probe("/models/separable")) == {2}


def test_a_respawn_whose_models_fail_is_retried_while_the_other_worker_serves(
    two_workers: Fleet, tmp_path: Path
) -> None:
    # The version the fleet serves is gone from disk and the newest one is broken.
    served = two_workers.models / "regular" / "1"
    publish(served, two_workers.models / "regular" / "2", broken=True)
    served.rename(tmp_path / "regular-1-elsewhere")
    victim = min(two_workers.workers())
    os.kill(victim, signal.SIGKILL)
    two_workers.wait_for_log("a replacement worker's models did not load")

    log = two_workers.server.log.read_text()
    failed = next(json.loads(line) for line in log.splitlines() if "did not load;" in line)
    assert failed["reason"].startswith("regular: failed"), failed
    assert "Traceback" not in log
    # The survivor alone serves, and serves both models.
    assert {a.status_code for a in two_workers.probe("/health/ready")} == {200}
    with httpx.Client(base_url=two_workers.server.url, timeout=10) as client:
        answer = client.post("/predict", files={"file": ("a.png", image_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert {p["model"] for p in answer.json()["predictions"]} == {"regular", "separable"}

    # Once the version is back, the next retry brings the fleet back to two workers.
    (tmp_path / "regular-1-elsewhere").rename(served)
    ready = two_workers.wait_for_ready_workers(timeout_s=150)
    assert len(ready) == 2 and victim not in ready
    assert served_versions(two_workers.probe("/models/regular")) == {1}


def test_reports_say_which_models_the_workers_serve_at_different_versions() -> None:
    reports = [
        fleet.WorkerReport(pid=1, ready=True, versions={"regular": 1, "separable": 2}, problems={}),
        fleet.WorkerReport(pid=2, ready=True, versions={"regular": 1, "separable": 3}, problems={}),
    ]
    assert fleet.differing_versions(reports) == {"separable": [2, 3]}
    assert fleet.differing_versions(reports[:1]) == {}


def test_the_pinned_versions_reach_the_worker_environment_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(fleet.ROLE_ENV, raising=False)
    monkeypatch.delenv(fleet.PINNED_VERSIONS_ENV, raising=False)
    with fleet.worker_environment(fleet.REPLACEMENT, {"regular": 3}):
        assert fleet.is_replacement()
        assert fleet.pinned_versions() == {"regular": 3}
    assert not fleet.is_replacement()
    assert fleet.pinned_versions() == {}
    # Anything but {name: integer} pins nothing.
    for junk in ("[1]", "{bad", '{"regular": "3"}', '{"regular": true}'):
        monkeypatch.setenv(fleet.PINNED_VERSIONS_ENV, junk)
        assert fleet.pinned_versions() == {}
