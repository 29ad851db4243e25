"""The compare view over several runtimes, in a real headless Chromium on a real uvicorn: the
visitor picks runtimes among those loaded, and sees the runtime matrix (a table) and the
separable speed-up on each runtime against the MAC ratio (a chart), with the API's numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from service.process.settings import Settings
from tests.helpers.browser import assert_not_busy
from tests.helpers.servers import live_server
from tests.service.api.test_web_page import MODELS

PAGE_TAB = "Compare"  # the tab the shared ``page`` fixture opens (conftest.py)
pytestmark = [pytest.mark.browser, pytest.mark.network, pytest.mark.slow]

# Loaded beside the serving runtime (tensorflow); onnxruntime and litert are exported, not loaded.
LOADED = ["tensorflow", "onnxruntime-int8", "litert-int8"]
NOT_LOADED = ["onnxruntime", "litert"]


@pytest.fixture(scope="module")
def base_url(
    runtime_artifact_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    settings = Settings(
        model_dir=runtime_artifact_models,
        compare_runtimes=",".join(LOADED[1:]),
        warmup_runs=1,
        compare_lock_dir=tmp_path_factory.mktemp("matrix-lock"),
        compare_duty=1.0,
    )
    with live_server(settings) as url:
        yield url


# The page's number formats (service/static/ui.js): toFixed rounds the exact binary value,
# ties away from zero, as Decimal does with ROUND_HALF_UP.
def fixed(value: float, digits: int) -> str:
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def ms(value: float) -> str:
    return f"{fixed(value, 2 if value < 1 else 1 if value < 100 else 0)} ms"


def percent(fraction: float, digits: int = 1) -> str:
    return f"{fixed(fraction * 100, digits)}%"


def runtime_box(page: Page, runtime: str) -> Locator:
    return page.get_by_label(runtime, exact=True)


def column(row: Locator, name: str) -> Locator:
    return row.locator(f'td[data-column="{name}"]')


def test_web_page_compare_matrix_shows_the_apis_numbers(page: Page) -> None:
    for runtime in LOADED:
        expect(runtime_box(page, runtime)).to_be_enabled()
    for runtime in NOT_LOADED:
        expect(runtime_box(page, runtime)).to_be_disabled()
    expect(runtime_box(page, "tensorflow")).to_be_checked()  # the serving runtime
    expect(page.locator("#runtime-hint")).to_contain_text(
        "Not loaded: onnxruntime, litert (start the service with SEPCONV_COMPARE_RUNTIMES"
    )

    runtime_box(page, "onnxruntime-int8").check()
    page.get_by_label("Repeats").fill("3")
    answers: list[tuple[str, str]] = []

    def record(route: Route) -> None:
        # The page reads the answer as a stream, which the browser does not keep: pass it on
        # through here (whole, so progress arrives at once) and keep a copy.
        response = route.fetch()
        answers.append((route.request.url, response.text()))
        route.fulfill(response=response)

    page.route("**/compare?*", record)
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#compare-outcome")).to_contain_text("Done: 3 runs")
    ((url, body),) = answers
    assert "runtimes=tensorflow%2Connxruntime-int8" in url
    result = json.loads(body.splitlines()[-1])
    assert result["event"] == "result"
    asked = ["tensorflow", "onnxruntime-int8"]
    assert result["matrix"]["runtimes"] == asked

    expect(page.locator("#compare-heading")).to_be_focused()
    table = page.locator("#matrix-table")
    expect(table.locator("tbody tr")).to_have_count(len(MODELS) * len(asked))
    for entry in result["models"]:
        row = table.locator(f'tr[data-model="{entry["model"]}"][data-runtime="{entry["runtime"]}"]')
        accuracy = entry["runtime_accuracy"]
        interval = accuracy["test_accuracy_interval"]
        expect(row.locator('th[scope="row"]')).to_have_text(entry["model"])
        expect(column(row, "p50")).to_have_text(ms(entry["latency_ms"]["p50"]))
        expect(column(row, "images-per-second")).to_have_text(
            f"{math.floor(entry['images_per_second'] + 0.5):,}"
        )
        expect(column(row, "x-tf")).to_have_text(f"{fixed(entry['speedup_over_tensorflow'], 2)}x")
        expect(column(row, "top-1")).to_have_text(
            f"{percent(accuracy['test_accuracy'])} "
            f"({percent(interval['low'])}–{percent(interval['high'])})"
        )
        expect(column(row, "agreement")).to_have_text(percent(accuracy["agreement"], 2))
    for runtime in asked:
        expect(table.locator(f'th[scope="rowgroup"]:has-text("{runtime}")')).to_have_count(1)

    chart = page.locator("#speedup-chart svg")
    expect(chart).to_be_visible()
    expect(chart.locator(".mac-ratio text")).to_have_text("8.35x fewer MACs")
    for row in result["matrix"]["separable_speedups"]:
        bar = chart.locator(f'g.speedup[data-runtime="{row["runtime"]}"]')
        expect(bar).to_have_attribute("data-speedup", str(row["speedup"]))
        expect(bar).to_have_attribute("data-efficiency", str(row["depthwise_efficiency"]))
        share = fixed(row["depthwise_efficiency"] * 100, 0)
        expect(bar.locator(".value")).to_have_text(f"{fixed(row['speedup'], 1)}x ({share}%)")
        expect(bar.locator(".accuracy")).to_contain_text("top-1 ")
    best = max(result["matrix"]["separable_speedups"], key=lambda r: r["speedup"])
    expect(page.locator("#matrix-verdict")).to_contain_text(
        f"Separable convolutions pay most on {best['runtime']}: separable is "
        f"{fixed(best['speedup'], 1)}x faster there than regular"
    )
    assert "8.35x" in (chart.get_attribute("aria-label") or "")
    expect(page.locator("#alert")).to_be_empty()
    assert_not_busy(page)


def test_web_page_compare_needs_a_runtime_and_shows_no_matrix_for_one(page: Page) -> None:
    runtime_box(page, "tensorflow").uncheck()
    page.get_by_label("Repeats").fill("2")
    page.get_by_role("button", name="Run").click()

    # The browser refuses the form: no request, and it says why.
    message = runtime_box(page, "tensorflow").evaluate("(box) => box.validationMessage")
    assert message == "Choose at least one runtime to compare."
    expect(page.locator("#compare-results")).to_be_hidden()

    runtime_box(page, "litert-int8").check()
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#compare-outcome")).to_contain_text("Done: 2 runs")
    expect(page.locator("#runtime-matrix")).to_be_hidden()  # one runtime: the summary says it
    expect(page.locator('#compare-table th[data-runtime="litert-int8"]')).to_have_count(2)
