"""Seeds through the whole pipeline into a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cluster import ClusterParams
from monitor.engine import QUEUE_SIZE, Engine, Extractor, feed_states, open_runtime, run_pass
from monitor.errors import StoreError
from monitor.ingest import AlreadyStored, Stored, build_clusterer, ingest_article
from monitor.models import Article, ParsedFeed
from monitor.pipeline import PassReport
from monitor.settings import load_settings
from monitor.store import Store, iso
from monitor.tasks import FeedJob, parse_feed_job
from tests.conftest import SHARED_DATA, write_config
from tests.feedserver import Entry, FeedServer, Request, Response, article_html, recent, rss, story
from tests.helpers_daemon import article_urls, feed_row, one_pass, query, wait_for
from tests.helpers_daemon import config as helper_config


def run_once(config: Path) -> tuple[Store, PassReport]:
    settings = load_settings(config)
    with open_runtime(settings) as runtime:
        report = run_pass(runtime)
    return Store.open(settings.database), report


def test_seeds_end_up_in_one_cluster(tmp_path: Path, seeds_dir: Path) -> None:
    store, report = run_once(write_config(tmp_path))
    rows = list(store.db.query("SELECT url, title, text, cluster_id, source, language FROM articles ORDER BY id"))
    assert report.seeds.added == 2 and report.seeds.new_clusters == 1
    assert len(rows) == 2
    assert rows[0]["cluster_id"] == rows[1]["cluster_id"]
    assert store.count("clusters") == 1
    cluster = next(store.db.query("SELECT size, sources FROM clusters"))
    assert cluster == {"size": 2, "sources": 2}
    assert {r["url"].rsplit("/", 1)[1] for r in rows} == {p.name for p in seeds_dir.iterdir()}
    assert all(r["url"].startswith("file://") and r["language"] == "en" for r in rows)


def test_seed_text_is_cleaned_and_titled(tmp_path: Path, seeds_dir: Path) -> None:
    store, _ = run_once(write_config(tmp_path))
    by_name = {r["url"].rsplit("/", 1)[1]: r for r in store.db.query("SELECT url, title, text FROM articles")}
    presstv = by_name["004_0b04817afffe1035.txt"]
    assert presstv["title"] == "Trump administration to send border patrol officers to arrest migrants in cities"
    for chrome in ("SHARE THIS ARTICLE", "alternate addresses", "www.presstv.co.uk", "News / Politics", "Roku"):
        assert chrome not in presstv["text"]
    assert "sanctuary cities" in presstv["text"]
    translated = by_name["000_19088d47ecff5c57.txt"]
    assert translated["title"].startswith("Federal agents patrolling the US border")
    assert "WASHINGTON" not in translated["title"]


def test_second_pass_adds_nothing(tmp_path: Path, seeds_dir: Path) -> None:
    config = write_config(tmp_path)
    store, _ = run_once(config)
    store.close()
    store, report = run_once(config)
    assert report.seeds.added == 0 and report.seeds.already_stored == 2
    assert store.count("articles") == 2 and store.count("clusters") == 1


def test_a_pass_that_stores_nothing_never_reads_the_clusterers_memory(tmp_path: Path, seeds_dir: Path) -> None:
    """An idle pass (cron's ``run --once --due``, a restart) ends with a settle that looks for late articles;
    with none waiting, it never reads the memory back (the start-up cost stays that of an empty store)."""
    settings = load_settings(write_config(tmp_path))
    with open_runtime(settings) as runtime:
        run_pass(runtime)
    with open_runtime(settings) as runtime:
        report = run_pass(runtime)
        assert report.seeds.already_stored == 2 and runtime.clusterer.live_docs == 0
        assert runtime.clusterer.cluster_of(1) is not None and runtime.clusterer.live_docs == 2


def test_full_text_search_finds_both_seeds(tmp_path: Path, seeds_dir: Path) -> None:
    store, _ = run_once(write_config(tmp_path))
    hits = list(store.db["articles"].search("Albence"))
    assert len(hits) == 2


def test_tracked_keywords_flag_the_cluster(tmp_path: Path, seeds_dir: Path) -> None:
    store, _ = run_once(write_config(tmp_path, keywords=["sanctuary cities", "ICE", "earthquake"]))
    keywords = json.loads(next(store.db.query("SELECT keywords FROM clusters"))["keywords"])
    assert keywords == ["ICE", "sanctuary cities"]


def test_bad_seed_files_are_skipped_without_stopping_the_pass(tmp_path: Path, seeds_dir: Path) -> None:
    (seeds_dir / "empty.txt").write_bytes(b"")
    (seeds_dir / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (seeds_dir / "huge.txt").write_bytes(b"word " * 300_000)
    latin = "Le conseil municipal a approuvé le budget des écoles publiques après un long débat. " * 5
    (seeds_dir / "latin1.txt").write_bytes(latin.encode("cp1252"))
    store, report = run_once(write_config(tmp_path, fetch={"max_bytes": 1_000_000}))
    assert report.seeds.skipped == 3
    urls = [r["url"] for r in store.db.query("SELECT url FROM articles")]
    assert len(urls) == 3 and any(u.endswith("latin1.txt") for u in urls)
    text = next(store.db.query("SELECT text FROM articles WHERE url LIKE '%latin1.txt'"))["text"]
    assert "approuvé" in text


def test_unrelated_pages_do_not_join_the_seed_cluster(tmp_path: Path, seeds_dir: Path) -> None:
    pages = SHARED_DATA / "web-pages"
    if not pages.is_dir():
        pytest.skip(f"shared evaluation data not found at {pages}")
    for page in sorted(pages.glob("*.html"))[:25]:
        (seeds_dir / page.name).write_bytes(page.read_bytes())
    store, _ = run_once(write_config(tmp_path))
    seed_cluster = {r["cluster_id"] for r in store.db.query("SELECT cluster_id FROM articles WHERE url LIKE '%.txt'")}
    assert len(seed_cluster) == 1
    members = list(store.db.query("SELECT url FROM articles WHERE cluster_id = ?", list(seed_cluster)))
    assert sorted(m["url"].rsplit("/", 1)[1] for m in members) == [
        "000_19088d47ecff5c57.txt", "004_0b04817afffe1035.txt"]


def test_empty_texts_are_not_duplicates_and_future_dates_are_capped(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.db")
    clusterer = build_clusterer(store, ClusterParams())
    fetched = datetime(2024, 3, 4, 12, tzinfo=UTC)
    first = Article(url="https://a.example/1", title="One", text="", source="a.example", fetched_at=fetched)
    second = Article(url="https://b.example/2", title="Two", text=" ", source="b.example", fetched_at=fetched,
                     published=fetched + timedelta(days=400))
    assert isinstance(ingest_article(store, clusterer, first), Stored)
    assert isinstance(ingest_article(store, clusterer, second), Stored)
    assert isinstance(ingest_article(store, clusterer, first), AlreadyStored)
    published = next(store.db.query("SELECT published FROM articles WHERE id = 2"))["published"]
    assert published == "2024-03-05T12:00:00+00:00"


def test_dates_before_1990_count_as_unknown(tmp_path: Path) -> None:
    """An epoch-zero date is a broken default: stored as unknown, clustered at fetch time."""
    store = Store.open(tmp_path / "m.db")
    clusterer = build_clusterer(store, ClusterParams())
    fetched = datetime(2024, 3, 4, 12, tzinfo=UTC)
    text = "Fire crews fought a warehouse blaze in Leeds overnight. " * 5
    dated = Article(url="https://a.example/1", title="Leeds warehouse fire", text=text, source="a.example",
                    fetched_at=fetched, published=fetched - timedelta(hours=2))
    retold = ("Leeds firefighters battled an overnight blaze at a warehouse; crews from across Leeds "
              "fought the warehouse fire until dawn. ") * 4
    epoch = Article(url="https://b.example/2", title="Warehouse fire in Leeds", text=retold,
                    source="b.example", fetched_at=fetched, published=datetime(1970, 1, 1, tzinfo=UTC))
    ingest_article(store, clusterer, dated)
    stored = ingest_article(store, clusterer, epoch)
    assert isinstance(stored, Stored) and stored.cluster_id == 1
    rows = {r["id"]: r["published"] for r in store.db.query("SELECT id, published FROM articles")}
    assert rows == {1: "2024-03-04T10:00:00+00:00", 2: None}


def test_a_restart_remembers_stored_clusters(tmp_path: Path, seeds_dir: Path) -> None:
    """The second seed arrives after a restart: the replayed clusterer still puts it with the first."""
    later = tmp_path / "later"
    later.mkdir()
    second = sorted(seeds_dir.iterdir())[1]
    second.rename(later / second.name)
    config = write_config(tmp_path)
    store, _ = run_once(config)
    assert store.count("articles") == 1
    store.close()
    (later / second.name).rename(second)
    store, report = run_once(config)
    assert report.seeds.added == 1 and report.seeds.new_clusters == 0
    assert store.count("clusters") == 1
    assert {r["cluster_id"] for r in store.db.query("SELECT cluster_id FROM articles")} == {1}


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path, seeds_dir: Path) -> None:
    """SQLite's own "database or disk is full" (forced with max_page_count) stops the pass cleanly."""
    for index in range(40):
        body = " ".join(f"word{index}x{n} filler text about topic {index}" for n in range(300))
        (seeds_dir / f"extra_{index:02}.txt").write_text(f"Headline number {index} here\n\n{body}\n", encoding="utf-8")
    config = write_config(tmp_path)
    settings = load_settings(config)
    with open_runtime(settings) as runtime:
        pages = runtime.store.db.execute("PRAGMA page_count").fetchone()[0]
        runtime.store.db.execute(f"PRAGMA max_page_count = {pages + 60}")
        with pytest.raises(StoreError, match="database or disk is full"):
            run_pass(runtime)
        stored = runtime.store.count("articles")
    store = Store.open(settings.database)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
    store, report = run_once(config)
    assert report.seeds.added == 42 - stored and store.count("articles") == 42
    assert store.unplaced_articles() == []  # what the failed pass stored unplaced is placed now


def test_the_full_text_index_is_rewritten_only_when_title_or_text_change(tmp_path: Path) -> None:
    """Cluster bookkeeping updates an article's row on every join, split or merge; only a new
    title or text may cost a re-index (SQLite counts the trigger's FTS writes as changes)."""
    store = Store.open(tmp_path / "m.db")
    conn = store.db.conn
    conn.execute("INSERT INTO articles (title, text) VALUES ('Harbour bridge closed', 'Cranes and ferries.')")
    before = conn.total_changes
    conn.execute("UPDATE articles SET cluster_score = 0.5, cluster_terms = '[]', split_from = 2 WHERE id = 1")
    assert conn.total_changes - before == 1
    conn.execute("UPDATE articles SET text = 'Ferries only.' WHERE id = 1")
    assert {r["id"] for r in store.db["articles"].search("ferries")} == {1}
    assert not list(store.db["articles"].search("cranes"))


# -- pages stream to the writer ------------------------------------------------------------------


def _held_page(server: FeedServer, path: str, title: str, text: str, release: threading.Event,
               requested: threading.Event) -> None:
    """A page that answers only once ``release`` is set."""
    body = article_html(title, text).encode()

    def route(request: Request) -> Response:
        requested.set()
        assert release.wait(timeout=30), "the test never released the page"
        return Response(200, {"Content-Type": "text/html; charset=utf-8"}, body)

    server.set(path, route)


def test_articles_reach_the_writer_before_the_feeds_last_page_is_fetched(tmp_path: Path) -> None:
    """Each page's article is stored as soon as it is extracted; the feed's state only after its last page."""
    entries = [Entry(f"quay-{i}", f"Quay report {i}", story("harbour quay", i), recent(i)) for i in range(4)]
    release, requested = threading.Event(), threading.Event()
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        _held_page(server, "/articles/quay-0", entries[0].title, entries[0].text, release, requested)
        settings = load_settings(helper_config(tmp_path, [{"url": server.url("/feed.xml")}],
                                               fetch={"timeout": 30, "per_host": 2}))
        db = tmp_path / "monitor.db"
        reports: list[PassReport] = []

        def once() -> None:
            with open_runtime(settings) as runtime:
                reports.append(run_pass(runtime))

        thread = threading.Thread(target=once)
        thread.start()
        try:
            assert requested.wait(timeout=30)
            # The newest page is held; the three others are fetched beside it and stored meanwhile.
            assert wait_for(lambda: len(article_urls(db)) == 3), article_urls(db)
            assert feed_row(db, server.url("/feed.xml"))["last_fetched"] is None  # the poll is not over
        finally:
            release.set()
            thread.join(timeout=30)
    assert not thread.is_alive() and reports[0].feeds.added == 4
    assert feed_row(db, server.url("/feed.xml"))["last_status"] == "ok"
    assert len(query(db, "SELECT id FROM articles WHERE extraction = 'trafilatura'")) == 4


def test_pages_of_one_feed_are_fetched_side_by_side_within_the_per_host_limit(tmp_path: Path) -> None:
    """Two pages meet at a barrier inside the server: fetched one after the other, neither would get an answer."""
    entries = [Entry(f"dock-{i}", f"Dock report {i}", story("dock strike", i), recent(i)) for i in range(2)]
    meet = threading.Barrier(2, timeout=30)
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        for entry in entries:
            body = article_html(entry.title, entry.text).encode()

            def route(request: Request, body: bytes = body) -> Response:
                try:
                    meet.wait()
                except threading.BrokenBarrierError:
                    return Response(503, {}, b"")
                return Response(200, {"Content-Type": "text/html; charset=utf-8"}, body)

            server.set(f"/articles/{entry.slug}", route)
        one_pass(helper_config(tmp_path, [{"url": server.url("/feed.xml")}], fetch={"timeout": 60, "per_host": 2}))
    rows = query(tmp_path / "monitor.db", "SELECT extraction FROM articles")
    assert [r["extraction"] for r in rows] == ["trafilatura", "trafilatura"]


def _die(_: object) -> None:
    """A task whose process dies under it (as when a page exhausts a worker's memory)."""
    os._exit(1)


def test_an_extraction_process_that_dies_costs_its_task_and_the_pool_is_made_again() -> None:
    extractor = Extractor(1)
    try:
        with pytest.raises(BrokenProcessPool):
            extractor.run(_die, None)
        feed = rss("http://127.0.0.1", [Entry("after", "After the crash", story("pool", 1), recent(1))]).encode()
        parsed = extractor.run(parse_feed_job, FeedJob(feed, "http://127.0.0.1/feed.xml"))
        assert isinstance(parsed, ParsedFeed) and parsed.entries[0].title == "After the crash"
    finally:
        extractor.close()


def test_a_pass_places_its_articles_in_publication_order_whatever_order_they_arrive_in(tmp_path: Path) -> None:
    """A feed lists four reports of one story newest first, and the older a page, the slower it answers,
    so the newest arrives first; the pass still places them oldest first: the oldest report opens the
    story's cluster (a cluster takes the id of the article that opened it), though it arrived last."""
    entries = [Entry(f"s{n}", f"Harbour bridge report {n}", story("harbour bridge", n), recent(n, hours=30))
               for n in range(4)]
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        for n, entry in enumerate(entries):
            server.page(f"/articles/{entry.slug}", article_html(entry.title, entry.text), delay=0.2 * n)
        settings = load_settings(helper_config(tmp_path, [{"url": server.url("/feed.xml")}],
                                               fetch={"per_host": 4, "concurrency": 4}))
        with open_runtime(settings) as runtime:
            report = run_pass(runtime)
    rows = query(settings.database, "SELECT id, url, published, cluster_id FROM articles ORDER BY id")
    assert [r["url"] for r in rows] == [server.url(f"/articles/s{n}") for n in range(4)]  # arrived newest first
    oldest = min(rows, key=lambda r: r["published"])
    assert oldest["id"] == 4 and report.placed == 4
    assert {r["cluster_id"] for r in rows} == {oldest["id"]}
    assert 0 < report.placing < report.duration  # the time the writer spent ending the batch, for bench/pass_rate.py


def test_an_undated_entry_takes_its_pages_date_and_a_dated_one_keeps_its_own(tmp_path: Path) -> None:
    """Both pages state a publication time; only the undated entry's page is read for it (the other is
    not asked: the entry's own date wins)."""
    page_time = datetime(2026, 11, 20, 14, 25, tzinfo=UTC)
    entries = [Entry("dated", "Dated quay report", story("quay", 1), recent(2)),
               Entry("undated", "Undated quay report", story("quay", 2), None)]
    with FeedServer() as server:
        server.feed("/feed.xml", entries)
        for entry in entries:
            html = article_html(entry.title, entry.text).replace(
                "<head>", f'<head><meta property="article:published_time" content="{page_time.isoformat()}">')
            server.page(f"/articles/{entry.slug}", html)
        one_pass(helper_config(tmp_path, [{"url": server.url("/feed.xml")}]))
    published = {r["url"].rsplit("/", 1)[-1]: r["published"] for r in
                 query(tmp_path / "monitor.db", "SELECT url, published FROM articles")}
    assert published == {"dated": iso(entries[0].published), "undated": iso(page_time)}


def test_a_writer_that_falls_behind_holds_the_producers_back_and_loses_nothing(tmp_path: Path) -> None:
    """Memory stays bounded when the writer is the slower side: a poll of 100 entries fills the writer's
    queue (QUEUE_SIZE messages) and waits there, still polling, until the writer drains it; then every
    entry is stored."""
    entries = [Entry(f"e{n}", f"Entry {n} of the desk", story(f"desk topic {n}", n), recent(n)) for n in range(100)]
    with FeedServer() as server:
        server.feed("/feed.xml", entries, pages=False)
        settings = load_settings(helper_config(tmp_path, [{"url": server.url("/feed.xml")}],
                                               fetch={"fetch_pages": False}))  # entries from the feed itself
        with open_runtime(settings) as runtime, Engine(runtime) as engine:
            runtime.store.sync_feeds(settings.feeds)
            [(feed, state)] = feed_states(runtime.store, settings.feeds)
            assert engine.poll(feed, state)
            assert wait_for(engine._queue.full, timeout=30)
            assert engine.busy() and engine._queue.qsize() == QUEUE_SIZE < len(entries)
            engine.drain()
            assert not engine.busy() and runtime.store.count("articles") == len(entries)


def test_the_extraction_pool_forks_its_workers_with_what_their_first_pages_would_load() -> None:
    """The forkserver imports ``monitor.forkserver_preload`` once (``Extractor``): each worker then starts with the
    stop lists, month names, dateparser and the language model instead of paying for them inside a pass."""
    code = ("import sys, monitor.forkserver_preload, trafilatura.external as te, htmldate.extractors as hx\n"
            "from monitor.extract import _language_identifier\n"
            "print(te.JT_STOPLIST is not None, hx.month_words.cache_info().currsize,\n"
            "      _language_identifier.cache_info().currsize, 'dateparser' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["True", "1", "1", "True"]


_CHILDREN = """
import os, sys
from pathlib import Path
from monitor.engine import open_runtime, run_pass
from monitor.settings import load_settings

def children() -> int:
    mine = str(os.getpid())
    return sum(1 for stat in Path("/proc").glob("[0-9]*/stat")
               if stat.read_text().rsplit(")", 1)[-1].split()[1] == mine)

if __name__ == "__main__":
    with open_runtime(load_settings(Path(sys.argv[1]))) as runtime:
        report = run_pass(runtime, due_only=True)
    print(report.feeds_ok, children())
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_a_pass_with_no_feed_due_starts_no_extraction_process(tmp_path: Path) -> None:
    """``run --once --due`` from cron finds nothing due most minutes: it must not pay for a pool
    (about a CPU-second a process); a pass that polls starts one (its forkserver outlives it as a child)."""
    with FeedServer() as server:
        server.feed("/feed.xml", [Entry("a", "A desk report", story("desk", 1), recent(1))], pages=False)
        config = helper_config(tmp_path, [{"url": server.url("/feed.xml"), "interval": 3600}])
        script = tmp_path / "children.py"
        script.write_text(_CHILDREN)

        def run() -> list[str]:
            return subprocess.run([sys.executable, str(script), str(config)], capture_output=True, text=True,
                                  check=True, timeout=120).stdout.split()

        polled, idle = run(), run()  # the first pass polls the feed; the second finds it not due
    assert polled[0] == "1" and int(polled[1]) >= 1
    assert idle == ["0", "0"]
