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
from playwright.sync_api import Browser, Page, expect

from tests.helpers import REPOSITORY
from tests.helpers.browser import assert_not_busy, open_page

pytestmark = [pytest.mark.browser, pytest.mark.network]

ARTIFACTS = REPOSITORY / "test-artifacts"
MODELS = ("regular", "separable")
LATENCY = re.compile(r"^\d+(\.\d+)? ms$")


def png_bytes(path: Path, width: int = 48, height: int = 40) -> bytes:
    """A colourful gradient PNG, so the preview and the bars have something to show."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(x[None, :], y[:, None], 255 - x[None, :]), axis=-1)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path.read_bytes()


# Epochs of each shipped history, and the one of lowest validation loss (the weights kept).
HISTORIES = {"regular": (5, 4), "separable": (4, 3)}


def ship_histories(root: Path) -> None:
    """A training history for each model, its validation loss lowest at its kept epoch."""
    from training.history import write_history

    for offset, (name, (count, kept)) in enumerate(HISTORIES.items()):
        epochs = [
            {
                "epoch": n,
                "loss": 2.0 / n,
                "accuracy": 0.3 + 0.1 * n - 0.05 * offset,
                "val_loss": 1.0 + abs(n - kept) * 0.2,
                "val_accuracy": 0.28 + 0.09 * min(n, kept) - 0.05 * offset,
                "seconds": 12.5,
            }
            for n in range(1, count + 1)
        ]
        write_history(root / name / "1" / "history.json", name, epochs)


@pytest.fixture(scope="module")
def model_dir(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test SavedModels, each with a training history."""
    root = tmp_path_factory.mktemp("web-models")
    shutil.copytree(exported_models, root, dirs_exist_ok=True)
    ship_histories(root)
    return root


@pytest.fixture(scope="module")
def base_url(model_dir: Path) -> Iterator[str]:
    """A real uvicorn serving the app (page and API) on a free local port."""
    from service.process.settings import Settings
    from tests.helpers.servers import live_server

    with live_server(Settings(model_dir=model_dir)) as url:
        yield url


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


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

    # The input is disabled while it classifies; the focus lands on the answer, not <body>.
    expect(page.locator("#predict-heading")).to_be_focused()
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

    # Both histories on one chart, training and validation each, the kept epoch ringed.
    chart = page.locator("#history-chart svg")
    expect(chart).to_have_count(1)
    for model, (count, kept) in HISTORIES.items():
        series = chart.locator(f'g.series[data-model="{model}"]').first
        expect(series.locator("polyline")).to_have_count(2)
        expect(series.locator("g.train circle")).to_have_count(count)
        expect(series.locator(".restored")).to_have_attribute("data-epoch", str(kept))
        expect(page.locator("#history-chart figcaption")).to_contain_text(
            f"{model} ships the weights of epoch {kept}"
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
    expect(alert).to_be_focused()  # the error, not <body>, holds the focus
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


# One-click examples, the classes, the file picker, hash links, the phone layout


def test_web_page_example_button_classifies_the_shipped_image(page: Page, base_url: str) -> None:
    classes = httpx.get(f"{base_url}/models").json()["models"][0]["classes"]
    rocket = httpx.get(f"{base_url}/static/examples/rocket.jpg")
    assert rocket.status_code == 200 and rocket.headers["content-type"] == "image/jpeg"
    api = httpx.post(
        f"{base_url}/predict", files={"file": ("rocket.jpg", rocket.content, "image/jpeg")}
    ).json()

    expect(page.locator("#class-names")).to_have_text(", ".join(classes))
    expect(page.locator("#classes")).to_contain_text("Any image gets one of them")
    expect(page.locator("#examples button")).to_have_count(4)
    page.get_by_role("button", name="a rocket").click()

    expect(page.locator("#predict-source")).to_have_text("(example: rocket.jpg)")
    for prediction in api["predictions"]:
        card = page.locator(f'.card[data-model="{prediction["model"]}"]')
        expect(card.locator(".label")).to_have_text(prediction["label"])
        assert prediction["label"] in classes  # a rocket too gets one of the ten
    expect(page.locator("#predict-heading")).to_be_focused()
    expect(page.locator("#image-info")).to_contain_text("256x171")
    assert_not_busy(page)


def test_web_page_file_picker_accepts_only_the_formats_the_service_decodes(page: Page) -> None:
    from service.core.imaging import ALLOWED_FORMATS

    accept = page.locator("#file-input").get_attribute("accept") or ""

    assert sorted(accept.split(",")) == sorted(f"image/{f.lower()}" for f in ALLOWED_FORMATS)


def test_web_page_hash_link_switches_views_on_an_open_page(page: Page) -> None:
    expect(page.get_by_role("tab", name="Predict")).to_have_attribute("aria-selected", "true")

    page.evaluate("location.hash = '#compare'")
    expect(page.get_by_role("tab", name="Compare")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-compare")).to_be_visible()
    expect(page.locator("#panel-predict")).to_be_hidden()

    page.evaluate("location.hash = '#models'")
    expect(page.locator("#models-table tbody tr")).to_have_count(len(MODELS))
    page.go_back()  # history still leads back to the previous view
    expect(page.get_by_role("tab", name="Compare")).to_have_attribute("aria-selected", "true")


def test_web_page_models_table_on_a_phone_shows_accuracy_and_cues_the_scroll(
    browser: Browser, base_url: str
) -> None:
    script_errors: list[str] = []
    page = open_page(browser, base_url, script_errors, width=390, height=844)
    page.get_by_role("tab", name="Models").click()

    for model in MODELS:
        row = page.locator(f'#models-table tr[data-model="{model}"]')
        cell = row.locator('td[data-column^="test accuracy"]')
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, box
    scroller = page.locator("#models-scroll")
    assert scroller.evaluate("(box) => box.scrollWidth > box.clientWidth"), "expected it to scroll"
    expect(page.locator("#models-scroll-cue")).to_be_visible()
    expect(scroller).to_have_class(re.compile(r"\boverflows\b"))
    scroller.evaluate("(box) => box.scrollTo({ left: box.scrollWidth })")
    expect(scroller).not_to_have_class(re.compile(r"\boverflows\b"))  # no shadow at the end
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "models-phone.png")
    page.context.close()
    assert script_errors == []


def test_web_page_models_table_gives_each_artifact_its_size(page: Page, base_url: str) -> None:
    models = httpx.get(f"{base_url}/models").json()["models"]
    page.get_by_role("tab", name="Models").click()

    for model in models:
        row = page.locator(f'#models-table tr[data-model="{model["name"]}"]')
        cell = row.locator('td[data-column="size"]')
        artifacts = [r for r in model.get("runtimes") or [] if r.get("size_bytes") is not None]
        if artifacts:  # the API lists each runtime's artifact: one line each
            expect(cell.locator("li")).to_have_count(len(artifacts))
            for artifact in artifacts:
                expect(cell.locator(f'li[data-runtime="{artifact["runtime"]}"]')).to_contain_text(
                    re.compile(r"\d (B|KiB|MiB|GiB)$")
                )
        else:  # only the folder's total: said to be the folder's
            expect(cell).to_have_text(re.compile(r"^\d+(\.\d)? (B|KiB|MiB|GiB) \(folder\)$"))
