"""A real headless Chromium (Debian's, driven by Playwright) for the page and docs tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers.tools import require_executable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000  # generous: a training job may be sharing the CPUs

# Assertions wait as long as actions do (their own default is 5 s).
expect.set_options(timeout=TIMEOUT_MS)


@contextlib.contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Chromium, headless; a failure in CI and a skip elsewhere when it is not installed."""
    require_executable("chromium", "apt-get install chromium", path=CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


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


def assert_not_busy(page: Page) -> None:
    expect(page.locator(".spinner:visible")).to_have_count(0)
    expect(page.locator("[aria-busy=true]")).to_have_count(0)
