"""Everything the web throws at a pass, and the daemon's life cycle: each case against a real local server.

Every failure case asserts two things: what was recorded for the bad feed, and
that the healthy feeds of the same pass were still ingested.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner

from monitor import engine, pipeline, scheduler
from monitor.cli import cli
from monitor.engine import open_runtime, run_pass
from monitor.errors import StoreError
from monitor.lock import InstanceLock, running_pid
from monitor.pipeline import PassReport
from monitor.scheduler import run_daemon
from monitor.settings import Settings, load_settings
from monitor.store import Store
from tests.feedserver import Entry, FeedServer, article_html, recent, story
from tests.helpers_daemon import (
    article_urls,
    config,
    feed_row,
    good_feed,
    newsmonitor,
    one_pass,
    query,
    wait_for,
)

GOOD = ("/good-a.xml", "/good-b.xml")


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        good_feed(running, GOOD[0], "harbour bridge")
        good_feed(running, GOOD[1], "school budget")
        yield running


def setup(tmp_path: Path, server: FeedServer, *bad: str, interval: float = 60, **overrides: object) -> Path:
    feeds = [{"url": server.url(p), "interval": interval} for p in (*GOOD, *bad)]
    return config(tmp_path, feeds, **overrides)


def assert_good_feeds_ingested(database: Path, server: FeedServer) -> None:
    rows = query(database, "SELECT url, extraction FROM articles WHERE url LIKE ? OR url LIKE ?",
                 (f"{server.base}/articles/harbour-bridge-%", f"{server.base}/articles/school-budget-%"))
    assert len(rows) == 4, rows
    assert {r["extraction"] for r in rows} == {"trafilatura"}
    for path in GOOD:
        row = feed_row(database, server.url(path))
        assert row["last_status"] in {"ok", "not-modified"} and row["consecutive_errors"] == 0


def seconds_until(stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()


def test_not_modified_costs_one_small_request(tmp_path: Path, server: FeedServer) -> None:
    path = setup(tmp_path, server)
    one_pass(path)
    report = one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url(GOOD[0]))
    assert (row["last_status"], row["last_http_status"]) == ("not-modified", 304)
    assert server.statuses[(GOOD[0], 200)] == 1 and server.statuses[(GOOD[0], 304)] == 1
    assert server.hits["/articles/harbour-bridge-0"] == 1  # known entries cost no page fetch
    assert report.feeds.added == 0 and report.feeds_ok == 2
    assert_good_feeds_ingested(db, server)


def test_server_error_backs_off_exponentially(tmp_path: Path, server: FeedServer) -> None:
    server.status("/broken.xml", 500)
    path = setup(tmp_path, server, "/broken.xml")
    db = tmp_path / "monitor.db"
    first = one_pass(path)
    row = feed_row(db, server.url("/broken.xml"))
    assert (row["last_status"], row["last_http_status"], row["consecutive_errors"]) == ("error", 500, 1)
    assert "HTTP 500" in row["last_error"] and row["failing_since"] and not row["disabled"]
    assert 110 < seconds_until(row["next_due"]) <= 120  # 60 s interval, doubled
    assert first.feeds_failed == 1 and first.feeds_ok == 2
    one_pass(path)
    row = feed_row(db, server.url("/broken.xml"))
    assert row["consecutive_errors"] == 2 and 230 < seconds_until(row["next_due"]) <= 240
    assert_good_feeds_ingested(db, server)


def test_503_retry_after_is_honoured(tmp_path: Path, server: FeedServer) -> None:
    server.status("/busy.xml", 503, {"Retry-After": "3600"})
    path = setup(tmp_path, server, "/busy.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url("/busy.xml"))
    assert (row["last_http_status"], row["consecutive_errors"]) == (503, 1)
    assert 3590 < seconds_until(row["next_due"]) <= 3600
    assert_good_feeds_ingested(db, server)


def test_slow_feed_times_out_without_holding_up_the_others(tmp_path: Path, server: FeedServer) -> None:
    server.slow("/slow.xml", 3.0)
    path = setup(tmp_path, server, "/slow.xml", fetch={"timeout": 0.5})
    report = one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url("/slow.xml"))
    assert row["last_status"] == "error" and row["last_error"].startswith("timed out")
    assert report.feeds_ok == 2 and report.feeds_failed == 1
    assert_good_feeds_ingested(db, server)


def test_a_60_mb_body_is_refused_while_streaming(tmp_path: Path, server: FeedServer) -> None:
    server.huge("/huge.xml", 60_000_000)
    path = setup(tmp_path, server, "/huge.xml", fetch={"max_bytes": 1_000_000})
    report = one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url("/huge.xml"))
    assert row["last_status"] == "error" and row["last_error"] == "body larger than 1000000 bytes"
    assert report.feeds_failed == 1
    assert_good_feeds_ingested(db, server)


def test_redirect_loop_is_an_error_not_a_hang(tmp_path: Path, server: FeedServer) -> None:
    server.redirect("/loop-a.xml", "/loop-b.xml", 302)
    server.redirect("/loop-b.xml", "/loop-a.xml", 302)
    path = setup(tmp_path, server, "/loop-a.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url("/loop-a.xml"))
    assert row["last_error"] == "too many redirects" and row["consecutive_errors"] == 1
    assert server.hits["/loop-a.xml"] + server.hits["/loop-b.xml"] <= 7  # max_redirects 5, plus the first
    assert_good_feeds_ingested(db, server)


def test_permanent_redirect_moves_the_feed_and_a_temporary_one_does_not(tmp_path: Path,
                                                                        server: FeedServer) -> None:
    good_feed(server, "/new.xml", "river flood")
    good_feed(server, "/elsewhere.xml", "city council")
    server.redirect("/old.xml", "/new.xml", 301)
    server.redirect("/temporary.xml", "/elsewhere.xml", 302)
    path = setup(tmp_path, server, "/old.xml", "/temporary.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    moved = feed_row(db, server.url("/old.xml"))
    assert moved["url_effective"] == server.url("/new.xml") and moved["last_status"] == "ok"
    assert feed_row(db, server.url("/temporary.xml"))["url_effective"] is None
    assert len([u for u in article_urls(db) if "river-flood" in u]) == 2
    one_pass(path)
    assert server.hits["/old.xml"] == 1  # the second pass went straight to the new address
    assert server.statuses[("/new.xml", 304)] == 1
    assert server.hits["/temporary.xml"] == 2
    assert_good_feeds_ingested(db, server)


def test_410_gone_disables_the_feed_until_enabled_again(tmp_path: Path, server: FeedServer) -> None:
    server.status("/gone.xml", 410)
    path = setup(tmp_path, server, "/gone.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    row = feed_row(db, server.url("/gone.xml"))
    assert row["disabled"] == 1 and "410" in row["disabled_reason"] and row["disabled_at"]
    one_pass(path)
    assert server.hits["/gone.xml"] == 1  # not asked again
    store = Store.open(db)
    try:
        assert store.enable_feed(server.url("/gone.xml"))
    finally:
        store.close()
    one_pass(path)
    assert server.hits["/gone.xml"] == 2
    assert_good_feeds_ingested(db, server)


def test_a_feed_failing_longer_than_disable_after_is_disabled(tmp_path: Path, server: FeedServer) -> None:
    server.status("/dead.xml", 500)
    path = setup(tmp_path, server, "/dead.xml", schedule={"disable_after": "2d"})
    one_pass(path)
    db = tmp_path / "monitor.db"
    assert not feed_row(db, server.url("/dead.xml"))["disabled"]
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat(timespec="seconds")
    store = Store.open(db)
    try:
        store.db.execute("UPDATE feeds SET failing_since = ? WHERE url = ?", [three_days_ago, server.url("/dead.xml")])
    finally:
        store.close()
    one_pass(path)
    row = feed_row(db, server.url("/dead.xml"))
    assert row["disabled"] == 1 and row["disabled_reason"].startswith(f"failing since {three_days_ago}")
    assert "HTTP 500" in row["disabled_reason"]
    assert_good_feeds_ingested(db, server)


def test_non_utf8_article_pages_are_stored_correctly(tmp_path: Path, server: FeedServer) -> None:
    text = "\n\n".join(["Les élèves de l'école du château ont été très heureux à la fête où le maïs était servi."] * 3)
    entries = [Entry("latin-header", "Fête au château", text, recent(1)),
               Entry("latin-undeclared", "Fête au village", text.replace("château", "village"), recent(2))]
    server.feed("/french.xml", entries, pages=False)
    server.page("/articles/latin-header", article_html("Fête au château", text, meta=False), charset="cp1252")
    server.page("/articles/latin-undeclared", article_html("Fête au village", text.replace("château", "village"),
                                                           meta=False), charset="cp1252", declare=None)
    path = setup(tmp_path, server, "/french.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    rows = query(db, "SELECT text, extraction FROM articles WHERE url LIKE '%latin-%'")
    assert len(rows) == 2
    for row in rows:
        assert row["extraction"] == "trafilatura"
        assert "élèves" in row["text"] and "maïs" in row["text"], row["text"]
    assert_good_feeds_ingested(db, server)


def test_robots_txt_disallowed_pages_are_not_fetched(tmp_path: Path, server: FeedServer) -> None:
    server.robots("User-agent: *\nDisallow: /articles/members-\n")
    entries = [Entry(f"members-{i}", f"Members only story {i}", story("members club", i), recent(i))
               for i in range(2)]
    server.feed("/members.xml", entries)
    path = setup(tmp_path, server, "/members.xml")
    one_pass(path)
    db = tmp_path / "monitor.db"
    assert server.hits["/articles/members-0"] == 0 and server.hits["/articles/members-1"] == 0
    assert server.hits["/robots.txt"] == 1  # one site, one robots.txt, however many pages
    rows = query(db, "SELECT extraction FROM articles WHERE url LIKE '%members-%'")
    assert [r["extraction"] for r in rows] == ["feed-summary", "feed-summary"]
    assert_good_feeds_ingested(db, server)


def test_robots_can_be_ignored_by_configuration(tmp_path: Path, server: FeedServer) -> None:
    server.robots("User-agent: *\nDisallow: /\n")
    path = setup(tmp_path, server, fetch={"respect_robots": False})
    one_pass(path)
    assert server.hits["/robots.txt"] == 0
    assert_good_feeds_ingested(tmp_path / "monitor.db", server)


def test_quiet_feeds_are_polled_less_often(tmp_path: Path, server: FeedServer) -> None:
    weekly = [Entry(f"weekly-{i}", f"Weekly column {i}", story("garden column", i), recent(i, hours=24 * 7))
              for i in range(4)]
    server.feed("/weekly.xml", weekly)
    server.feed("/ttl.xml", [Entry("ttl-0", "Ttl story", story("ttl topic", 0), recent(0))], ttl=120)
    path = setup(tmp_path, server, "/weekly.xml", "/ttl.xml", interval=600,
                 schedule={"max_interval": "4h", "adaptive": True})
    one_pass(path)
    db = tmp_path / "monitor.db"
    weekly_row = feed_row(db, server.url("/weekly.xml"))
    assert weekly_row["poll_interval"] == 4 * 3600  # half a week, capped by max_interval
    assert 4 * 3600 - 10 < seconds_until(weekly_row["next_due"]) <= 4 * 3600
    assert feed_row(db, server.url("/ttl.xml"))["poll_interval"] == 7200  # <ttl>120</ttl> minutes
    assert feed_row(db, server.url(GOOD[0]))["poll_interval"] == 600  # hourly entries: no stretch
    assert_good_feeds_ingested(db, server)


# -- the daemon ---------------------------------------------------------------------------------


def test_daemon_stops_cleanly_on_sigterm_with_structured_logs(tmp_path: Path, server: FeedServer) -> None:
    path = setup(tmp_path, server, interval=3600, schedule={"jitter": 0})
    db = tmp_path / "monitor.db"
    process = newsmonitor(path, "run")
    try:
        assert wait_for(lambda: len(article_urls(db)) >= 4), "the daemon ingested nothing"
        assert wait_for(lambda: running_pid(db) == process.pid)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "daemon stopped" in stderr
    polls = [line for line in stderr.splitlines() if "event=feed.poll" in line]
    assert len(polls) == 2
    assert re.search(rf"feed=127\.0\.0\.1 url={re.escape(server.url(GOOD[0]))} status=ok http_status=200 "
                     r"duration=[\d.]+ new=2 skipped=0", "\n".join(polls))
    assert running_pid(db) is None  # the lock went with the process
    assert len(article_urls(db)) == 4


def test_a_second_instance_refuses_to_start(tmp_path: Path, server: FeedServer) -> None:
    path = setup(tmp_path, server, interval=3600, schedule={"jitter": 0})
    db = tmp_path / "monitor.db"
    with InstanceLock(db):  # this test process plays the running daemon
        second = newsmonitor(path, "run", "--once")
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 1, stderr
        assert f"Error: another newsmonitor is already running on {db} (pid {os.getpid()})" in stderr
        assert "Traceback" not in stderr
        with pytest.raises(StoreError, match="another newsmonitor is already running"):
            run_daemon(load_settings(path), threading.Event())
        assert article_urls(db) == []  # the refused ones wrote nothing
    assert running_pid(db) is None
    with InstanceLock(db):  # free again once the holder let go
        assert running_pid(db) == os.getpid()


def test_daemon_reschedules_each_feed_by_its_own_next_due(tmp_path: Path, server: FeedServer) -> None:
    fast = [Entry(f"fast-{i}", f"Fast story {i}", story("fast topic", i), recent(i, hours=1 / 3600))
            for i in range(3)]
    server.feed("/fast.xml", fast)
    server.status("/busy.xml", 503, {"Retry-After": "3600"})
    feeds = [{"url": server.url("/fast.xml"), "interval": 1}, {"url": server.url("/busy.xml"), "interval": 1}]
    settings = load_settings(config(tmp_path, feeds, schedule={"jitter": 0, "seeds_interval": 3600}))
    stop = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(settings, stop))
    thread.start()
    try:
        assert wait_for(lambda: server.hits["/fast.xml"] >= 3, timeout=15), server.hits
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert server.hits["/busy.xml"] == 1  # Retry-After: 3600 held it back while the other was polled every second
    assert server.statuses[("/fast.xml", 304)] >= 2
    row = feed_row(tmp_path / "monitor.db", server.url("/busy.xml"))
    assert seconds_until(row["next_due"]) > 3500


def test_the_daemon_reads_a_backlog_in_one_go_and_places_it_oldest_first(tmp_path: Path, server: FeedServer) -> None:
    """120 reports of one story on a feed polled hourly: the daemon reads them in three polls in a row, not three
    hours, and the oldest report, left by the first poll's page budget, opens the story."""
    entries = good_feed(server, "/big.xml", "grain harvest", count=120)
    settings = load_settings(config(tmp_path, [{"url": server.url("/big.xml"), "interval": 3600}],
                                    fetch={"respect_robots": False}, schedule={"jitter": 0, "seeds_interval": 3600}))
    db = tmp_path / "monitor.db"
    stop = threading.Event()
    thread = _daemon_in_thread(settings, stop)
    try:
        assert wait_for(lambda: _placed(db) == 120, timeout=60), server.hits
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert server.statuses[("/big.xml", 200)] == 3
    rows = query(db, "SELECT id, url, cluster_id FROM articles")
    oldest = next(r for r in rows if r["url"] == server.url(f"/articles/{entries[-1].slug}"))
    assert {r["cluster_id"] for r in rows} == {oldest["id"]}


