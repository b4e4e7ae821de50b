"""Placing while polls are in flight: only what sorts before every article still to come."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.engine import Engine, feed_states, open_runtime
from monitor.horizon import EVERYTHING, NOTHING, Horizon
from monitor.ingest import earliest_placing
from monitor.settings import load_settings
from tests.feedserver import Entry, FeedServer, Request, Response, article_html, recent, story
from tests.helpers_daemon import config as helper_config
from tests.helpers_daemon import query, write_until

DAY = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_the_cutoff_is_the_earliest_date_an_entry_still_to_come_may_bring() -> None:
    horizon = Horizon()
    assert horizon.cutoff() == EVERYTHING  # no poll in flight
    horizon.expect(1)
    assert horizon.cutoff() == NOTHING  # started, not listed: it may bring anything
    horizon.listed(1, [DAY, DAY - timedelta(days=2), DAY])
    assert horizon.cutoff() == DAY - timedelta(days=2)
    horizon.made(1, DAY - timedelta(days=2))
    assert horizon.cutoff() == DAY
    horizon.made(1, DAY)
    assert horizon.cutoff() == DAY  # one entry of that date is still to come
    horizon.expect(2)
    horizon.listed(2, [None])  # undated: its page may give any date
    assert horizon.cutoff() == NOTHING
    horizon.finished(2)  # over: what it did not hand over will not come
    horizon.finished(1)
    assert horizon.cutoff() == EVERYTHING


def test_an_entrys_earliest_placing_follows_the_rule_the_store_applies() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, 500_000, tzinfo=UTC)
    assert earliest_placing(None, now) is None  # the page's date, whatever it is
    assert earliest_placing(DAY, now) == DAY
    assert earliest_placing(datetime(1970, 1, 1, tzinfo=UTC), now) == now.replace(microsecond=0)  # placed when fetched
    assert earliest_placing(now + timedelta(days=30), now) == (now + timedelta(days=1)).replace(microsecond=0)


def _held(server: FeedServer, entry: Entry, release: threading.Event) -> None:
    body = article_html(entry.title, entry.text).encode()

    def route(request: Request) -> Response:
        assert release.wait(timeout=30), "the test never released the page"
        return Response(200, {"Content-Type": "text/html; charset=utf-8"}, body)

    server.set(f"/articles/{entry.slug}", route)


def _placed(db: Path) -> dict[str, int | None]:
    return {r["url"].rsplit("/", 1)[-1]: r["cluster_id"] for r in query(db, "SELECT url, cluster_id FROM articles")}


def _reports(name: str) -> list[Entry]:
    """Four reports of one story, a day apart, newest first as the feed lists them."""
    return [Entry(f"{name}{n}", f"Harbour crane report {n}", story("harbour crane", n), recent(n, hours=24))
            for n in range(4)]


def test_older_reports_are_placed_while_the_newest_page_is_still_fetched(tmp_path: Path) -> None:
    """The newest page hangs; the three older reports sort before it, so the writer places them
    meanwhile, and the story is the one a pass placing all four at its end makes."""
    entries, release = _reports("r"), threading.Event()
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        _held(server, entries[0], release)
        settings = load_settings(helper_config(tmp_path, [{"url": server.url("/feed.xml")}],
                                               fetch={"timeout": 30, "per_host": 4}))
        with open_runtime(settings) as runtime, Engine(runtime) as engine:
            runtime.store.sync_feeds(settings.feeds)
            [(feed, state)] = feed_states(runtime.store, settings.feeds)
            try:
                assert engine.poll(feed, state)
                older = {"r1", "r2", "r3"}
                assert write_until(engine, lambda: all(_placed(settings.database).get(s) for s in older))
                assert engine.busy() and "r0" not in _placed(settings.database)  # the newest is still fetched
            finally:
                release.set()
            engine.drain()
            report = engine.end_pass("pass")
    placed = _placed(settings.database)
    assert report.placed == 4 and report.placed_early >= 3 and len(set(placed.values())) == 1
    [oldest] = query(settings.database, "SELECT id FROM articles WHERE url LIKE '%/r3'")
    assert placed["r0"] == oldest["id"]  # the oldest report opened the story


def test_nothing_is_placed_before_the_oldest_report_or_a_feed_not_yet_read_arrives(tmp_path: Path) -> None:
    """The oldest report's page hangs, and so does a second feed: the three newer reports are stored,
    yet none is placed, since the oldest (or anything the second feed lists) may sort before them."""
    entries, release, feed_gate = _reports("o"), threading.Event(), threading.Event()
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        _held(server, entries[-1], release)
        server.feed("/other.xml", [Entry("x0", "Other desk", story("quarry", 0), recent(200, hours=24))])
        other = server.route_for("/other.xml")
        server.set("/other.xml", lambda request: feed_gate.wait(30) and other(request))
        settings = load_settings(helper_config(tmp_path, [{"url": server.url("/feed.xml")},
                                                          {"url": server.url("/other.xml")}],
                                               fetch={"timeout": 30, "per_host": 4}))
        with open_runtime(settings) as runtime, Engine(runtime) as engine:
            runtime.store.sync_feeds(settings.feeds)
            try:
                for feed, state in feed_states(runtime.store, settings.feeds):
                    assert engine.poll(feed, state)
                assert write_until(engine, lambda: len(_placed(settings.database)) == 3)
                assert engine.place_ready() == 0  # the writer has applied all three: the oldest blocks them
                release.set()
                assert write_until(engine, lambda: len(_placed(settings.database)) == 4)
                assert engine.place_ready() == 0  # the second feed, not read yet, may still list older reports
                assert set(_placed(settings.database).values()) == {None}
            finally:
                release.set()
                feed_gate.set()
            engine.drain()
            engine.end_pass("pass")
    placed = _placed(settings.database)
    assert None not in placed.values() and placed["x0"] != placed["o3"]
    assert len({placed[f"o{n}"] for n in range(4)}) == 1
