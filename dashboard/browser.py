"""Drive a running dashboard in headless Chromium: wait for the Pareto plot, read the counts, take a screenshot.

Used by the end-to-end test and to refresh the screenshots in docs/. Playwright drives the system's Chromium
(Debian's ``chromium`` package) through ``executable_path``, so no browser download is needed; each session gets
a fresh profile folder and no background networking.

    python -m dashboard.browser http://127.0.0.1:8501 docs/dashboard-pareto.png
    python -m dashboard.browser http://127.0.0.1:8501 docs/dashboard-progress.png --view Progress
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PLOT = ".js-plotly-plot .scatterlayer .trace"


@contextmanager
def open_page(width: int = 1440, height: int = 1000, wait_s: float = 90) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile; closed and deleted afterwards.

    Every wait the page does not time itself (a click, an element's state) lasts up to ``wait_s``, not Playwright's
    30 s: on two busy cores the browser has drawn an element more than 30 s after the script run that sent it.
    """
    with tempfile.TemporaryDirectory(prefix="autopeft-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": width, "height": height}, device_scale_factor=1)
        context.set_default_timeout(wait_s * 1000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def wait_for_pareto_plot(page: Page, timeout_s: float = 90) -> None:
    page.wait_for_selector(PLOT, timeout=timeout_s * 1000)


def metrics(page: Page) -> dict[str, str]:
    """The headline counts as shown: {'Trials': '12', 'Complete': '11', ...}.

    Read in one script run in the page, so all of them come from one moment: read one by one, a rerun that
    redraws them in between mixes two states (a new "Running 1" beside an old "State starting").
    """
    return page.evaluate("""() => Object.fromEntries(
        Array.from(document.querySelectorAll('[data-testid="stMetric"]')).map(block => [
            (block.querySelector('[data-testid="stMetricLabel"]')?.innerText ?? '').trim(),
            (block.querySelector('[data-testid="stMetricValue"]')?.innerText ?? '').trim()]))""")


def click_point(page: Page, points: Locator, opened: str, attempts: int = 4, wait_s: float = 10) -> None:
    """Click a plotted point until the view it opens shows ``opened`` (a selector).

    Plotly picks the point under the pointer from its last hover, not from the clicked element, and the live
    fragment may redraw the chart between hover and click; so move onto the point first, let plotly see the
    hover, click, and try again (on a freshly located point) if the new view did not open.
    """
    for attempt in range(1, attempts + 1):
        box = points.last.bounding_box()
        if box is not None:
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 5, y - 5)
            page.mouse.move(x, y, steps=5)
            page.wait_for_timeout(300)
            page.mouse.click(x, y)
        try:
            page.wait_for_selector(opened, timeout=wait_s * 1000)
            return
        except PlaywrightTimeout:
            if attempt == attempts:
                raise


def wait_until_idle(page: Page, timeout_s: float = 60) -> None:
    """Wait until the app's script has finished its run (Streamlit marks its state on the app's root element).

    A click on a widget starts a rerun; a deferred download button clicked while that rerun replaces it asks the
    server for a callable the new run has already dropped, and no download comes.
    """
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_s * 1000)


def download(page: Page, button: Locator, attempts: int = 3, wait_s: float = 60) -> Path:
    """Click a download button once the app is idle and return the downloaded file's path.

    Tried again (after the app settles) when no download starts within ``wait_s``: a live fragment's redraw can
    still replace the button between the idle check and the click.
    """
    for attempt in range(1, attempts + 1):
        wait_until_idle(page)
        try:
            with page.expect_download(timeout=wait_s * 1000) as started:
                button.click()
            break
        except PlaywrightTimeout:
            if attempt == attempts:
                raise
    return Path(started.value.path())


def screenshot(page: Page, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)  # let plotly finish its transition
    page.screenshot(path=str(out), full_page=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--view", default="Pareto front", help="which view (the sidebar's names)")
    parser.add_argument("--search", default=None, help="which search [default: the dashboard's choice]")
    parser.add_argument("--height", type=int, default=1000, help="window height in pixels")
    args = parser.parse_args()
    query = {"view": args.view} | ({"search": args.search} if args.search else {})
    with open_page(height=args.height) as page:
        page.goto(f"{args.url.rstrip('/')}/?{urlencode(query)}")
        page.wait_for_selector(".js-plotly-plot", timeout=90_000)
        print(metrics(page))
        screenshot(page, args.out)


if __name__ == "__main__":
    main()