def _placed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        return query(database, "SELECT count(*) AS n FROM articles WHERE cluster_id IS NOT NULL")[0]["n"]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_restarted_daemon_keeps_each_feeds_backoff(tmp_path: Path, server: FeedServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = setup(tmp_path, server, interval=3600, schedule={"jitter": 0, "seeds_interval": 3600})
    db = tmp_path / "monitor.db"
    one_pass(path)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE feeds SET next_due = NULL WHERE url = ?", [server.url(GOOD[0])])
    conn.execute("UPDATE feeds SET next_due = ? WHERE url = ?", [later, server.url(GOOD[1])])
    conn.commit()
    conn.close()
    built: list[BackgroundScheduler] = []
    real_build = scheduler.build_scheduler
    monkeypatch.setattr(scheduler, "build_scheduler", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    stop = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(load_settings(path), stop))
    thread.start()
    try:
        assert wait_for(lambda: server.hits[GOOD[0]] == 2, timeout=15)
        # Still backing off after the restart: its job first fires at the stored next_due, an hour from now.
        assert built[0].get_job(server.url(GOOD[1])).next_run_time == datetime.fromisoformat(later)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert server.hits[GOOD[1]] == 1
    assert feed_row(db, server.url(GOOD[1]))["next_due"] == later


def test_run_once_due_only_polls_what_is_due(tmp_path: Path, server: FeedServer) -> None:
    server.status("/busy.xml", 503, {"Retry-After": "3600"})
    path = setup(tmp_path, server, "/busy.xml")
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["--config", str(path), "run", "--once", "--due"])
        assert result.exit_code == 0, result.output
    assert server.hits["/busy.xml"] == 1 and server.hits[GOOD[0]] == 1  # the cron-style rerun asked nobody
    assert runner.invoke(cli, ["--config", str(path), "run", "--once"]).exit_code == 0
    assert server.hits["/busy.xml"] == 2 and server.hits[GOOD[0]] == 2  # a plain --once polls everything
    assert_good_feeds_ingested(tmp_path / "monitor.db", server)


