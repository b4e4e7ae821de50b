"""Operations: ``newsmonitor status``, structured log lines, and a progress bar only on a terminal."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.ingest import store_article
from monitor.lock import InstanceLock
from monitor.logs import configure_logging
from monitor.models import Article
from monitor.settings import load_settings
from monitor.store import Store
from tests.conftest import ROOT
from tests.feedserver import FeedServer, recent, story
from tests.helpers_daemon import config, good_feed, one_pass


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def polled(tmp_path: Path, server: FeedServer) -> Path:
    """A database after one pass over a healthy, a failing, a gone and a moved feed."""
    good_feed(server, "/good.xml", "harbour bridge")
    good_feed(server, "/new.xml", "river flood")
    server.status("/broken.xml", 500)
    server.status("/gone.xml", 410)
    server.redirect("/old.xml", "/new.xml", 301)
    feeds = [{"url": server.url(p), "name": p.strip("/").removesuffix(".xml"), "interval": 600}
             for p in ("/good.xml", "/broken.xml", "/gone.xml", "/old.xml")]
    path = config(tmp_path, feeds, log_level="WARNING")
    one_pass(path)
    return path


def test_status_shows_feed_health_totals_and_the_last_pass(polled: Path, server: FeedServer) -> None:
    result = CliRunner().invoke(cli, ["--config", str(polled), "status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "daemon: not running" in out
    assert "articles: 4 (0 with text dropped by retention)  clusters: " in out
    assert "last pass: " in out and "2 feeds ok, 2 failed, 4 new articles" in out
    assert "feeds: 1 ok, 1 moved, 1 failing, 1 disabled" in out
    assert f"[failing] broken  {server.url('/broken.xml')}" in out
    assert "1 errors in a row since " in out and ": HTTP 500" in out
    assert f"[disabled] gone  {server.url('/gone.xml')}" in out and "HTTP 410 Gone" in out
    assert f"[moved] old  {server.url('/old.xml')}" in out and f"moved to {server.url('/new.xml')}" in out


def test_status_json_carries_the_same_data(polled: Path, server: FeedServer) -> None:
    result = CliRunner().invoke(cli, ["--config", str(polled), "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["daemon_pid"] is None and data["articles"] == 4
    assert data["feed_counts"] == {"ok": 1, "moved": 1, "failing": 1, "disabled": 1, "never-polled": 0}
    by_name = {f["name"]: f for f in data["feeds"]}
    assert by_name["broken"]["consecutive_errors"] == 1 and by_name["broken"]["next_due"]
    assert by_name["gone"]["disabled"] is True and by_name["gone"]["health"] == "disabled"
    assert by_name["good"]["last_success"] and by_name["good"]["last_error"] is None


def test_feeds_list_and_enable(polled: Path, server: FeedServer) -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--config", str(polled), "feeds", "list"]).output
    assert f"moved to {server.url('/new.xml')}" in listing and "DISABLED: HTTP 410 Gone" in listing
    enabled = runner.invoke(cli, ["--config", str(polled), "feeds", "enable", server.url("/gone.xml")])
    assert enabled.exit_code == 0 and "enabled" in enabled.output
    after = runner.invoke(cli, ["--config", str(polled), "status", "--json"]).output
    assert json.loads(after)["feed_counts"]["disabled"] == 0
    unknown = runner.invoke(cli, ["--config", str(polled), "feeds", "enable", "http://nowhere.invalid/x"])
    assert unknown.exit_code == 1 and "no such feed" in unknown.output


def test_key_value_and_json_log_lines() -> None:
    stream = io.StringIO()
    log = logging.getLogger("monitor.test")
    fields = {"event": "feed.poll", "feed": "BBC World", "url": "https://x/rss", "status": "ok", "duration": 0.25}
    try:
        configure_logging("INFO", "text", stream)
        log.info("feed polled", extra=fields)
        log.debug("not shown")
        configure_logging("INFO", "json", stream)
        log.warning("feed polled", extra=fields | {"error": 'HTTP 500 "oops"\nsecond line'})
    finally:
        configure_logging("WARNING")
    text_line, json_line = stream.getvalue().splitlines()
    assert text_line.split(" ", 1)[1] == ('level=INFO logger=monitor.test event=feed.poll msg="feed polled" '
                                          'feed="BBC World" url=https://x/rss status=ok duration=0.25')
    record = json.loads(json_line)
    assert record["level"] == "WARNING" and record["feed"] == "BBC World" and record["duration"] == 0.25
    assert record["error"] == 'HTTP 500 "oops"\nsecond line'  # one line on disk, whatever the message


def _run_on_a_terminal(config_path: Path) -> tuple[int, str]:
    """``run --once`` with stderr on a pseudo-terminal, as when a person runs it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config_path), "run", "--once"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=follower, env={**os.environ, "COLUMNS": "100"})
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_and_none_in_logs(tmp_path: Path, server: FeedServer) -> None:
    feeds = []
    for i in range(12):
        good_feed(server, f"/desk-{i}.xml", f"desk {i} news", count=1)
        feeds.append({"url": server.url(f"/desk-{i}.xml")})
    path = config(tmp_path, feeds, fetch={"fetch_pages": False})
    code, terminal = _run_on_a_terminal(path)
    assert code == 0, terminal
    assert "feeds  [####" in terminal and "100%" in terminal
    assert "event=feed.poll" not in terminal  # per-feed lines are held back while the bar is drawn
    piped = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])  # stderr is not a terminal here
    assert piped.exit_code == 0, piped.output
    assert "[####" not in piped.stderr and "%" not in piped.stderr
    assert piped.stderr.count("event=feed.poll") == 12  # a log file gets one line per feed instead


