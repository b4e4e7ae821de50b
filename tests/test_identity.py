"""Identity belongs to the outlet that served it (issue 15, item 4), against real loopback servers.

Two servers stand for two outlets: 127.0.0.1 (the victim) and 127.0.0.2 (the hostile one); both are
loopback, allowed by the tests' ``fetch.allow_networks``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.dedup import registrable_domain
from tests.feedserver import Entry, FeedServer, Response, _Handler, _Server, article_html, recent, rss, story
from tests.helpers_daemon import config, one_pass, query


class OutletServer(FeedServer):
    """A :class:`FeedServer` listening on another loopback address (another host name, so another outlet)."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self._httpd.server_close()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="outletserver")
        self.base = f"http://{host}:{self._httpd.server_address[1]}"


@pytest.fixture
def victim() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def hostile() -> Iterator[FeedServer]:
    with OutletServer("127.0.0.2") as server:
        yield server


def claiming(canonical: str, title: str, text: str) -> str:
    """An article page whose ``rel=canonical`` names ``canonical``."""
    return article_html(title, text).replace("<head>", f'<head><link rel="canonical" href="{canonical}">', 1)


def raw_feed(server: FeedServer, path: str, body: str) -> None:
    server.set(path, lambda request: Response(200, {"Content-Type": "application/rss+xml"}, body.encode()))


def articles(database: Path) -> list[dict]:
    return query(database, "SELECT id, url, canonical_url, guid, source, feed_id, extraction, text, cluster_id, "
                           "duplicate_of FROM articles ORDER BY id")


def test_registrable_domain_rule() -> None:
    assert registrable_domain("www.bbc.co.uk") == registrable_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert registrable_domain("a.b.nytimes.com") == "nytimes.com"
    assert registrable_domain("abc.net.au") == "abc.net.au"
    assert registrable_domain("someone.blogspot.com") == "someone.blogspot.com"
    assert registrable_domain("127.0.0.2") == "127.0.0.2" and registrable_domain("localhost") == "localhost"


def test_a_canonical_claiming_another_outlet_is_ignored(tmp_path: Path, victim: FeedServer,
                                                         hostile: FeedServer) -> None:
    real = Entry("harbour-fire", "Harbour fire report", story("harbour fire", 1), recent(1))
    victim.feed("/rss", [real])
    stolen = victim.url("/articles/harbour-fire")
    fake = Entry("fake", "Harbour fire hoax", story("invented hoax", 7), recent(1))
    hostile.feed("/rss", [fake], pages=False)
    hostile.page("/articles/fake", claiming(stolen, fake.title, fake.text))
    first = config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"}])
    assert one_pass(first).feeds.added == 1
    both = config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"},
                             {"url": victim.url("/rss"), "name": "victim"}])
    report = one_pass(both)
    assert report.feeds.added == 1 and report.feeds.already_stored == 0
    rows = {row["source"]: row for row in articles(tmp_path / "monitor.db")}
    assert set(rows) == {"127.0.0.1", "127.0.0.2"}
    assert "harbour fire situation" in rows["127.0.0.1"]["text"] and rows["127.0.0.1"]["url"] == stolen
    fake_row = rows["127.0.0.2"]
    assert fake_row["canonical_url"] == hostile.url("/articles/fake")  # the served URL stays the identity
    assert fake_row["extraction"] == f"trafilatura (rel=canonical on another outlet ignored: {stolen})"


def test_a_feed_reusing_another_feeds_guid_and_link_suppresses_nothing(tmp_path: Path, victim: FeedServer,
                                                                        hostile: FeedServer) -> None:
    real = [Entry(f"quake-{i}", f"Quake report {i}", story(f"quake {i}", i), recent(i)) for i in range(2)]
    victim.feed("/rss", real, pages=False)
    # The hostile feed copies entry 0's link and GUID, and entry 1's GUID under a link of its own.
    copied = rss(victim.base, [Entry("quake-0", "Quake hoax", story("hoax zero", 3), recent(1))])
    own = (f"<item><title>Other hoax</title><link>{hostile.url('/articles/own')}</link>"
           f"<guid>{victim.url('/articles/quake-1')}</guid><description>{story('hoax one', 4)}</description></item>")
    raw_feed(hostile, "/rss", copied.replace("</channel>", own + "</channel>"))
    fetch = {"fetch_pages": False}
    assert one_pass(config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"}], fetch=fetch)).feeds.added == 2
    report = one_pass(config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"},
                                        {"url": victim.url("/rss"), "name": "victim"}], fetch=fetch))
    assert report.feeds.added == 2 and report.feeds.already_stored == 0
    rows = articles(tmp_path / "monitor.db")
    mine = [r for r in rows if r["source"] == "127.0.0.1"]
    assert sorted(r["guid"] for r in mine) == [victim.url("/articles/quake-0"), victim.url("/articles/quake-1")]
    assert all("quake" in r["text"] and "hoax" not in r["text"] for r in mine)
    theirs = [r for r in rows if r["source"] == "127.0.0.2"]  # the feed's own text stays the feed's outlet's
    assert len(theirs) == 2 and all("hoax" in r["text"] for r in theirs)
    assert [r["extraction"] for r in theirs if r["url"] == victim.url("/articles/quake-0")] == [
        "feed-summary (link on another outlet: the feed's outlet kept)"]
    # A third pass stores nothing: each feed's entries are known by its own GUIDs and links.
    again = one_pass(config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"},
                                       {"url": victim.url("/rss"), "name": "victim"}], fetch=fetch))
    assert again.feeds.added == 0


