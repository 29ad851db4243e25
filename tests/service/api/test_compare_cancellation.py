"""A comparison stops between engine calls once nobody wants it: its client hung up, or the
process is stopping; and it leaves the CPU to /predict part of the time (its duty cycle)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.core.comparison import ComparisonCancelled, run_comparison, synthetic_image
from service.core.latency import run_rounds
from service.core.registry import ModelEntry
from service.process.settings import Settings
from tests.helpers.servers import live_server, serve_process


def sleeper(seconds: float, log: list[str], name: str = "call") -> Callable[[], None]:
    def call() -> None:
        log.append(name)
        time.sleep(seconds)

    return call


# The timing loop


def test_run_rounds_counts_warmup_against_the_budget() -> None:
    log: list[str] = []

    rounds = run_rounds(
        [sleeper(0.01, log, "a"), sleeper(0.01, log, "b")],
        max_rounds=100,
        budget_s=0.1,
        warmup_rounds=1000,
    )

    assert rounds.stopped_at_budget and not rounds.cancelled
    assert rounds.warmup_rounds < 10 and [len(s) for s in rounds.samples] == [1, 1]
    assert rounds.elapsed_s < 0.5


def test_run_rounds_stops_between_calls_once_cancelled() -> None:
    cancel = threading.Event()
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # mid-round: the third round's first call
            cancel.set()

    rounds = run_rounds([call, call], max_rounds=1000, warmup_rounds=1, cancel=cancel)

    assert rounds.cancelled and not rounds.stopped_at_budget
    assert calls == 5 and [len(s) for s in rounds.samples] == [1, 1]  # whole rounds only


def test_run_rounds_cancelled_mid_warmup_round_returns() -> None:
    # It spun forever once: the flag ended the round, and the warm-up loop began the next.
    cancel = threading.Event()
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the second warm-up round's first call
            cancel.set()

    finished = threading.Event()

    def warm_up() -> None:
        run_rounds([call, call], max_rounds=10, warmup_rounds=100, cancel=cancel)
        finished.set()

    threading.Thread(target=warm_up, daemon=True).start()
    assert finished.wait(timeout=5), "run_rounds kept running after its flag was set"
    assert calls == 3


def test_run_rounds_rests_for_its_duty_cycle_and_a_cancel_ends_the_rest() -> None:
    log: list[str] = []
    rounds = run_rounds([sleeper(0.02, log)], max_rounds=10, duty=0.5)
    busy_s = sum(rounds.samples[0]) / 1000.0
    # Half the time busy: a rest as long as each call before the next (none after the last).
    rested_s = sum(rounds.samples[0][:-1]) / 1000.0
    assert rounds.elapsed_s >= busy_s + 0.95 * rested_s

    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    # A 1% duty cycle rests 99 times each call's 20 ms: about 2 s, unless cancelled.
    stopped = run_rounds([sleeper(0.02, log)], max_rounds=5, duty=0.01, cancel=cancel)
    assert stopped.cancelled and time.monotonic() - started < 1.0


class SlowEngine:
    """A tiny real engine that takes its time: 5 ms a call, uniform probabilities."""

    runtime = "tensorflow"
    device = "CPU:0"
    parameters = 10
    trainable_parameters = 10

    def predict(self, images: np.ndarray) -> np.ndarray:
        time.sleep(0.005)
        return np.full((len(images), 10), 0.1, np.float32)


def test_run_comparison_cancelled_has_no_answer() -> None:
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    entry = ModelEntry("separable", None, 1, "tensorflow", "ready")
    started = time.monotonic()

    with pytest.raises(ComparisonCancelled):
        run_comparison(
            [(entry, SlowEngine())],
            synthetic_image(),
            repeats=10_000,
            batch_size=1,
            warmup=0,
            uploaded=False,
            cancel=cancel,
        )
    assert time.monotonic() - started < 1.0


# Through a real server


@pytest.mark.network
def test_compare_abandoned_by_its_client_frees_the_slot(exported_models: Path) -> None:
    settings = Settings(
        model_dir=exported_models,
        warmup_runs=1,
        compare_budget_s=120.0,
        compare_wait_s=3.0,
        compare_duty=1.0,
    )
    with live_server(settings) as url:
        # Minutes of work; the client gives up after one second and hangs up.
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(
                f"{url}/compare",
                params={"repeats": 1000, "batch_size": 64, "warmup": 0},
                timeout=1.0,
            )
        started = time.monotonic()
        response = httpx.get(f"{url}/compare", params={"repeats": 1, "warmup": 0}, timeout=30.0)

    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 3.0


@pytest.mark.network
def test_sigterm_stops_a_long_comparison_within_the_grace_period(
    exported_models: Path, tmp_path: Path
) -> None:
    grace_s = 1.0
    env = {
        "SEPCONV_GRACEFUL_TIMEOUT_S": str(grace_s),
        "SEPCONV_COMPARE_BUDGET_S": "600",
        "SEPCONV_COMPARE_DUTY": "1",
        "SEPCONV_COMPARE_WAIT_S": "0",
    }
    with serve_process(exported_models, tmp_path / "server.log", env) as server:
        long = {"repeats": 1000, "batch_size": 256, "warmup": 0}
        answers: list[object] = []

        def compare() -> None:
            # Until it is admitted: a probe below may hold the slot for a moment.
            try:
                while (
                    answer := httpx.get(f"{server.url}/compare", params=long, timeout=120)
                ).status_code == 503:
                    time.sleep(0.05)
                answers.append(answer)
            except httpx.HTTPError as error:
                answers.append(error)

        client = threading.Thread(target=compare)
        client.start()
        # Running once a quick comparison is refused (no waiting here: compare_wait_s=0).
        deadline = time.monotonic() + 30
        while True:
            time.sleep(0.2)
            quick = httpx.get(f"{server.url}/compare", params={"repeats": 1}, timeout=30)
            if quick.status_code == 503:
                break
            assert time.monotonic() < deadline, "the long comparison never started"

        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        exit_code = server.process.wait(timeout=60)
        took = time.monotonic() - terminated
        client.join(timeout=10)

    assert exit_code == 0, server.output()
    # The grace period, then at most one engine call (batch 256) and the shutdown itself.
    assert took < grace_s + 5.0, server.output()
    assert answers and not client.is_alive()