def _daemon_in_thread(settings: Settings, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_daemon, args=(settings, stop), name="daemon-under-test")
    thread.start()
    return thread


class HeldWriter:
    """Holds the writer in its first article's ingest until released, and says when a poll's result is queued.

    While the writer is held, the poll's other article and then its result
    (:class:`~monitor.engine.Polled`) reach the queue: the stop then comes with
    a fetched article not yet stored, which only the drain can store.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.holding, self.release, self.polled = threading.Event(), threading.Event(), threading.Event()
        real_ingest = pipeline.store_article

        def ingest(*args: object, **kwargs: object) -> object:
            if not self.holding.is_set():
                self.holding.set()
                assert self.release.wait(timeout=30), "the test never released the writer"
            return real_ingest(*args, **kwargs)

        held = self

        class SpyPolled(engine.Polled):
            def __init__(self, *args: object) -> None:
                super().__init__(*args)
                held.polled.set()

        monkeypatch.setattr(pipeline, "store_article", ingest)
        monkeypatch.setattr(engine, "Polled", SpyPolled)

    def stop_with_a_result_queued(self, stop: threading.Event) -> None:
        assert self.holding.wait(timeout=30), "no article reached the writer"
        assert self.polled.wait(timeout=30), "the poll never finished"
        stop.set()
        self.release.set()


def test_a_stopping_daemon_stores_what_was_fetched_and_records_its_pass(
        tmp_path: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drain: articles fetched before the stop but not yet written are stored, then the pass is recorded."""
    settings = load_settings(config(tmp_path, [{"url": server.url(GOOD[0]), "interval": 3600}],
                                    schedule={"jitter": 0, "seeds_interval": 3600}))
    held, stop = HeldWriter(monkeypatch), threading.Event()
    thread = _daemon_in_thread(settings, stop)
    held.stop_with_a_result_queued(stop)
    thread.join(timeout=30)
    assert not thread.is_alive()
    db = tmp_path / "monitor.db"
    assert sorted(article_urls(db)) == [server.url(f"/articles/harbour-bridge-{i}") for i in range(2)]
    assert feed_row(db, server.url(GOOD[0]))["last_status"] == "ok"
    runs = query(db, "SELECT kind, feeds_ok, articles_added FROM runs")
    assert runs == [{"kind": "daemon", "feeds_ok": 1, "articles_added": 2}]


