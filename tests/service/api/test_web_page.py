"""The comparison web page, driven in a real headless Chromium against a real uvicorn.

Needs Debian's Chromium (``apt-get install chromium``) and the ``playwright`` package; the
browsers Playwright would download are never used.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import REPOSITORY
from tests.helpers.tools import require_executable

pytestmark = [pytest.mark.browser, pytest.mark.network]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPOSITORY / "test-artifacts"
MODELS = ("regular", "separable")
LATENCY = re.compile(r"^\d+(\.\d+)? ms$")
TIMEOUT_MS = 30_000  # generous: a training job may be sharing the CPUs


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    return require_executable("chromium", "apt-get install chromium", path=CHROMIUM)


# Assertions wait as long as actions do (their own default is 5 s).
expect.set_options(timeout=TIMEOUT_MS)


def png_bytes(path: Path, width: int = 48, height: int = 40) -> bytes:
    """A colourful gradient PNG, so the preview and the bars have something to show."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(x[None, :], y[:, None], 255 - x[None, :]), axis=-1)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def model_dir(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test SavedModels, with a training history shipped for the regular model only."""
    from training.history import write_history

    root = tmp_path_factory.mktemp("web-models")
    shutil.copytree(exported_models, root, dirs_exist_ok=True)
    epochs = [
        {
            "epoch": n,
            "loss": 2.0 / n,
            "accuracy": 0.3 + 0.1 * n,
            "val_loss": 2.2 / n,
            "val_accuracy": 0.28 + 0.09 * n,
            "seconds": 12.5,
        }
        for n in range(1, 6)
    ]
    write_history(root / "regular" / "1" / "history.json", "regular", epochs)
    return root


