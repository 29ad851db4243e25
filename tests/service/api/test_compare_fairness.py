"""``/compare`` leaves the CPU to ``/predict`` part of the time (``SEPCONV_COMPARE_DUTY``), and
``sepconv_bench.comparison_attacks`` measures what a comparison costs ``/predict``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sepconv_bench.comparison_attacks import predict_during_comparisons
from service.process.settings import Settings
from tests.helpers.servers import live_server

pytestmark = pytest.mark.network

DUTY = 0.5


@pytest.fixture(scope="module")
def url(exported_models: Path) -> Iterator[str]:
    settings = Settings(
        model_dir=exported_models, warmup_runs=1, compare_duty=DUTY, compare_budget_s=2.0
    )
    with live_server(settings) as base:
        yield base


def test_compare_keeps_the_engines_busy_at_most_its_duty(url: str) -> None:
    params = {"repeats": 20, "warmup": 2, "batch_size": 8}
    body = httpx.get(f"{url}/compare", params=params, timeout=30).json()

    timed_s = sum(m["latency_ms"]["mean"] * body["repeats"] for m in body["models"]) / 1000.0
    # Warm-up calls are busy time too but untimed: the timed share stays under the duty.
    assert timed_s <= DUTY * body["elapsed_s"] * 1.1, body


def test_predict_during_comparisons_reports_both_series(url: str) -> None:
    result = predict_during_comparisons(
        url,
        predicts=5,
        compare_params={"repeats": "5", "warmup": "0", "batch_size": "4"},
        settle_s=0.1,
        compare_timeout_s=10.0,
    )

    assert result.idle.requests == result.during.requests == 5
    assert result.idle.non_200 == result.during.non_200 == 0
    assert result.compare_statuses.get(200, 0) >= 1
    assert 0 < result.idle.p50_ms <= result.idle.p99_ms <= result.idle.max_ms
    figures = result.as_dict()
    assert {"p50_ratio", "p99_ratio", "idle", "during"} <= set(figures)
