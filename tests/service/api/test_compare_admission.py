"""``/compare`` admission: one comparison at a time per server (a lock file every worker
shares), a bounded wait behind it, a bounded queue, a budget that covers warm-up, and a query
that refuses what names nothing."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.errors import ApiError
from service.process.admission import LOCK_FILE, TICKET_FILE, ComparisonGate
from service.process.settings import Settings
from tests.helpers.apps import ready_client

WAIT_S = 1.5
BUDGET_S = 0.5
QUICK = {"repeats": 1, "warmup": 0, "models": "separable"}

# Another worker, as far as the lock is concerned: a process that holds a file's flock until
# its stdin closes, having written a deadline into it as a running comparison does.
HOLDER = """
import fcntl, sys, time
held = open(sys.argv[1], "w")
fcntl.flock(held, fcntl.LOCK_EX)
held.write(str(time.time() + float(sys.argv[2])))
held.flush()
print("held", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def held_elsewhere(path: Path, deadline_in_s: float = 7.0) -> Iterator[subprocess.Popen[str]]:
    """``path`` locked by another process until the block ends or its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(deadline_in_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=10)


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compare-lock")


@pytest.fixture(scope="module")
def gated(exported_models: Path, lock_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=exported_models,
        warmup_runs=1,
        compare_lock_dir=lock_dir,
        compare_wait_s=WAIT_S,
        compare_max_waiting=1,
        compare_budget_s=BUDGET_S,
        compare_duty=1.0,
    )
    with ready_client(settings) as ready:
        yield ready


def error_of(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]  # type: ignore[attr-defined]


# One comparison at a time per server, every worker included


def test_compare_behind_another_workers_comparison_waits_then_is_overloaded(
    gated: TestClient, lock_dir: Path
) -> None:
    with held_elsewhere(lock_dir / LOCK_FILE, deadline_in_s=7.0):
        started = time.monotonic()
        response = gated.get("/compare", params=QUICK)
        waited = time.monotonic() - started

    assert error_of(response) == (503, "OVERLOADED")
    assert WAIT_S <= waited < WAIT_S + 2.0
    # Taken from the deadline the running comparison wrote, never past the budget.
    assert 1 <= int(response.headers["Retry-After"]) <= 7
    message = response.json()["error"]["message"]
    assert "a comparison is already running" in message and "retry after" in message


def test_compare_queued_behind_another_runs_once_it_is_done(
    gated: TestClient, lock_dir: Path
) -> None:
    with held_elsewhere(lock_dir / LOCK_FILE) as holder:
        assert holder.stdin is not None
        threading.Timer(0.3, holder.stdin.close).start()
        response = gated.get("/compare", params=QUICK)

    assert response.status_code == 200, response.text


def test_compare_is_refused_at_once_when_the_queue_is_full(
    gated: TestClient, lock_dir: Path
) -> None:
    # compare_max_waiting=1, and that one ticket is taken by a request of another worker.
    with held_elsewhere(lock_dir / LOCK_FILE), held_elsewhere(lock_dir / TICKET_FILE.format(0)):
        started = time.monotonic()
        response = gated.get("/compare", params=QUICK)
        waited = time.monotonic() - started

    assert error_of(response) == (503, "OVERLOADED")
    assert waited < WAIT_S
    assert "1 more are waiting" in response.json()["error"]["message"]
    assert int(response.headers["Retry-After"]) >= 1


def test_gate_on_shutdown_stops_what_runs_and_refuses_what_comes(tmp_path: Path) -> None:
    gate = ComparisonGate(tmp_path, wait_s=5.0, max_waiting=2, budget_s=30.0)
    running = threading.Event()

    async def scenario() -> ApiError:
        async with gate.admit(running):
            gate.stop_all()
        with pytest.raises(ApiError) as refused:
            async with gate.admit(threading.Event()):
                pass
        return refused.value

    refused = asyncio.run(scenario())

    assert running.is_set()
    assert (refused.status_code, refused.code) == (503, "NOT_READY")


# The budget covers warm-up


def test_compare_budget_covers_warmup(gated: TestClient) -> None:
    started = time.monotonic()
    response = gated.get("/compare", params={"repeats": 1000, "warmup": 100, "batch_size": 32})
    took = time.monotonic() - started

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stopped_at_budget"] is True
    assert body["warmup_done"] < 100 and 1 <= body["repeats"] < 1000
    # Past the budget by at most the one timed round every answer needs.
    assert body["elapsed_s"] < BUDGET_S + 3.0 and took < BUDGET_S + 5.0


def test_compare_within_its_budget_says_so(gated: TestClient) -> None:
    body = gated.get("/compare", params=QUICK).json()

    assert body["stopped_at_budget"] is False
    assert body["warmup_done"] == 0 and body["repeats"] == 1
    assert body["elapsed_s"] >= 0


# A query that names nothing is the client's mistake, never a 500


@pytest.mark.parametrize("params", [{"models": ","}, {"runtimes": ","}, {"runtimes": " , "}])
def test_compare_query_naming_nothing_is_validation_error(
    client: TestClient, params: dict[str, str]
) -> None:
    response = client.get("/compare", params={"repeats": 1, **params})

    assert error_of(response) == (422, "VALIDATION_ERROR")


def test_compare_both_runtimes_pass_the_query_check(client: TestClient) -> None:
    # Only TensorFlow is loaded here: past validation, the answer is the runtime's 409.
    response = client.get("/compare", params={"repeats": 1, "runtimes": "tensorflow,onnxruntime"})

    assert error_of(response) == (409, "RUNTIME_UNAVAILABLE")


def test_compare_openapi_names_the_runtimes_and_documents_409_and_503(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for method in ("get", "post"):
        operation = paths["/compare"][method]
        runtimes = next(p for p in operation["parameters"] if p["name"] == "runtimes")
        pattern = next(s["pattern"] for s in runtimes["schema"]["anyOf"] if "pattern" in s)
        assert "tensorflow" in pattern and "onnxruntime" in pattern
        assert {"409", "503"} <= set(operation["responses"])
        assert "RUNTIME_UNAVAILABLE" in operation["responses"]["409"]["description"]