def test_a_stopped_run_once_stores_what_was_fetched_and_records_its_pass(
        tmp_path: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --once`` stops as the daemon does (one engine): nothing fetched is dropped, the pass is recorded."""
    settings = load_settings(config(tmp_path, [{"url": server.url(GOOD[0]), "interval": 3600}]))
    held, stop = HeldWriter(monkeypatch), threading.Event()
    reports: list[PassReport] = []

    def once() -> None:
        with open_runtime(settings) as runtime:
            reports.append(run_pass(runtime, stop=stop))

    thread = threading.Thread(target=once)
    thread.start()
    held.stop_with_a_result_queued(stop)
    thread.join(timeout=30)
    assert not thread.is_alive() and reports[0].feeds.added == 2 and reports[0].feeds_ok == 1
    db = tmp_path / "monitor.db"
    assert len(article_urls(db)) == 2
    assert query(db, "SELECT kind, articles_added FROM runs") == [{"kind": "pass", "articles_added": 2}]


def test_the_daemon_records_a_pass_per_seeds_scan_and_status_shows_the_last(tmp_path: Path,
                                                                             server: FeedServer) -> None:
    settings = load_settings(setup(tmp_path, server, interval=3600, schedule={"jitter": 0, "seeds_interval": 1}))
    db = tmp_path / "monitor.db"
    stop = threading.Event()
    thread = _daemon_in_thread(settings, stop)
    try:
        assert wait_for(lambda: len(article_urls(db)) == 4 and len(query(db, "SELECT id FROM runs")) >= 2)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    runs = query(db, "SELECT kind, feeds_ok, feeds_failed, articles_added, duration FROM runs ORDER BY id")
    assert {r["kind"] for r in runs} == {"daemon"}
    assert sum(r["articles_added"] for r in runs) == 4 and sum(r["feeds_ok"] for r in runs) == 2
    last = runs[-1]
    status = CliRunner().invoke(cli, ["--config", str(settings.config_path), "status"])
    assert status.exit_code == 0, status.output
    assert (f"{last['feeds_ok']} feeds ok, {last['feeds_failed']} failed, {last['articles_added']} new articles"
            in status.output)


def test_the_daemon_drops_old_text_on_its_retention_schedule(tmp_path: Path, server: FeedServer) -> None:
    """schedule.retention_days: the daemon's retention job runs at start and every RETENTION_EVERY seconds."""
    path = setup(tmp_path, server, interval=3600, schedule={"jitter": 0, "seeds_interval": 3600})
    db = tmp_path / "monitor.db"
    one_pass(path)
    long_ago = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE articles SET fetched_at = ? WHERE url LIKE '%harbour-bridge-%'", [long_ago])
    conn.commit()
    conn.close()
    settings = load_settings(setup(tmp_path, server, interval=3600,
                                   schedule={"jitter": 0, "seeds_interval": 3600, "retention_days": 30}))

    def texts() -> dict[str, bool]:
        return {r["url"].rsplit("/", 1)[1]: r["text"] is not None for r in query(db, "SELECT url, text FROM articles")}

    stop = threading.Event()
    thread = _daemon_in_thread(settings, stop)
    try:
        assert wait_for(lambda: not texts()["harbour-bridge-0"], timeout=15), texts()
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert texts() == {"harbour-bridge-0": False, "harbour-bridge-1": False,
                       "school-budget-0": True, "school-budget-1": True}


def test_while_a_poll_hangs_the_daemon_still_places_what_others_stored(tmp_path: Path, server: FeedServer) -> None:
    """Articles wait for their cluster until no poll is in flight, but at most ``schedule.settle_every``:
    a feed that takes its time answering does not keep every other feed's stories out of their clusters."""
    good_feed(server, "/desk.xml", "harbour bridge", count=2)
    server.slow("/hanging.xml", 60)
    settings = load_settings(config(tmp_path, [{"url": server.url("/desk.xml"), "interval": 3600},
                                               {"url": server.url("/hanging.xml"), "interval": 3600}],
                                    fetch={"timeout": 120},
                                    schedule={"jitter": 0, "seeds_interval": 3600, "settle_every": 0.5}))
    stop = threading.Event()
    thread = _daemon_in_thread(settings, stop)
    db = tmp_path / "monitor.db"
    try:
        assert wait_for(lambda: _placed(db) == 2, timeout=30), article_urls(db)
        assert feed_row(db, server.url("/hanging.xml"))["last_fetched"] is None  # still in flight
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
