"""The browser the page and docs tests share, and the page they drive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.helpers.browser import launched_chromium, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The app of the requesting module's ``base_url``, on its ``PAGE_TAB`` if it names one;
    fails the test if the page raised a script error meanwhile."""
    script_errors: list[str] = []
    opened = open_page(browser, base_url, script_errors)
    tab = getattr(request.module, "PAGE_TAB", None)
    if tab is not None:
        opened.get_by_role("tab", name=tab).click()
    yield opened
    opened.context.close()
    assert script_errors == [], f"the page raised script errors: {script_errors}"
