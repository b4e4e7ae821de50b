"""A real headless Chromium (Debian's, driven by Playwright) against a real Datasette.

The server here is the plain ``datasette`` command documented in the README (with the
package's metadata, templates and plugins), so that path is covered too; test_web.py and
test_front_page.py cover ``newsmonitor serve``.

The README's screenshots are made by this test::

    NEWSMONITOR_SCREENSHOTS=docs .venv/bin/python -m pytest tests/test_browser.py

which writes docs/front-page.png, docs/search.png, docs/cluster-page.png, docs/alerts.png and
docs/feeds.png.
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
from tests.helpers_web import (
    FIRST_SEED,
    FIRST_TITLE_START,
    SECOND_TITLE,
    STORY_TITLES,
    build_database,
    build_newsroom,
    free_port,
    running,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium (apt-get install chromium)")


def _serve(database: Path) -> Iterator[str]:
    port = free_port()
    command = datasette_command(database, port=port)
    command[0] = str(Path(sys.executable).with_name("datasette"))
    with running(command, port) as base:
        yield base


@pytest.fixture(scope="module")
def seeds_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = build_database(tmp_path_factory.mktemp("browser"))
    yield from _serve(config.parent / "monitor.db")


@pytest.fixture(scope="module")
def newsroom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(build_newsroom(tmp_path_factory.mktemp("newsroom") / "monitor.db"))


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def new_page(browser, base_url: str):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base_url)
    context.set_default_timeout(15_000)
    return context.new_page()


def timed_goto(page, url: str) -> float:
    start = time.monotonic()
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, url
    return time.monotonic() - start


def screenshot(page, tmp_path: Path, name: str, *, full_page: bool = True) -> None:
    """Into tmp_path; also into $NEWSMONITOR_SCREENSHOTS (docs/) when set: that is how the README's images are made."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=full_page)
    assert shot.stat().st_size > 10_000
    if folder := os.environ.get("NEWSMONITOR_SCREENSHOTS"):
        shutil.copy(shot, Path(folder) / name)


def test_front_page_filters_search_and_a_story(browser, newsroom_url: str, tmp_path: Path) -> None:
    page = new_page(browser, newsroom_url)
    timings = {"front page": timed_goto(page, "/")}
    stories = page.get_by_test_id("stories").locator("li.nm-story")
    assert stories.count() == 25
    assert STORY_TITLES[1] in stories.first.inner_text()
    assert page.locator("svg.nm-spark").count() == 25
    screenshot(page, tmp_path, "front-page.png", full_page=False)

    # Filters: a period and a minimum of outlets, applied with the form; the URL is the short shareable one.
    page.get_by_label("Period").select_option("3d")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?period=3d")
    assert stories.count() == 4
    page.get_by_label("Min. outlets").fill("2")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?period=3d&min_outlets=2")
    assert stories.count() == 1
    page.get_by_test_id("clear-filters").click()
    page.wait_for_url(newsroom_url + "/")

    # The search box: the alert query language, with a clear error for a query it cannot read.
    box = page.get_by_label("Search stories")
    box.fill("earthquake AND (Norway")
    box.press("Enter")
    error = page.get_by_test_id("search-error")
    assert "expected ')' to close the '('" in error.inner_text()
    assert error.locator("mark").count() == 1
    box = page.get_by_label("Search stories")
    box.fill("cret* OR title:volcano")
    start = time.monotonic()
    box.press("Enter")
    page.wait_for_url("**/?q=cret*+OR+title%3Avolcano")
    timings["search"] = time.monotonic() - start
    assert stories.count() == 2
    assert "matching article" in stories.first.inner_text()
    screenshot(page, tmp_path, "search.png", full_page=False)

    # Open the story: its chart by outlet, the exports and the permalink.
    start = time.monotonic()
    page.get_by_role("link", name=STORY_TITLES[1]).click()
    page.wait_for_url("**/-/cluster/1")
    timings["story page"] = time.monotonic() - start
    chart = page.get_by_test_id("outlet-chart")
    assert chart.locator("tr").count() == 4  # three outlets and all of them
    assert "bbc.example" in chart.inner_text()
    assert page.get_by_test_id("permalink").locator("input").input_value() == newsroom_url + "/-/cluster/1"
    with page.expect_download() as download:
        page.get_by_test_id("exports").get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename == "story-1-articles.csv"

    timings["alerts"] = timed_goto(page, "/-/alerts")
    assert page.get_by_test_id("alerts").locator("tr[data-alert]").count() == 3
    screenshot(page, tmp_path, "alerts.png")
    page.get_by_role("link", name="failing, will retry (1)").click()
    page.wait_for_url("**/-/alerts?state=failing")
    assert "connection refused" in page.get_by_test_id("alert-error").inner_text()
    page.get_by_test_id("site-nav").get_by_role("link", name="Feeds").click()
    page.wait_for_url("**/-/feeds")
    assert "gone (HTTP 410)" in page.get_by_test_id("disabled-reason").inner_text()
    screenshot(page, tmp_path, "feeds.png")
    print("page load times (s):", {k: round(v, 3) for k, v in timings.items()})


def test_tables_search_and_the_cluster_page(browser, seeds_url: str, tmp_path: Path) -> None:
    page = new_page(browser, seeds_url)
    timed_goto(page, "/")
    assert "newsmonitor" in page.title().lower() or "Stories" in page.title()
    page.get_by_test_id("site-nav").get_by_role("link", name="Tables & SQL").click()
    page.wait_for_url("**/monitor")
    page.get_by_role("link", name="articles", exact=True).first.click()
    page.wait_for_url("**/monitor/articles*")

    # The Datasette search box: full-text search over title and text.
    page.fill("input#_search", "Albence")
    page.locator("form.filters input[type=submit]").click()
    page.wait_for_url("**_search=Albence*")
    table = page.locator("table.rows-and-columns")
    assert SECOND_TITLE in table.inner_text()
    assert FIRST_SEED in table.inner_text()

    # The story list's only story opens the cluster page.
    timed_goto(page, "/")
    stories = page.get_by_test_id("stories").locator("li.nm-story")
    assert stories.count() == 1
    assert SECOND_TITLE in stories.first.inner_text(), "the cluster is named by its real headline"
    stories.first.get_by_role("link", name=SECOND_TITLE).click()
    page.wait_for_url("**/-/cluster/1")

    timeline = page.get_by_test_id("timeline")
    assert timeline.locator("li.nm-article").count() == 3
    text = timeline.inner_text()
    assert SECOND_TITLE in text and FIRST_TITLE_START in text
    assert page.get_by_test_id("first-report").is_visible()
    assert "copy of #1" in page.get_by_test_id("duplicate-mark").inner_text()
    assert "albence" in page.get_by_test_id("shared-terms").inner_text()
    screenshot(page, tmp_path, "cluster-page.png")
