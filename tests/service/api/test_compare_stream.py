"""``/compare`` as progress lines (``Accept: application/x-ndjson`` or ``stream=true``):
queued, started, progress, then the result or an error, through a real uvicorn; a client that
hangs up mid-stream still frees the slot; the plain JSON answer is unchanged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sepconv_contract.schemas import CompareResponse
from service.core.comparison import ComparisonProgress, run_comparison, synthetic_image
from service.core.registry import ModelEntry
from service.process.admission import LOCK_FILE, TICKET_FILE
from service.process.settings import Settings
from tests.helpers.servers import live_server
from tests.service.api.test_compare_admission import held_elsewhere
from tests.service.api.test_compare_cancellation import SlowEngine

pytestmark = pytest.mark.network

NDJSON = {"Accept": "application/x-ndjson"}
BUDGET_S = 4.0
WAIT_S = 2.0
QUICK = {"repeats": 2, "warmup": 1, "models": "separable"}
# Far more than the budget allows: it stops at the budget unless cancelled first.
LONG = {"repeats": 1000, "warmup": 0, "batch_size": 64}


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream-lock")


@pytest.fixture(scope="module")
def url(exported_models: Path, lock_dir: Path) -> Iterator[str]:
    settings = Settings(
        model_dir=exported_models,
        warmup_runs=1,
        compare_lock_dir=lock_dir,
        compare_budget_s=BUDGET_S,
        compare_wait_s=WAIT_S,
        compare_max_waiting=1,
        compare_duty=1.0,
    )
    with live_server(settings) as base:
        yield base


def events(url: str, params: dict[str, Any], headers: dict[str, str] = NDJSON) -> list[Any]:
    """Every line of a streamed comparison, parsed; asserts the stream's status and type."""
    with httpx.stream("GET", f"{url}/compare", params=params, headers=headers, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in r.iter_lines() if line]


def test_compare_stream_reports_progress_then_the_plain_answer(url: str) -> None:
    lines = events(url, {**QUICK, "repeats": 20})

    kinds = [line["event"] for line in lines]
    assert kinds[0] == "started" and kinds[-1] == "result"
    assert set(kinds[1:-1]) <= {"progress"}
    started = lines[0]
    assert started["requested_repeats"] == 20 and started["budget_s"] == BUDGET_S
    for progress in lines[1:-1]:
        assert 0 <= progress["rounds_done"] <= progress["requested_repeats"] == 20
        assert progress["elapsed_s"] >= 0 and progress["phase"] in {"warmup", "timing"}
    result = CompareResponse.model_validate(lines[-1])
    assert result.repeats == result.requested_repeats == 20 and not result.stopped_at_budget


def test_compare_stream_query_flag_streams_and_plain_clients_get_json(url: str) -> None:
    assert events(url, {**QUICK, "stream": "true"}, headers={})[-1]["event"] == "result"

    plain = httpx.get(f"{url}/compare", params=QUICK, timeout=60)
    assert plain.headers["content-type"] == "application/json"
    assert "event" not in plain.json()
    CompareResponse.model_validate(plain.json())


def test_compare_stream_progress_counts_rounds_and_says_it_stopped_at_the_budget(url: str) -> None:
    lines = events(url, LONG)

    rounds = [line["rounds_done"] for line in lines if line["event"] == "progress"]
    assert len(rounds) >= 2 and rounds == sorted(rounds) and rounds[-1] > 0
    result = lines[-1]
    assert result["event"] == "result" and result["stopped_at_budget"] is True
    assert rounds[-1] <= result["repeats"] < result["requested_repeats"] == 1000


def test_compare_stream_tells_a_queued_client_then_runs(url: str, lock_dir: Path) -> None:
    with held_elsewhere(lock_dir / LOCK_FILE, deadline_in_s=3.0) as holder:
        assert holder.stdin is not None
        threading.Timer(0.8, holder.stdin.close).start()
        lines = events(url, QUICK)

    queued = [line for line in lines if line["event"] == "queued"]
    assert lines[0]["event"] == "queued" and len(queued) >= 2
    assert 1 <= queued[0]["running_ends_in_s"] <= 3 and queued[0]["wait_at_most_s"] == WAIT_S
    assert queued[-1]["waited_s"] > queued[0]["waited_s"]
    assert [line["event"] for line in lines[len(queued) :]][0] == "started"
    assert lines[-1]["event"] == "result"


def test_compare_stream_queued_past_the_wait_ends_with_an_error_line(
    url: str, lock_dir: Path
) -> None:
    with held_elsewhere(lock_dir / LOCK_FILE):
        lines = events(url, QUICK)

    assert {line["event"] for line in lines[:-1]} == {"queued"}
    error = lines[-1]
    assert error["event"] == "error" and error["status"] == 503
    assert error["error"]["code"] == "OVERLOADED" and error["error"]["request_id"]
    assert "a comparison is already running" in error["error"]["message"]


def test_compare_stream_refused_before_it_starts_gets_a_plain_error(
    url: str, lock_dir: Path
) -> None:
    # The one ticket taken: refused at once, with its status, before any line is sent.
    with held_elsewhere(lock_dir / LOCK_FILE), held_elsewhere(lock_dir / TICKET_FILE.format(0)):
        full = httpx.get(f"{url}/compare", params=QUICK, headers=NDJSON, timeout=30)
    invalid = httpx.get(f"{url}/compare", params={"repeats": 0}, headers=NDJSON, timeout=30)

    assert (full.status_code, full.json()["error"]["code"]) == (503, "OVERLOADED")
    assert int(full.headers["Retry-After"]) >= 1
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (422, "VALIDATION_ERROR")


def test_compare_stream_abandoned_by_its_client_frees_the_slot(url: str) -> None:
    with httpx.stream("GET", f"{url}/compare", params=LONG, headers=NDJSON, timeout=60) as r:
        for line in r.iter_lines():
            event = json.loads(line)
            if event["event"] == "progress" and event["rounds_done"] >= 1:
                break
    # Closed with most of the budget to go: the next comparison need not wait for it.
    started = time.monotonic()
    response = httpx.get(f"{url}/compare", params=QUICK, timeout=30)

    assert response.status_code == 200, response.text
    assert time.monotonic() - started < BUDGET_S / 2


def test_compare_openapi_documents_the_stream(url: str) -> None:
    operation = httpx.get(f"{url}/openapi.json").json()["paths"]["/compare"]["get"]
    content = operation["responses"]["200"]["content"]

    assert {"application/json", "application/x-ndjson"} <= set(content)
    events_documented = [
        variant.get("properties", {}).get("event", {}).get("const")
        for variant in content["application/x-ndjson"]["schema"]["oneOf"]
    ]
    assert {"queued", "started", "progress"} <= set(events_documented)
    assert any(p["name"] == "stream" for p in operation["parameters"])


def test_run_comparison_reports_each_round_with_its_phase() -> None:
    reports: list[ComparisonProgress] = []
    entry = ModelEntry("separable", None, 1, "tensorflow", "ready")

    answer = run_comparison(
        [(entry, SlowEngine()), (entry, SlowEngine())],
        synthetic_image(),
        repeats=4,
        batch_size=1,
        warmup=2,
        uploaded=False,
        progress=reports.append,
    )

    assert [(r.phase, r.warmup_done, r.rounds_done) for r in reports] == [
        ("warmup", 1, 0),
        ("warmup", 2, 0),
        ("timing", 2, 1),
        ("timing", 2, 2),
        ("timing", 2, 3),
        ("timing", 2, 4),
    ]
    assert answer.repeats == 4 and answer.warmup_done == 2
