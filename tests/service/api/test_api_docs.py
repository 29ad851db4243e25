"""``/docs`` and ``/redoc`` from the assets the app ships: they render with no network beyond
loopback, in a real headless Chromium against a real uvicorn."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from service.main import STATIC_DIR, create_app
from service.process.settings import Settings
from tests.helpers.browser import TIMEOUT_MS
from tests.helpers.servers import live_server

VENDORED = [
    "/static/vendor/swagger-ui/swagger-ui-bundle.js",
    "/static/vendor/swagger-ui/swagger-ui.css",
    "/static/vendor/swagger-ui/favicon-32x32.png",
    "/static/vendor/redoc/redoc.standalone.js",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    # No models needed: the pages and the schema come from the routes alone.
    return TestClient(create_app(Settings(model_dir=tmp_path_factory.mktemp("no-models"))))


def test_api_docs_pages_load_only_vendored_assets(plain: TestClient) -> None:
    for page, assets in (("/docs", VENDORED[:3]), ("/redoc", VENDORED[3:])):
        html = plain.get(page).text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
        for asset in assets:
            assert asset in html
    for asset in VENDORED:
        response = plain.get(asset)
        assert response.status_code == 200 and len(response.content) > 500, asset


def test_api_docs_vendored_bundles_name_no_cdn() -> None:
    # What a page fetches by itself; links a reader may follow (licences, specs) are fine.
    for bundle in VENDORED[:2] + VENDORED[3:]:
        text = (STATIC_DIR / bundle.removeprefix("/static/")).read_text(errors="replace")
        assert not re.search(r"cdn\.|unpkg\.com|jsdelivr|fonts\.googleapis", text), bundle


def test_api_docs_vendored_files_keep_their_licences() -> None:
    vendor = STATIC_DIR / "vendor"
    for folder in ("swagger-ui", "redoc"):
        assert (vendor / folder / "LICENSE").is_file()
    notes = (vendor / "README.md").read_text()
    assert "5.35.0" in notes and "2.5.4" in notes


@pytest.fixture(scope="module")
def base_url(exported_models: Path) -> Iterator[str]:
    with live_server(Settings(model_dir=exported_models)) as url:
        yield url


def open_docs(browser: Browser, url: str, requested: list[str], errors: list[str]) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page


def host_of(url: str) -> str | None:
    """The host a request goes to: a blob's is its origin's; a data URL goes nowhere."""
    if url.startswith("data:"):
        return "127.0.0.1"
    return urlsplit(url.removeprefix("blob:")).hostname


def assert_loopback_only(requested: list[str]) -> None:
    assert requested
    elsewhere = [u for u in requested if host_of(u) not in LOOPBACK]
    assert elsewhere == [], f"requests left loopback: {elsewhere}"


@pytest.mark.browser
@pytest.mark.network
def test_swagger_ui_renders_offline(browser: Browser, base_url: str) -> None:
    requested: list[str] = []
    errors: list[str] = []
    page = open_docs(browser, f"{base_url}/docs", requested, errors)
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible(timeout=TIMEOUT_MS)
    paths = operations.all_inner_texts()
    assert "/predict" in [p.replace("\u200b", "").strip() for p in paths]
    expect(page.locator(".opblock-tag").first).to_be_visible()
    assert errors == []
    assert any(u.endswith("/openapi.json") for u in requested)
    assert_loopback_only(requested)
    page.context.close()


@pytest.mark.browser
@pytest.mark.network
def test_redoc_renders_offline(browser: Browser, base_url: str) -> None:
    requested: list[str] = []
    errors: list[str] = []
    page = open_docs(browser, f"{base_url}/redoc", requested, errors)
    # Each operation is a section headed by its summary, described by its route's docstring.
    described = "Classify one image with every model (or one), side by side."
    expect(page.get_by_text(described).first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("h2", has_text="Predict Batch").first).to_be_attached()
    assert errors == []
    assert any(u.endswith("/openapi.json") for u in requested)
    assert_loopback_only(requested)
    page.context.close()