@pytest.fixture(scope="module")
def base_url(model_dir: Path) -> Iterator[str]:
    """A real uvicorn serving the app (page and API) on a free local port."""
    from service.process.settings import Settings
    from tests.helpers.servers import live_server

    with live_server(Settings(model_dir=model_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def open_page(
    browser: Browser, base_url: str, script_errors: list[str], width: int = 1100, height: int = 900
) -> Page:
    """A fresh page on the app; uncaught script errors are collected in ``script_errors``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(base_url)
    return page


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    script_errors: list[str] = []
    page = open_page(browser, base_url, script_errors)
    yield page
    page.context.close()
    assert script_errors == [], f"the page raised script errors: {script_errors}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_not_busy(page: Page) -> None:
    expect(page.locator(".spinner:visible")).to_have_count(0)
    expect(page.locator("[aria-busy=true]")).to_have_count(0)


def test_web_page_predict_shows_both_models_as_the_api_answers(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    image = tmp_path / "gradient.png"
    data = png_bytes(image)
    api = httpx.post(
        f"{base_url}/predict",
        params={"top_k": 5},
        files={"file": ("gradient.png", data, "image/png")},
        timeout=30,
    ).json()

    page.set_input_files("#file-input", str(image))

    for prediction in api["predictions"]:
        card = page.locator(f'[data-model="{prediction["model"]}"]')
        expect(card.locator(".label")).to_have_text(prediction["label"])
        expect(card.locator(".latency")).to_have_text(LATENCY)
        assert float(card.locator(".latency").get_attribute("data-latency-ms") or "nan") >= 0
        expect(card.locator(".bars li")).to_have_count(5)
    assert [p["model"] for p in api["predictions"]] == list(MODELS)
    agreement = page.locator("#agreement")
    expect(agreement).to_have_attribute("data-agreement", str(api["agreement"]).lower())
    expect(agreement).to_contain_text("Models agree" if api["agreement"] else "Models disagree")
    expect(page.locator("#preview-image")).to_have_attribute("src", re.compile("^data:image/png"))
    expect(page.locator("#original-image")).to_have_attribute("src", re.compile("^blob:"))
    expect(page.locator("#image-info")).to_contain_text("48x40")
    expect(page.locator("#alert")).to_be_empty()
    assert_not_busy(page)
    screenshot(page, "predict.png")


def test_web_page_compare_draws_latency_chart_and_numbers(page: Page) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Repeats").fill("5")
    page.get_by_label("Batch size").fill("2")
    page.get_by_role("button", name="Run").click()

    chart = page.locator("#latency-chart svg")
    expect(chart).to_be_visible()
    for model in MODELS:
        expect(chart.locator(f'g[data-model="{model}"] rect.box')).to_have_count(1)
        p50 = page.locator(f'#compare-table td[data-model="{model}"]').first
        expect(p50).to_have_text(LATENCY)
    expect(page.locator("#compare-table")).to_contain_text("images/s")
    expect(page.locator("#compare-summary")).to_contain_text(re.compile(r"\d+\.\dx faster at p50"))
    expect(page.locator("#compare-summary")).to_contain_text("5 timed runs of batch size 2")

    # regular ships a history, separable does not: one chart, one graceful message.
    expect(page.locator('#history-charts [data-model="regular"] svg polyline')).to_have_count(2)
    expect(page.locator('#history-charts [data-model="separable"]')).to_contain_text(
        "No training history"
    )
    expect(page.locator("#alert")).to_be_empty()
    assert_not_busy(page)
    screenshot(page, "compare.png")


def test_web_page_rejected_upload_shows_the_api_error(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("These are notes, not a picture of a cat.\n")
    api = httpx.post(
        f"{base_url}/predict", files={"file": ("notes.txt", notes.read_bytes(), "text/plain")}
    )
    assert api.status_code >= 400
    message = api.json()["error"]["message"]

    page.set_input_files("#file-input", str(notes))

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(message, ignore_case=True)  # the page capitalises it
    expect(alert).to_contain_text(api.json()["error"]["code"])
    expect(page.locator("#predict-results")).to_be_hidden()
    expect(page.locator("#file-input")).to_be_enabled()
    assert_not_busy(page)
    screenshot(page, "error.png")


def test_web_page_compare_on_the_chosen_image_shows_predictions(page: Page, tmp_path: Path) -> None:
    image = tmp_path / "gradient.png"
    png_bytes(image)
    page.set_input_files("#file-input", str(image))
    expect(page.locator(".card")).to_have_count(len(MODELS))
    labels = {m: page.locator(f'.card[data-model="{m}"] .label').inner_text() for m in MODELS}

    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Repeats").fill("3")
    page.get_by_label("Use the chosen image").check()
    page.get_by_role("button", name="Run").click()

    expect(page.locator("#compare-summary")).to_contain_text("upload input")
    for model, label in labels.items():
        prediction = page.locator(f'#compare-table td[data-model="{model}"]').last
        expect(prediction).to_contain_text(label)
    assert_not_busy(page)


def test_web_page_drop_and_paste_classify_the_image(page: Page, tmp_path: Path) -> None:
    encoded = base64.b64encode(png_bytes(tmp_path / "gradient.png")).decode()
    make_transfer = """(encoded) => {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        return transfer;
    }"""

    page.dispatch_event(
        "#dropzone", "drop", {"dataTransfer": page.evaluate_handle(make_transfer, encoded)}
    )
    expect(page.locator("#image-info")).to_contain_text("48x40")
    expect(page.locator(".card")).to_have_count(len(MODELS))

    page.evaluate("document.getElementById('predict-results').hidden = true")
    page.evaluate(
        f"""(encoded) => document.dispatchEvent(new ClipboardEvent("paste",
            {{ clipboardData: ({make_transfer})(encoded) }}))""",
        encoded,
    )
    expect(page.locator("#predict-results")).to_be_visible()
    assert_not_busy(page)


def test_web_page_network_failure_shows_a_message(page: Page, tmp_path: Path) -> None:
    page.route("**/predict*", lambda route: route.abort())
    image = tmp_path / "gradient.png"
    png_bytes(image)

    page.set_input_files("#file-input", str(image))

    expect(page.get_by_role("alert")).to_contain_text("Could not reach the service")
    assert_not_busy(page)


def test_web_page_models_tab_lists_models_by_keyboard(page: Page) -> None:
    page.get_by_role("tab", name="Predict").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")

    models_tab = page.get_by_role("tab", name="Models")
    expect(models_tab).to_have_attribute("aria-selected", "true")
    expect(models_tab).to_be_focused()
    expect(page.get_by_role("tabpanel")).to_have_count(1)
    for model in MODELS:
        row = page.locator(f'#models-table tr[data-model="{model}"]')
        expect(row).to_contain_text("ready")
    expect(page.locator("#models-table tbody tr")).to_have_count(len(MODELS))
    page.keyboard.press("Home")
    expect(page.get_by_role("tab", name="Predict")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    screenshot(page, "models.png")


def test_web_page_narrow_window_stacks_both_cards(
    browser: Browser, base_url: str, tmp_path: Path
) -> None:
    script_errors: list[str] = []
    page = open_page(browser, base_url, script_errors, width=375, height=740)
    image = tmp_path / "gradient.png"
    png_bytes(image)

    page.set_input_files("#file-input", str(image))

    cards = [page.locator(f'.card[data-model="{model}"]') for model in MODELS]
    for card in cards:
        expect(card).to_be_visible()
    first, second = (card.bounding_box() for card in cards)
    assert first is not None and second is not None
    assert second["y"] >= first["y"] + first["height"], "cards should stack on a narrow window"
    assert first["x"] + first["width"] <= 375 and second["x"] + second["width"] <= 375
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "predict-narrow.png")
    page.context.close()
    assert script_errors == []