def test_pages_claiming_four_outlets_count_as_one(tmp_path: Path, hostile: FeedServer) -> None:
    outlets = ["https://www.reuters.com/world/x", "https://www.bbc.co.uk/news/x", "https://apnews.com/article/x",
               "https://www.nytimes.com/2026/x.html"]
    entries = [Entry(f"claim-{i}", f"Reservoir dam breach forces evacuation {i}", story("reservoir dam breach", i),
                     recent(i)) for i in range(4)]
    hostile.feed("/rss", entries, pages=False)
    for entry, claimed in zip(entries, outlets, strict=True):
        hostile.page(f"/articles/{entry.slug}", claiming(claimed, entry.title, entry.text))
    rules = [{"name": "four", "query": '"reservoir dam"', "min_sources": 4},
             {"name": "one", "query": '"reservoir dam"', "min_sources": 1}]
    path = config(tmp_path, [{"url": hostile.url("/rss"), "name": "hostile"}], alerts=rules,
                  channels={"default": [f"json://127.0.0.2:{hostile.base.rsplit(':', 1)[1]}/hook"]})
    assert one_pass(path).feeds.added == 4
    database = tmp_path / "monitor.db"
    assert {r["source"] for r in articles(database)} == {"127.0.0.2"}
    assert len({r["cluster_id"] for r in articles(database)}) == 1  # one story: four copies of one text
    assert [c["sources"] for c in query(database, "SELECT sources FROM clusters WHERE merged_into IS NULL")] == [1]
    assert all(r["extraction"].startswith("trafilatura (rel=canonical on another outlet ignored: https://")
               for r in articles(database))
    fired = {r["rule"] for r in query(database, "SELECT rule FROM alerts")}
    assert fired == {"one"}  # the story matched; four outlets it has not


def test_an_honest_same_host_canonical_still_dedups(tmp_path: Path, victim: FeedServer) -> None:
    entry = Entry("budget", "Budget vote passes", story("budget vote", 2), recent(1))
    print_copy = Entry("budget-print", entry.title, entry.text, recent(2))
    victim.feed("/rss", [entry, print_copy], pages=False)
    page = claiming(victim.url("/articles/budget"), entry.title, entry.text)
    victim.page("/articles/budget", page)
    victim.page("/articles/budget-print", page)
    report = one_pass(config(tmp_path, [{"url": victim.url("/rss"), "name": "victim"}]))
    assert report.feeds.added == 1 and report.feeds.already_stored == 1
    [row] = articles(tmp_path / "monitor.db")
    assert row["canonical_url"] == victim.url("/articles/budget") and row["extraction"] == "trafilatura"


def test_syndicated_copies_on_two_outlets_are_linked_as_duplicates(tmp_path: Path, victim: FeedServer,
                                                                    hostile: FeedServer) -> None:
    wire = Entry("wire", "Wire: ferry strike ends", story("ferry strike", 5), recent(1))
    victim.feed("/rss", [wire])
    hostile.feed("/rss", [wire])  # the same text, honestly on another outlet, with its own URL
    report = one_pass(config(tmp_path, [{"url": victim.url("/rss"), "name": "a"},
                                        {"url": hostile.url("/rss"), "name": "b"}]))
    assert report.feeds.added == 2 and report.feeds.duplicates == 1
    # Placed in publication order, then by URL (whichever page arrived first): 127.0.0.1's is the original.
    by_source = {row["source"]: row for row in articles(tmp_path / "monitor.db")}
    first, second = by_source["127.0.0.1"], by_source["127.0.0.2"]
    assert second["duplicate_of"] == first["id"] and second["cluster_id"] == first["cluster_id"]
    [cluster] = query(tmp_path / "monitor.db", "SELECT sources FROM clusters WHERE id = ?", (first["cluster_id"],))
    assert cluster["sources"] == 2
