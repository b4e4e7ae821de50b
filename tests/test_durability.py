"""kill -9 at any moment leaves a consistent database that the next start completes; retention keeps rows."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import store as store_module
from monitor.cluster import ClusterParams
from monitor.errors import StoreError
from monitor.lock import InstanceLock, running_pid
from monitor.store import MIGRATIONS, Store
from tests.feedserver import Entry, FeedServer, article_html, recent, story
from tests.helpers_daemon import article_urls, config, good_feed, newsmonitor, one_pass, query, wait_for

FEEDS, ENTRIES = 10, 5


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def consistency_problems(database: Path, *, settled: bool = True) -> list[str]:
    """Everything a half-written transaction could leave behind, as readable complaints.

    Mid-pass (``settled=False``) articles may be stored and not placed yet (the writer places
    a batch when its polls are done), but an unplaced article must carry nothing of a placing."""
    conn = sqlite3.connect(database)
    try:
        problems = []
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            problems.append(f"integrity_check: {check}")
        try:
            conn.execute("INSERT INTO articles_fts(articles_fts) VALUES('integrity-check')")
        except sqlite3.DatabaseError as exc:
            problems.append(f"FTS index out of step: {exc}")
        fts, articles = conn.execute("SELECT (SELECT COUNT(*) FROM articles_fts), (SELECT COUNT(*) FROM articles)"
                                     ).fetchone()
        if fts != articles:
            problems.append(f"{fts} FTS rows for {articles} articles")
        orphans = conn.execute("SELECT COUNT(*) FROM articles WHERE cluster_id IS NULL").fetchone()[0]
        if orphans and settled:
            problems.append(f"{orphans} articles without a cluster after a finished pass")
        half_placed = conn.execute("SELECT COUNT(*) FROM articles a WHERE cluster_id IS NULL AND (duplicate_of IS "
                                   "NOT NULL OR EXISTS (SELECT 1 FROM cluster_docs d WHERE d.article_id = a.id))"
                                   ).fetchone()[0]
        if half_placed:
            problems.append(f"{half_placed} articles half placed (a placing not in one transaction)")
        stale = conn.execute("SELECT c.id FROM clusters c WHERE c.articles != "
                             "(SELECT COUNT(*) FROM articles a WHERE a.cluster_id = c.id)").fetchall()
        if stale:
            problems.append(f"clusters with stale counts: {stale}")
        # The latest hot_docs arrivals are in the clusterer's memory, so their kept state is stored.
        unkept = conn.execute("SELECT COUNT(*) FROM (SELECT id FROM articles WHERE cluster_id IS NOT NULL "
                              "ORDER BY id DESC LIMIT ?) a WHERE NOT "
                              "EXISTS (SELECT 1 FROM cluster_docs d WHERE d.article_id = a.id)",
                              [ClusterParams().hot_docs]).fetchone()[0]
        if unkept:
            problems.append(f"{unkept} articles without the clusterer's kept state (memory behind the store)")
        lost = conn.execute("SELECT DISTINCT cluster_id FROM articles a WHERE cluster_id IS NOT NULL AND NOT EXISTS "
                            "(SELECT 1 FROM cluster_states s WHERE s.cluster_id = a.cluster_id)").fetchall()
        if lost:
            problems.append(f"clusters whose centroid the clusterer did not keep: {lost}")
        duplicates = conn.execute("SELECT url, COUNT(*) FROM articles GROUP BY url HAVING COUNT(*) > 1").fetchall()
        if duplicates:
            problems.append(f"duplicated articles: {duplicates}")
        return problems
    finally:
        conn.close()


def descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_sigkill_mid_pass_loses_nothing_committed_and_the_rerun_completes(tmp_path: Path,
                                                                           server: FeedServer) -> None:
    expected = set()
    for f in range(FEEDS):
        entries = [Entry(f"f{f}-e{e}", f"Story {e} of desk {f}", story(f"desk {f} topic {e}", e), recent(e))
                   for e in range(ENTRIES)]
        server.feed(f"/feed-{f}.xml", entries, pages=False)
        for entry in entries:  # slow pages stretch the pass so the kill lands in the middle
            server.page(f"/articles/{entry.slug}", article_html(entry.title, entry.text), delay=0.05)
            expected.add(server.url(f"/articles/{entry.slug}"))
    feeds = [{"url": server.url(f"/feed-{f}.xml"), "interval": 60} for f in range(FEEDS)]
    path = config(tmp_path, feeds, fetch={"concurrency": 2})
    db = tmp_path / "monitor.db"

    process = newsmonitor(path, "run", "--once")
    try:
        assert wait_for(lambda: len(article_urls(db)) >= 8, timeout=60, every=0.02), process.communicate()
        helpers = descendants(process.pid)  # the extraction pool's forkserver and workers
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert len(helpers) >= 2, helpers
    # Workers deaf to SIGTERM must not outlive a parent killed outright (they watch it).
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), timeout=30), helpers
    committed = article_urls(db)
    assert 8 <= len(committed) < len(expected), "the kill did not land mid-pass"
    assert consistency_problems(db, settled=False) == []
    assert running_pid(db) is None  # flock dies with the process: no stale lock

    report = one_pass(path)  # the next start resumes
    final = article_urls(db)
    assert consistency_problems(db) == []
    assert set(committed) <= set(final), "a committed article was lost"
    assert sorted(final) == sorted(expected)  # complete, and nothing twice
    assert report.feeds.added == len(expected) - len(committed)


def test_retention_drops_old_text_but_keeps_rows_clusters_and_search(tmp_path: Path, server: FeedServer) -> None:
    good_feed(server, "/desk.xml", "harbour bridge", count=3)
    path = config(tmp_path, [{"url": server.url("/desk.xml")}], schedule={"retention_days": 30})
    db = tmp_path / "monitor.db"
    one_pass(path)
    clusters_before = query(db, "SELECT id, size, articles, title FROM clusters ORDER BY id")
    old = query(db, "SELECT id, title FROM articles ORDER BY id LIMIT 1")[0]
    long_ago = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="seconds")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE articles SET fetched_at = ? WHERE id = ?", [long_ago, old["id"]])
    conn.commit()
    conn.close()

    one_pass(path)  # retention runs at the end of a pass (and every 6 hours in the daemon)
    rows = query(db, "SELECT id, title, text, cluster_id FROM articles ORDER BY id")
    assert len(rows) == 3
    assert rows[0]["text"] is None and rows[0]["title"] == old["title"] and rows[0]["cluster_id"]
    assert all(r["text"] for r in rows[1:])
    assert query(db, "SELECT id, size, articles, title FROM clusters ORDER BY id") == clusters_before
    store = Store.open(db)
    try:
        hits = {r["id"] for r in store.db["articles"].search("residents")}  # a word of every story's text
        title_hits = {r["id"] for r in store.db["articles"].search('"' + old["title"] + '"')}
    finally:
        store.close()
    assert hits == {r["id"] for r in rows[1:]}
    assert old["id"] in title_hits
    assert consistency_problems(db) == []


def test_schema_migrations_are_rerunnable(tmp_path: Path) -> None:
    """A crash between a migration and its bookkeeping row re-runs it on the next open: that must be harmless."""
    store = Store.open(tmp_path / "m.db")
    try:
        assert store.schema_version() == len(MIGRATIONS)
        next(m for m in MIGRATIONS if m.__name__ == "_migration_3_feed_health")(store.db)
        assert {"url_effective", "poll_interval", "failing_since", "disabled_reason"} <= set(
            store.db["feeds"].columns_dict)
    finally:
        store.close()


def test_a_large_transaction_leaves_no_large_log_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon keeps its connection for months: after one large transaction (placing a month again), the
    write-ahead log is cut back to the limit at the next checkpoint, not kept at the transaction's size."""
    monkeypatch.setattr(store_module, "WAL_SIZE_LIMIT", 1024 * 1024)
    wal = tmp_path / "w.db-wal"
    with Store.open(tmp_path / "w.db") as store:
        store.db.execute("CREATE TABLE scratch (body TEXT)")
        with store.db.conn:
            store.db.execute("BEGIN")
            for n in range(400):
                store.db.execute("INSERT INTO scratch VALUES (?)", [f"{n:08d}" * 2500])  # 8 MB in all
        grown = wal.stat().st_size
        store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        store.db.execute("INSERT INTO scratch VALUES ('after')")  # the first write after it resets the log
        assert grown > 4 * 1024 * 1024 and wal.stat().st_size <= 1024 * 1024


def test_the_lock_is_exclusive_within_and_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with InstanceLock(db), pytest.raises(StoreError, match=f"another newsmonitor is already running on {db}"):
        InstanceLock(db).acquire()
    with InstanceLock(db):
        pass
