"""The web page's screenshots in docs/ (web-page.png, web-compare.png, web-matrix.png), taken of
the real page serving the committed models on every runtime, so that the labels, accuracies and
latencies they show are real.

    python -m sepconv_bench.docs_screenshots            # writes the three into docs/
    python -m sepconv_bench.docs_screenshots --chromium /usr/bin/chromium --repeats 30

Needs Playwright and a Chromium (Debian's, by default); nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sepconv_bench.server import running_service
from service.core.engines import RUNTIMES

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "service" / "static" / "examples" / "cat.jpg"
TIMEOUT_MS = 120_000


def take(url: str, docs: Path, chromium: Path, repeats: int) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    written = [docs / "web-page.png", docs / "web-compare.png", docs / "web-matrix.png"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.set_input_files("#file-input", str(EXAMPLE))
        expect(page.locator("#predict-heading")).to_be_focused()
        expect(page.locator("[aria-busy=true]")).to_have_count(0)
        page.screenshot(path=str(written[0]), full_page=True)

        page.get_by_role("tab", name="Compare").click()
        page.get_by_label("Repeats").fill(str(repeats))
        page.get_by_label("Batch size").fill("1")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#compare-outcome")).to_contain_text("Done:")
        page.screenshot(path=str(written[1]), full_page=True)

        # Every runtime at once: the matrix of what separable convolutions buy on each.
        for box in page.locator('#runtime-options input[name="runtimes"]').all():
            box.check()
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#compare-outcome")).to_contain_text("Done:")
        page.screenshot(path=str(written[2]), full_page=True)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPOSITORY / "models")
    parser.add_argument("--docs", type=Path, default=REPOSITORY / "docs")
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    parser.add_argument("--repeats", type=int, default=30, help="timed runs in the compare view")
    args = parser.parse_args(argv)
    others = ",".join(runtime for runtime in RUNTIMES if runtime != "tensorflow")
    with running_service(args.model_dir, {"SEPCONV_COMPARE_RUNTIMES": others}) as service:
        for path in take(service.url, args.docs, args.chromium, args.repeats):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