def test_a_feed_added_to_the_config_shows_in_status_before_any_poll(polled: Path, server: FeedServer,
                                                                     tmp_path: Path) -> None:
    feeds = [{"url": server.url(p), "name": p.strip("/").removesuffix(".xml"), "interval": 600}
             for p in ("/good.xml", "/broken.xml", "/gone.xml", "/old.xml", "/added.xml")]
    path = config(tmp_path, feeds, log_level="WARNING")
    result = CliRunner().invoke(cli, ["--config", str(path), "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    added = {f["name"]: f for f in data["feeds"]}["added"]
    assert added["url"] == server.url("/added.xml") and added["health"] == "never-polled"
    assert data["feed_counts"]["never-polled"] == 1
    assert server.hits["/added.xml"] == 0


def _database_files(folder: Path) -> dict[str, bytes]:
    """The database and its write-ahead log as bytes (the lock file and SQLite's shared-memory index aside)."""
    return {p.name: p.read_bytes() for p in folder.glob("monitor.db*") if not p.name.endswith(("-shm", ".lock"))}


def test_read_only_commands_write_nothing_beside_a_running_daemon(polled: Path, server: FeedServer,
                                                                   tmp_path: Path) -> None:
    """status, feeds list, clusters and alerts list open the database read-only: a feed added to the config
    is shown, not synced."""
    feeds = [{"url": server.url(p), "name": p.strip("/").removesuffix(".xml"), "interval": 600}
             for p in ("/good.xml", "/broken.xml", "/gone.xml", "/old.xml", "/added.xml")]
    path = config(tmp_path, feeds, log_level="WARNING")
    before = _database_files(tmp_path)
    assert "monitor.db" in before
    runner = CliRunner()
    with InstanceLock(tmp_path / "monitor.db"):  # this test process plays the running daemon
        for args in (["clusters"], ["clusters", "--json"], ["alerts", "list"], ["status"], ["status", "--json"],
                     ["feeds", "list"], ["feeds", "list", "--json"]):
            result = runner.invoke(cli, ["--config", str(path), *args])
            assert result.exit_code == 0, result.output
        assert server.url("/added.xml") in result.output
    assert _database_files(tmp_path) == before


def test_status_counts_articles_waiting_for_their_cluster(polled: Path) -> None:
    """Articles stored but not placed yet (a pass in progress, or a crash between storing and placing)."""
    settings = load_settings(polled)
    with Store.open(settings.database) as store:
        store_article(store, Article(url="https://example.org/late", title="A late report", text=story("late", 1),
                                     source="example.org", published=recent(1)))
    out = CliRunner().invoke(cli, ["--config", str(polled), "status"]).output
    assert "articles: 5 (0 with text dropped by retention, 1 waiting for their cluster)" in out
    data = json.loads(CliRunner().invoke(cli, ["--config", str(polled), "status", "--json"]).output)
    assert data["unplaced"] == 1
    one_pass(polled)  # the next pass places it
    assert json.loads(CliRunner().invoke(cli, ["--config", str(polled), "status", "--json"]).output)["unplaced"] == 0
