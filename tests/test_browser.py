"""A real headless Chromium (Debian's, driven by Playwright) against a real Datasette.

The server here is the plain ``datasette`` command documented in the README (with the
package's metadata, templates and plugins), so that path is covered too; test_web.py
covers ``newsmonitor serve``. Set ``NEWSMONITOR_SCREENSHOT=docs/cluster-page.png`` to
also copy the cluster page's screenshot there (that is how the README's image is made).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.web import datasette_command
from tests.helpers_web import FIRST_SEED, FIRST_TITLE_START, SECOND_TITLE, build_database, free_port, running

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = build_database(tmp_path_factory.mktemp("browser"))
    port = free_port()
    command = datasette_command(config.parent / "monitor.db", port=port)
    command[0] = str(Path(sys.executable).with_name("datasette"))
    with running(command, port) as base:
        yield base


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base_url)
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()


def timed_goto(page, url: str) -> float:
    start = time.monotonic()
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, url
    return time.monotonic() - start


def test_home_search_queries_and_cluster_page(page, tmp_path: Path) -> None:
    timings = {"home": timed_goto(page, "/")}
    assert "newsmonitor" in page.title()
    page.get_by_role("link", name="articles", exact=True).first.click()
    page.wait_for_url("**/monitor/articles*")

    # The Datasette search box: full-text search over title and text.
    page.fill("input#_search", "Albence")
    start = time.monotonic()
    page.locator("form.filters input[type=submit]").click()
    page.wait_for_url("**_search=Albence*")
    timings["search"] = time.monotonic() - start
    table = page.locator("table.rows-and-columns")
    assert SECOND_TITLE in table.inner_text()
    assert FIRST_SEED in table.inner_text()

    # The home page's link to the latest-clusters query, then the cluster page from its cluster column.
    timed_goto(page, "/")
    page.get_by_role("link", name="latest clusters").click()
    page.wait_for_url("**/monitor/latest_clusters")
    rows = page.locator("table.rows-and-columns tbody tr")
    assert rows.count() == 1
    assert SECOND_TITLE in rows.first.inner_text(), "the cluster is named by its real headline"
    start = time.monotonic()
    rows.first.locator("td.col-cluster a").click()
    page.wait_for_url("**/-/cluster/1")
    timings["cluster page"] = time.monotonic() - start

    timeline = page.get_by_test_id("timeline")
    assert timeline.locator("li.nm-article").count() == 3
    text = timeline.inner_text()
    assert SECOND_TITLE in text and FIRST_TITLE_START in text
    assert page.get_by_test_id("first-report").is_visible()
    assert "copy of #1" in page.get_by_test_id("duplicate-mark").inner_text()
    assert "albence" in page.get_by_test_id("shared-terms").inner_text()

    shot = tmp_path / "cluster-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("NEWSMONITOR_SCREENSHOT"):
        shutil.copy(shot, target)
    print("page load times (s):", {k: round(v, 3) for k, v in timings.items()})
