"""The newsroom pages: the story list (filters, the alert-language search, paging), the alerts inbox,
feed health, and the story page's chart, exports and permalink.

The data layer (:mod:`monitor.store_views`) is tested on a store written through the store's API
with known stories (tests/helpers_web.py ``build_newsroom``); the pages through a real
``newsmonitor serve`` on 127.0.0.1 over the same store.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from monitor import store_views
from monitor.store_views import StoryFilters, relative_time
from tests.helpers_web import (
    ABSORBED,
    AGENTS,
    ELECTION,
    FILLERS,
    OLD,
    QUAKE,
    ROADS,
    STORY_TITLES,
    VOLCANO,
    build_newsroom,
    free_port,
    newsmonitor_serve,
    newsroom_config,
    running,
)

FILLER_IDS = [101 + n for n in range(FILLERS)]
LATEST_FIRST = [QUAKE, VOLCANO, ELECTION, ROADS, AGENTS, *FILLER_IDS, OLD]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_newsroom(tmp_path_factory.mktemp("newsroom") / "monitor.db")


@pytest.fixture(scope="module")
def conn(database: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    yield connection
    connection.close()


def ids(conn: sqlite3.Connection, now: datetime | None = None, page_size: int = 100, **args: str) -> list[int]:
    filters, problems = StoryFilters.from_args(args)
    assert not problems
    page = store_views.story_page(conn, filters, now=now or datetime.now(UTC), page_size=page_size)
    assert page["error"] is None, page["error"]
    return [story["id"] for story in page["stories"]]


# -- the story list's data ----------------------------------------------------------------------------------


def test_latest_stories_first_and_merged_ones_left_out(conn: sqlite3.Connection) -> None:
    assert ids(conn) == LATEST_FIRST
    assert ABSORBED not in ids(conn)


def test_a_story_shows_its_outlets_feeds_languages_rules_and_chart(conn: sqlite3.Connection) -> None:
    (story,) = store_views.story_page(conn, StoryFilters(min_outlets=3), now=datetime.now(UTC))["stories"]
    assert story["id"] == QUAKE and story["title"] == STORY_TITLES[QUAKE]
    # One outlet naming everywhere: the hosts, which is what the count counts.
    assert story["outlet_names"] == ["nordicwire.example", "bbc.example", "yle.example"]
    assert story["sources"] == len(story["outlet_names"]) == 3
    assert story["feeds"] == ["Nordic Wire", "World Aggregator"]
    assert story["languages"] == ["en", "fi"]
    assert story["rules"] == ["quake-watch"]  # fired on the story merged into it
    assert story["keywords"] == ["earthquake"]
    assert sum(story["chart"]["counts"]) == story["articles"] == 4
    assert story["last_seen_relative"] == "3 h ago"


@pytest.mark.parametrize(("args", "expected"), [
    ({"period": "24h"}, [QUAKE]),
    ({"period": "3d"}, [QUAKE, VOLCANO, ELECTION, ROADS]),
    ({"period": "30d", "sort": "biggest"}, [QUAKE, ELECTION, VOLCANO, ROADS, AGENTS, *FILLER_IDS]),
    ({"min_outlets": "2"}, [QUAKE]),
    ({"language": "es"}, [ELECTION]),
    ({"language": "fi"}, [QUAKE]),
    ({"feed": "World Aggregator"}, [QUAKE]),
    ({"feed": "tag:politics", "period": "3d"}, [ELECTION]),
    ({"feed": "tag:nowhere"}, []),
    ({"rule": "quake-watch"}, [QUAKE, VOLCANO]),
    ({"rule": "elections"}, [ELECTION]),
    ({"keyword": "election"}, [ELECTION]),
])
def test_filters(conn: sqlite3.Connection, args: dict[str, str], expected: list[int]) -> None:
    assert ids(conn, **args) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("earthquake OR Norway", [QUAKE]),
    ("cret*", [QUAKE]),  # Cretaceous: a prefix, as in alert rules
    ("ice", [AGENTS]),  # whole words: "iced" is not "ice"
    ("title:ice", [AGENTS]),
    ("title:cretaceous", []),
    ('"presidential race"', [ELECTION]),
    ("Bergen AND Cretaceous", [QUAKE]),  # in two different articles of one story
    ("election NOT ballots", []),
    ("election NOT tremor", [ELECTION]),
    ("volcano OR earthquake", [QUAKE, VOLCANO]),
    ("NOT council NOT earthquake NOT volcano NOT election NOT police NOT ice", [OLD]),
])
def test_search_speaks_the_alert_query_language(conn: sqlite3.Connection, query: str, expected: list[int]) -> None:
    assert sorted(ids(conn, q=query)) == sorted(expected)


def test_search_ranks_by_relevance_and_counts_matching_articles(conn: sqlite3.Connection) -> None:
    page = store_views.story_page(conn, StoryFilters(q="Norway OR council"), now=datetime.now(UTC))
    assert page["order"] == "relevance"
    found = [s["id"] for s in page["stories"]]
    assert found[0] == QUAKE and set(found[1:]) == set(FILLER_IDS[:24])
    assert page["stories"][0]["matching_articles"] == 3
    latest = ids(conn, q="Norway OR council", sort="latest")
    assert latest[:3] == [QUAKE, 101, 102]


def test_a_bad_query_is_an_error_with_its_position(conn: sqlite3.Connection) -> None:
    page = store_views.story_page(conn, StoryFilters(q="earthquake AND (Norway"), now=datetime.now(UTC))
    assert page["stories"] == [] and page["error"]["position"] == len("earthquake AND (Norway")
    assert "expected ')' to close the '(' at position 16" in page["error"]["text"]


def test_paging(conn: sqlite3.Connection) -> None:
    first = store_views.story_page(conn, StoryFilters(), now=datetime.now(UTC))
    second = store_views.story_page(conn, StoryFilters(page=2), now=datetime.now(UTC))
    assert first["total"] == second["total"] == len(LATEST_FIRST) and first["pages"] == 2
    assert [s["id"] for s in first["stories"] + second["stories"]] == LATEST_FIRST


def test_filters_from_a_url_and_back() -> None:
    filters, problems = StoryFilters.from_args({"q": " ice ", "period": "7d", "min_outlets": "2", "page": "3",
                                                "sort": "sideways", "language": ""})
    assert problems == ["unknown order 'sideways' (choose one of latest, biggest, relevance)"]
    assert filters.url() == "/?q=ice&period=7d&min_outlets=2"
    assert filters.url(page=2) == "/?q=ice&period=7d&min_outlets=2&page=2"
    assert StoryFilters.from_args({"min_outlets": "two"})[1] == [
        "min outlets must be a whole number of at least 1, not 'two'"]
    assert StoryFilters().url() == "/" and not StoryFilters().active


@pytest.mark.parametrize(("ago", "text"), [
    (timedelta(seconds=20), "just now"), (timedelta(minutes=12), "12 min ago"), (timedelta(hours=5), "5 h ago"),
    (timedelta(hours=30), "yesterday"), (timedelta(days=4), "4 days ago"), (-timedelta(hours=2), "in 2 h"),
])
def test_relative_time(ago: timedelta, text: str) -> None:
    now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    assert relative_time((now - ago).isoformat(), now) == text
    assert relative_time("2024-03-12T08:00:00+00:00", now) == "12 Mar 2024"


def test_the_story_list_uses_indexes_for_its_orders(conn: sqlite3.Connection) -> None:
    for order in ("c.last_seen DESC, c.id DESC", "c.sources DESC, c.size DESC, c.last_seen DESC"):
        plan = " ".join(row[3] for row in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT c.id FROM clusters c WHERE c.merged_into IS NULL ORDER BY {order} LIMIT 25"))
        assert "INDEX idx_clusters_live" in plan and "TEMP B-TREE" not in plan, plan


# -- the pages, through a real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(database: Path) -> Iterator[httpx.Client]:
    port = free_port()
    command = newsmonitor_serve(newsroom_config(database.parent), port)
    with running(command, port) as base, httpx.Client(base_url=base, timeout=20) as client:
        yield client


def story_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-story="(\d+)"', html)]


def test_front_page_is_the_story_list(server: httpx.Client) -> None:
    html = server.get("/").text
    assert story_ids(html) == LATEST_FIRST[:25]
    assert STORY_TITLES[QUAKE] in html and 'href="/-/cluster/1"' in html
    assert "nordicwire.example, bbc.example, yle.example" in html and "via Nordic Wire, World Aggregator" in html
    assert "quake-watch" in html and "<svg" in html
    assert 'href="/monitor"' in html  # the tables are one click away
    assert 'rel="next"' in html and 'href="/?page=2"' in html
    assert story_ids(server.get("/?page=2").text) == LATEST_FIRST[25:]
    assert server.get("/.json").status_code == 200  # Datasette's own index still answers


def test_filter_urls_are_short_and_shareable(server: httpx.Client) -> None:
    response = server.get("/?q=&period=3d&rule=&keyword=&min_outlets=&language=&feed=&sort=latest")
    assert response.status_code == 302 and response.headers["location"] == "/?period=3d&sort=latest"
    html = server.get("/?period=3d&sort=latest").text
    assert story_ids(html) == [QUAKE, VOLCANO, ELECTION, ROADS]
    assert '<option value="3d" selected>' in html and 'data-testid="clear-filters"' in html


def test_search_box_opens_stories_and_says_what_is_wrong(server: httpx.Client) -> None:
    html = server.get("/", params={"q": "earthquake OR Norway"}).text
    assert story_ids(html) == [QUAKE] and "3 matching articles" in html
    assert 'data-testid="search-warning"' not in html
    lower = server.get("/", params={"q": "earthquake or volcano"}).text
    assert story_ids(lower) == [] and 'data-testid="search-warning"' in lower  # three words, as in a rule
    assert "&#39;or&#39; at position 12 is searched as a word" in lower
    assert story_ids(server.get("/", params={"q": "cret*"}).text) == [QUAKE]
    bad = server.get("/", params={"q": "earthquake AND (Norway"})
    assert bad.status_code == 200 and 'data-testid="search-error"' in bad.text
    assert "expected &#39;)&#39; to close" in bad.text and "position 23" in bad.text
    problem = server.get("/", params={"min_outlets": "x"}).text
    assert 'data-testid="filter-problem"' in problem and story_ids(problem) == LATEST_FIRST[:25]


def test_alerts_inbox(server: httpx.Client) -> None:
    html = server.get("/-/alerts").text
    assert html.count("data-alert=") == 3
    assert "all (3)" in html and "pending (1)" in html and "failing, will retry (1)" in html and "delivered (1)" in html
    failing = server.get("/-/alerts", params={"state": "failing"}).text
    assert failing.count("data-alert=") == 1 and "default: connection refused" in failing
    assert STORY_TITLES[VOLCANO] in failing and 'href="/-/cluster/2"' in failing
    delivered = server.get("/-/alerts", params={"state": "delivered"}).text
    assert 'href="/-/cluster/1"' in delivered and "since merged into #1" in delivered  # the story it is part of now
    assert server.get("/-/alerts", params={"rule": "elections"}).text.count("data-alert=") == 1


def test_feed_health_lists_failing_feeds_first(server: httpx.Client) -> None:
    html = server.get("/-/feeds").text
    order = [int(n) for n in re.findall(r'data-feed="(\d+)"', html)]
    names = re.findall(r"<td><b>([^<]+)</b>", html)
    assert names[:2] == ["Gone Feed", "Broken Feed"] and len(order) == 5
    assert "gone (HTTP 410)" in html and "not polled (disabled)" in html
    assert "4 failed polls in a row" in html and "HTTP 503 for url" in html
    assert "20 min ago" in html  # Nordic Wire's last success


def test_story_page_chart_exports_and_permalink(server: httpx.Client) -> None:
    html = server.get("/-/cluster/1").text
    assert 'data-testid="outlet-chart"' in html and html.count('aria-label="bbc.example: reports over time"') == 1
    assert "via World Aggregator" in html and "quake-watch" in html
    assert f'value="{server.base_url}/-/cluster/1"' in html  # the permalink
    exported = server.get("/-/cluster/1/articles.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="story-1-articles.csv"' in exported.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(table) == 4 and len({row["outlet"] for row in table}) == 3
    assert [row["time"] for row in table] == sorted(row["time"] for row in table)
    data = server.get("/-/cluster/1/articles.json").json()
    assert data["story"] == 1 and [a["id"] for a in data["articles"]] == [int(r["id"]) for r in table]
    assert {a["feed"] for a in data["articles"]} == {"Nordic Wire", "World Aggregator"}
    assert server.get("/-/cluster/999/articles.csv").status_code == 404


def test_every_page_links_the_newsroom_pages(server: httpx.Client) -> None:
    for path in ("/", "/-/alerts", "/-/feeds", "/-/cluster/1", "/monitor", "/monitor/articles"):
        html = server.get(path).text
        nav = html[html.index('data-testid="site-nav"'):]
        for href in ('href="/"', 'href="/-/alerts"', 'href="/-/feeds"', 'href="/monitor"'):
            assert href in nav[:600], (path, href)


ICE_SQL = ("SELECT a.cluster_id FROM articles a JOIN articles_fts f ON f.rowid = a.id "
           "WHERE articles_fts MATCH 'ice'")


def test_an_older_store_gets_the_whole_word_index_on_open(tmp_path: Path) -> None:
    """Migration 11 rebuilds a Porter-stemmed index (every store before it) over the stored articles."""
    from monitor.store import Store

    path = build_newsroom(tmp_path / "monitor.db")
    with sqlite3.connect(path, isolation_level=None) as old:
        old.execute("DROP TABLE articles_fts")
        old.execute("""CREATE VIRTUAL TABLE "articles_fts" USING FTS5 ("title", "text", tokenize='porter', """
                    """content="articles")""")
        old.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
        old.execute("DELETE FROM _migrations WHERE id >= 11")
        assert {r[0] for r in old.execute(ICE_SQL)} == {ROADS, AGENTS}  # stems: "iced" is "ice"
    with Store.open(path) as store:
        assert store.db["articles"].detect_fts() == "articles_fts"
        assert {r[0] for r in store.db.execute(ICE_SQL)} == {AGENTS}  # the ICE agents, not the iced roads
        store.db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
        store.db.execute("UPDATE articles SET title = 'Ice storm' WHERE cluster_id = ?", [ROADS])  # triggers are back
        assert {r[0] for r in store.db.execute(ICE_SQL)} == {ROADS, AGENTS}
