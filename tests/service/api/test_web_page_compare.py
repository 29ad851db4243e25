"""The compare view tells the whole trade-off, in a real headless Chromium on a real uvicorn:
speed and accuracy together with the interval, progress while it runs, a cancel that stops the
server's work, the previous result marked stale, the time budget, and the queue.

The docs' screenshots come from the real models: ``python -m sepconv_bench.docs_screenshots``.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from sepconv_contract import read_metadata, write_metadata
from service.process.admission import LOCK_FILE
from service.process.settings import Settings
from tests.helpers.browser import assert_not_busy
from tests.helpers.servers import live_server
from tests.service.api.test_compare import paired_metadata
from tests.service.api.test_compare_admission import held_elsewhere
from tests.service.api.test_web_page import MODELS, ship_histories

PAGE_TAB = "Compare"  # the tab the shared ``page`` fixture opens (conftest.py)
pytestmark = [pytest.mark.browser, pytest.mark.network]

BUDGET_S = 5.0
WAIT_S = 20.0
# Far more work than the budget allows: it runs until cancelled or the budget ends.
# (A small batch, so that the warm-up, five rounds, leaves most of the budget to timing.)
LONG = {"repeats": "1000", "batch_size": "8"}


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("page-lock")


@pytest.fixture(scope="module")
def base_url(
    exported_models: Path, tmp_path_factory: pytest.TempPathFactory, lock_dir: Path
) -> Iterator[str]:
    """The service on models with a paired test evaluation and histories, a short budget."""
    root = tmp_path_factory.mktemp("evaluated-web-models")
    accuracies = {"regular": 0.82, "separable": 0.804}
    for name, other in (("regular", "separable"), ("separable", "regular")):
        shutil.copytree(exported_models / name, root / name)
        metadata = read_metadata(root / name / "1")
        assert metadata is not None
        write_metadata(root / name / "1", paired_metadata(metadata, accuracies[name], other))
    ship_histories(root)
    settings = Settings(
        model_dir=root,
        warmup_runs=1,
        compare_budget_s=BUDGET_S,
        compare_wait_s=WAIT_S,
        compare_lock_dir=lock_dir,
        compare_duty=1.0,
    )
    with live_server(settings) as url:
        yield url


def run(page: Page, repeats: str, batch_size: str = "1") -> None:
    page.get_by_label("Repeats").fill(repeats)
    page.get_by_label("Batch size").fill(batch_size)
    page.get_by_role("button", name="Run").click()


def test_web_page_compare_summary_states_speed_and_accuracy_with_its_interval(
    page: Page,
) -> None:
    run(page, "5")

    summary = page.locator("#compare-summary")
    expect(page.locator("#compare-heading")).to_be_focused()
    headline = summary.locator(".headline")
    expect(headline).to_contain_text(re.compile(r"is \d+\.\dx faster at p50 latency than \w+"))
    expect(headline).to_contain_text("(95% CI 0.8 to 2.4, McNemar p = 0.0003)")
    fastest = headline.inner_text().split(" ")[0]
    other = next(m for m in MODELS if m != fastest)
    direction = "less" if fastest == "separable" else "more"
    accuracy = summary.locator('[data-row="accuracy"] dd')
    expect(accuracy).to_have_text(
        f"{fastest} is 1.6 points {direction} accurate than {other} (95% CI 0.8 to 2.4 points, "
        "McNemar p = 0.0003, 10,000 test images)."
    )
    speed = summary.locator('[data-row="speed"] dd')
    expect(speed).to_contain_text(f"faster at p50 latency than {other}")
    size = summary.locator('[data-row="size"] dd')
    expect(size).to_contain_text(
        re.compile(r"separable has \d+\.\dx fewer parameters than regular")
    )
    expect(summary.locator('[data-row="run"] dd')).to_contain_text("5 timed runs of batch size 1")
    expect(page.locator("#budget-notice")).to_have_count(0)
    expect(page.locator("#compare-outcome")).to_contain_text("Done: 5 runs in")


def test_web_page_compare_shows_progress_and_cancel_stops_it_and_leaves_it_stale(
    page: Page, base_url: str
) -> None:
    run(page, "3")
    expect(page.locator("#compare-results")).to_have_attribute("data-stale", "false")

    run(page, LONG["repeats"], LONG["batch_size"])
    progress = page.locator("#compare-progress")
    expect(progress).to_be_visible()
    expect(page.locator("#cancel-compare")).to_be_focused()  # Run is disabled meanwhile
    expect(page.locator("#compare-now")).to_contain_text(
        re.compile(r"\d+ of 1,000 runs done; \d+\.\d s elapsed of the 5 s budget")
    )
    expect(page.locator("#compare-status")).not_to_be_empty()  # the live region speaks too
    expect(page.locator("#compare-results")).to_have_attribute("data-stale", "true")
    expect(page.locator("#stale-note")).to_have_text(
        "(previous result: a new comparison is running)"
    )
    expect(page.locator("#run-compare")).to_be_disabled()

    page.get_by_role("button", name="Cancel").click()
    cancelled_at = time.monotonic()

    outcome = page.locator("#compare-outcome")
    expect(outcome).to_have_text("Comparison cancelled.")
    expect(outcome).to_be_focused()
    expect(progress).to_be_hidden()
    expect(page.locator("#stale-note")).to_have_text(
        "(previous result: the newer comparison was cancelled)"
    )
    expect(page.locator("#alert")).to_be_empty()
    expect(page.locator("#run-compare")).to_be_enabled()
    # The browser hung up, so the server stopped: the next comparison need not wait its budget.
    quick = httpx.get(f"{base_url}/compare", params={"repeats": 1, "warmup": 0}, timeout=30)
    assert quick.status_code == 200, quick.text
    # Cancelled a round or so in, with most of the budget to go: waiting it out would take secs.
    assert time.monotonic() - cancelled_at < 2.0
    assert_not_busy(page)


def test_web_page_compare_says_it_stopped_at_the_budget(page: Page) -> None:
    run(page, LONG["repeats"], LONG["batch_size"])

    notice = page.locator("#budget-notice")
    expect(notice).to_contain_text(
        re.compile(r"Stopped at the time budget: \d+ of the 1,000 runs asked for were timed")
    )
    expect(page.locator("#compare-outcome")).to_contain_text(
        re.compile(r"Stopped at the time budget after \d+ of 1,000 runs")
    )
    expect(page.locator("#compare-summary")).to_contain_text("(of 1,000 asked for)")
    expect(page.locator("#compare-results")).to_have_attribute("data-stale", "false")
    expect(page.locator("#compare-heading")).to_be_focused()


def test_web_page_compare_tells_a_queued_visitor_and_runs_after(page: Page, lock_dir: Path) -> None:
    with held_elsewhere(lock_dir / LOCK_FILE, deadline_in_s=9.0) as holder:
        assert holder.stdin is not None
        run(page, "3")
        now = page.locator("#compare-now")
        expect(page.locator("#compare-progress")).to_have_attribute("data-state", "queued")
        expect(now).to_contain_text("Queued behind another visitor's comparison")
        expect(now).to_contain_text(re.compile(r"it ends within [1-9] s"))
        expect(page.locator("#compare-status")).to_contain_text("Queued")
        threading.Timer(0.0, holder.stdin.close).start()

        expect(page.locator("#compare-outcome")).to_contain_text("Done: 3 runs")
    expect(page.locator("#compare-progress")).to_be_hidden()
    expect(page.locator("#alert")).to_be_empty()


def test_web_page_predict_screenshot_for_the_docs(page: Page) -> None:
    page.get_by_role("tab", name="Predict").click()
    page.get_by_role("button", name="a cat", exact=True).click()

    expect(page.locator(".card")).to_have_count(len(MODELS))
    expect(page.locator("#predict-source")).to_have_text("(example: cat.jpg)")
