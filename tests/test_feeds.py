"""Feeds over real HTTP on 127.0.0.1: RSS 2.0 and Atom, pages, conditional GET, failures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.cli import cli
from monitor.engine import open_runtime, run_pass
from monitor.extract import _language_identifier
from monitor.pipeline import PassReport
from monitor.settings import load_settings
from monitor.store import Store
from tests.conftest import FIXTURES, fixture_text, write_config
from tests.feedserver import Entry, FeedServer, recent, story
from tests.helpers_daemon import config as daemon_config
from tests.helpers_daemon import feed_row as feed_row_by_url
from tests.helpers_daemon import one_pass

PAGES = {"/quake-a": "quake-a.html", "/quake-b": "quake-b.html", "/budget": "budget.html"}


def serve_site(web: HTTPServer) -> str:
    """Two feeds (RSS with ETag support, Atom with Last-Modified support) and their article pages."""
    base = web.url_for("").rstrip("/")
    rss = fixture_text("rss2.xml", base)
    atom = fixture_text("atom.xml", base)

    def rss_handler(request: Request) -> Response:
        if request.headers.get("If-None-Match") == '"rss-v1"':
            return Response(status=304, headers={"ETag": '"rss-v1"'})
        return Response(rss, content_type="application/rss+xml", headers={"ETag": '"rss-v1"'})

    def atom_handler(request: Request) -> Response:
        stamp = "Mon, 04 Mar 2024 09:40:00 GMT"
        if request.headers.get("If-Modified-Since") == stamp:
            return Response(status=304)
        return Response(atom, content_type="application/atom+xml", headers={"Last-Modified": stamp})

    web.expect_request("/rss.xml").respond_with_handler(rss_handler)
    web.expect_request("/atom.xml").respond_with_handler(atom_handler)
    for path, name in PAGES.items():
        web.expect_request(path).respond_with_data((FIXTURES / "pages" / name).read_bytes(),
                                                   content_type="text/html; charset=utf-8")
    web.expect_request("/football-missing-page").respond_with_data("gone", status=404)
    return base


def feeds(base: str, *paths: str) -> list[dict[str, Any]]:
    return [{"url": f"{base}{p}", "name": p.strip("/"), "interval": "15m"} for p in paths]


def run(config: Path) -> tuple[Store, PassReport]:
    settings = load_settings(config)
    with open_runtime(settings) as runtime:
        report = run_pass(runtime)
    return Store.open(settings.database), report


def invoke_cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    # Standard output only: the CLI logs to stderr, where a server thread of an earlier test may still log.
    return result.stdout


def seconds_until(when: str) -> float:
    return (datetime.fromisoformat(when) - datetime.now(UTC)).total_seconds()


def feed_row(store: Store, suffix: str) -> dict[str, Any]:
    return next(store.db.query("SELECT * FROM feeds WHERE url LIKE ?", [f"%{suffix}"]))


def test_rss_and_atom_entries_are_extracted_and_clustered(tmp_path: Path, web: HTTPServer) -> None:
    base = serve_site(web)
    store, report = run(write_config(tmp_path, seeds_dir=None, feeds=feeds(base, "/rss.xml", "/atom.xml")))
    assert report.feeds_ok == 2 and report.feeds_failed == 0
    rows = {r["title"]: r for r in store.db.query("SELECT * FROM articles")}
    assert len(rows) == 5
    quake_a = rows["Magnitude 7.1 earthquake strikes off Valparaiso, Chile"]
    assert quake_a["extraction"] == "trafilatura" and quake_a["author"] == "Maria Lopez"
    assert quake_a["guid"] == "herald-1001" and quake_a["published"].startswith("2024-03-04T08:15")
    assert "SHARE THIS ARTICLE" not in quake_a["text"] and "All rights reserved" not in quake_a["text"]
    assert "utm_" not in (quake_a["canonical_url"] or "")
    quake_b = rows["Strong quake shakes central Chile, tsunami alert lifted"]
    assert quake_b["cluster_id"] == quake_a["cluster_id"]
    budget = rows["City council approves record school budget"]
    football = rows["Late goal sends Rovers into cup final"]
    assert len({quake_a["cluster_id"], budget["cluster_id"], football["cluster_id"]}) == 3
    # the football page is a 404: the entry's own content is used, and that is recorded
    assert football["extraction"] == "feed-content" and "Adeyemi" in football["text"]
    # an entry with neither link nor title is still stored from its summary
    untitled = [r for r in rows.values() if r["url"] is None]
    assert len(untitled) == 1 and untitled[0]["guid"] == "urn:wire:2003"
    assert untitled[0]["title"].startswith("Markets closed higher on Monday")


def test_conditional_get_is_answered_304_and_rerun_adds_nothing(tmp_path: Path, web: HTTPServer) -> None:
    base = serve_site(web)
    config = write_config(tmp_path, seeds_dir=None, feeds=feeds(base, "/rss.xml", "/atom.xml"))
    store, _ = run(config)
    first = store.count("articles")
    store.close()
    web.clear_log()
    store, report = run(config)
    assert store.count("articles") == first and report.feeds.added == 0
    feed_requests = [(req.path, resp.status_code) for req, resp in web.log if req.path.endswith(".xml")]
    assert sorted(feed_requests) == [("/atom.xml", 304), ("/rss.xml", 304)]
    assert not [req for req, _ in web.log if not req.path.endswith(".xml")], "no page fetched again"
    rss = feed_row(store, "/rss.xml")
    assert rss["last_status"] == "not-modified" and rss["etag"] == '"rss-v1"'
    assert feed_row(store, "/atom.xml")["last_modified"] == "Mon, 04 Mar 2024 09:40:00 GMT"


def test_failing_feeds_are_recorded_and_the_others_still_ingested(tmp_path: Path, web: HTTPServer) -> None:
    base = serve_site(web)
    web.expect_request("/broken.xml").respond_with_data("<html><body>not a feed at all", content_type="text/xml")
    web.expect_request("/error.xml").respond_with_data("oops", status=500)

    def slow(_request: Request) -> Response:
        time.sleep(2.5)
        return Response("<rss/>")

    web.expect_request("/slow.xml").respond_with_handler(slow)
    all_feeds = feeds(base, "/broken.xml", "/error.xml", "/slow.xml", "/rss.xml", "/atom.xml")
    store, report = run(write_config(tmp_path, seeds_dir=None, feeds=all_feeds))
    assert report.feeds_ok == 2 and report.feeds_failed == 3
    assert store.count("articles") == 5
    broken, error, slow_ = (feed_row(store, s) for s in ("/broken.xml", "/error.xml", "/slow.xml"))
    assert broken["last_status"] == "error" and "not a usable feed" in broken["last_error"]
    assert error["last_status"] == "error" and error["last_http_status"] == 500 and "500" in error["last_error"]
    assert slow_["last_status"] == "error" and "timed out" in slow_["last_error"]
    for row in (broken, error, slow_):
        assert row["consecutive_errors"] == 1 and row["next_due"] > row["last_fetched"]


def test_malformed_feed_that_still_has_entries_is_used(tmp_path: Path, web: HTTPServer) -> None:
    base = web.url_for("").rstrip("/")
    broken = fixture_text("rss2.xml", base).replace("</channel>", "<unclosed></channel>")
    web.expect_request("/bozo.xml").respond_with_data(broken, content_type="application/rss+xml")
    store, _ = run(write_config(tmp_path, seeds_dir=None, feeds=feeds(base, "/bozo.xml"),
                                     fetch={"fetch_pages": False, "timeout": 1.0}))
    row = feed_row(store, "/bozo.xml")
    assert row["last_status"] == "ok" and row["last_error"].startswith("malformed feed used")
    assert store.count("articles") == 2
    assert {r["extraction"] for r in store.db.query("SELECT extraction FROM articles")} == {"feed-summary"}


def test_feed_over_the_byte_cap_is_refused(tmp_path: Path, web: HTTPServer) -> None:
    base = web.url_for("").rstrip("/")
    web.expect_request("/big.xml").respond_with_data(b"<rss>" + b" " * 200_000 + b"</rss>")
    store, _ = run(write_config(tmp_path, seeds_dir=None, feeds=feeds(base, "/big.xml"),
                                     fetch={"max_bytes": 100_000, "timeout": 1.0}))
    row = feed_row(store, "/big.xml")
    assert row["last_status"] == "error" and "larger than 100000 bytes" in row["last_error"]


def test_a_configured_interval_is_kept_unless_the_feed_opts_into_adaptive_polling(tmp_path: Path) -> None:
    """A quiet feed with <ttl>120</ttl> (2 h) and entries a week apart: adaptive polling would wait 2 h or more;
    a feed configured to 1m is polled every minute unless it (or schedule.adaptive) says adaptive."""
    weekly = [Entry(f"weekly-{i}", f"Weekly column {i}", story("garden column", i), recent(i, hours=24 * 7))
              for i in range(4)]
    with FeedServer() as server:
        for path in ("/pinned.xml", "/adaptive.xml", "/pinned-by-feed.xml"):
            server.feed(path, weekly, ttl=120)
        feeds = [{"url": server.url("/pinned.xml"), "name": "pinned", "interval": "1m"},
                 {"url": server.url("/adaptive.xml"), "name": "adaptive", "interval": "1m", "adaptive": True},
                 {"url": server.url("/pinned-by-feed.xml"), "name": "pinned-by-feed", "interval": "1m",
                  "adaptive": False}]
        path = daemon_config(tmp_path, feeds, schedule={"max_interval": "4h"}, log_level="WARNING")
        one_pass(path)
        one_pass(path)  # a 304 or an unchanged feed does not stretch it either
        db = tmp_path / "monitor.db"
        assert [feed_row_by_url(db, server.url(p))["poll_interval"] for p in
                ("/pinned.xml", "/adaptive.xml", "/pinned-by-feed.xml")] == [60, 4 * 3600, 60]
        assert seconds_until(feed_row_by_url(db, server.url("/pinned.xml"))["next_due"]) <= 60

        listed = invoke_cli(path, "feeds", "list")
        assert "pinned\t" in listed and "every 1m (as configured; fixed by schedule.adaptive: false)" in listed
        assert ("every 4h (configured 1m, lengthened by server hints or a quiet feed, at most 4h; "
                "adaptive by the feed's adaptive: true)") in listed
        assert "every 1m (as configured; fixed by the feed's adaptive: false)" in listed
        status = invoke_cli(path, "status")
        assert "every 1m (as configured; fixed by schedule.adaptive: false)" in status
        by_name = {f["name"]: f for f in json.loads(invoke_cli(path, "status", "--json"))["feeds"]}
        assert (by_name["adaptive"]["effective_interval"], by_name["adaptive"]["adaptive"]) == (4 * 3600, True)
        assert (by_name["pinned"]["effective_interval"], by_name["pinned"]["adaptive"]) == (60, False)

        (tmp_path / "default").mkdir()
        path = daemon_config(tmp_path / "default", feeds, schedule={"max_interval": "4h", "adaptive": True},
                             log_level="WARNING")
        one_pass(path)  # schedule.adaptive: true is the default of feeds that do not say
        db = tmp_path / "default" / "monitor.db"
        assert [feed_row_by_url(db, server.url(p))["poll_interval"] for p in
                ("/pinned.xml", "/adaptive.xml", "/pinned-by-feed.xml")] == [4 * 3600, 4 * 3600, 60]
        assert "adaptive by schedule.adaptive: true" in invoke_cli(path, "feeds", "list")


def test_entries_made_from_the_feeds_content_are_made_where_the_language_model_is(tmp_path: Path,
                                                                                  web: HTTPServer) -> None:
    """The 404 page's entry and the untitled one fall back to the feed's content; their language is identified
    in the extraction processes, which hold the model, so the engine's own process never loads it."""
    base = serve_site(web)
    _language_identifier.cache_clear()
    store, _ = run(write_config(tmp_path, seeds_dir=None, feeds=feeds(base, "/rss.xml", "/atom.xml")))
    fallbacks = list(store.db.query("SELECT language FROM articles WHERE extraction LIKE 'feed-%'"))
    assert len(fallbacks) == 2 and {row["language"] for row in fallbacks} == {"en"}
    assert _language_identifier.cache_info().currsize == 0
