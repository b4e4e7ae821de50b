"""Live reload: a running daemon (a real process) applies config edits on a file change and on SIGHUP."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from tests.feedserver import FeedServer
from tests.helpers_daemon import article_urls, config, good_feed, newsmonitor, query, wait_for


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        good_feed(running, "/a.xml", "harbour bridge")
        good_feed(running, "/b.xml", "ferry strike")
        good_feed(running, "/c.xml", "school budget")
        yield running


class Daemon:
    """``newsmonitor run`` as a process; its log lines are collected as they come."""

    def __init__(self, path: Path) -> None:
        self.process = newsmonitor(path, "run")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._reader.join(timeout=5)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def stored(db: Path, server: FeedServer, topic: str) -> bool:
    prefix = server.url(f"/articles/{topic.replace(' ', '-')}-")
    return sum(url.startswith(prefix) for url in article_urls(db)) == 2


def feed(server: FeedServer, path: str, interval: float = 3600) -> dict[str, Any]:
    return {"url": server.url(path), "interval": interval}


def test_feeds_add_reaches_the_running_daemon_without_a_restart(tmp_path: Path, server: FeedServer,
                                                                  daemons: list[Daemon]) -> None:
    path = config(tmp_path, [feed(server, "/a.xml")], schedule={"jitter": 0, "config_check": 0.5})
    db = tmp_path / "monitor.db"
    runner = CliRunner()
    idle = runner.invoke(cli, ["--config", str(path), "feeds", "add", server.url("/c.xml")])
    assert idle.exit_code == 0 and "no daemon is running" in idle.output, idle.output
    daemons.append(daemon := Daemon(path))
    assert wait_for(lambda: stored(db, server, "harbour bridge")), daemon.lines
    pid = daemon.process.pid

    result = runner.invoke(cli, ["--config", str(path), "feeds", "add", server.url("/b.xml")])
    assert result.exit_code == 0, result.output
    assert f"added {server.url('/b.xml')}; the running daemon (pid {pid}) applied it" in result.output
    assert wait_for(lambda: stored(db, server, "ferry strike"), timeout=10), daemon.lines
    assert daemon.process.poll() is None and daemon.process.pid == pid  # the same process, never restarted
    assert daemon.logged("config reloaded: 3 feeds (1 added, 0 removed, 0 changed)")


def test_sighup_applies_keywords_and_feeds_and_an_invalid_edit_keeps_the_old_config(
        tmp_path: Path, server: FeedServer, daemons: list[Daemon]) -> None:
    def write(**overrides: Any) -> Path:
        # config_check: null, so only SIGHUP reloads; polls every second (jitter 0) give later conditions to wait on
        return config(tmp_path, overrides.pop("feeds"), schedule={"jitter": 0, "config_check": None}, **overrides)

    path = write(feeds=[feed(server, "/a.xml", 1)])
    db = tmp_path / "monitor.db"
    daemons.append(daemon := Daemon(path))
    assert wait_for(lambda: stored(db, server, "harbour bridge")), daemon.lines

    path.write_text(path.read_text(encoding="utf-8") + "keywords: 5\n", encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.logged("config reload failed"), timeout=10), daemon.lines
    polled = server.hits["/a.xml"]
    assert wait_for(lambda: server.hits["/a.xml"] > polled, timeout=10), "the old config stopped polling"
    [error] = daemon.logged("config reload failed")
    assert "keywords" in error and not daemon.logged("Traceback")

    write(feeds=[feed(server, "/b.xml", 1), feed(server, "/c.xml", 1)], keywords=["ferry strike"])
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.logged("config reloaded"), timeout=10), daemon.lines
    assert daemon.logged("config reloaded: 2 feeds (2 added, 1 removed, 0 changed), 0 alert rules, 1 keywords")
    assert wait_for(lambda: stored(db, server, "ferry strike") and stored(db, server, "school budget"),
                    timeout=10), daemon.lines
    def flagged() -> list[list[str]]:
        return [json.loads(r["keywords"] or "[]") for r in query(db, "SELECT keywords FROM clusters")]

    # The new keyword applied to the cluster stored after the reload (once placed: articles are stored first).
    assert wait_for(lambda: ["ferry strike"] in flagged(), timeout=10), flagged()

    polled_a, polled_c = server.hits["/a.xml"], server.hits["/c.xml"]
    assert wait_for(lambda: server.hits["/c.xml"] >= polled_c + 2, timeout=10), server.hits
    assert server.hits["/a.xml"] == polled_a  # removed from the config: no longer polled
    assert daemon.process.poll() is None


def test_remove_disable_and_enable_reach_the_running_daemon_and_it_says_so(
        tmp_path: Path, server: FeedServer, daemons: list[Daemon]) -> None:
    """config_check is off: the commands' SIGHUP is what makes the daemon reload, and they wait to see it."""
    server.status("/gone.xml", 410)
    path = config(tmp_path, [feed(server, "/a.xml", 1), feed(server, "/b.xml", 1), feed(server, "/gone.xml", 1)],
                  schedule={"jitter": 0, "config_check": None})
    db = tmp_path / "monitor.db"
    daemons.append(daemon := Daemon(path))
    assert wait_for(lambda: stored(db, server, "harbour bridge") and stored(db, server, "ferry strike")
                    and query(db, "SELECT disabled FROM feeds WHERE url LIKE '%/gone.xml'") == [{"disabled": 1}]), \
        daemon.lines
    pid = daemon.process.pid

    def edit(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(path), "feeds", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert f"; the running daemon (pid {pid}) applied it" in edit("disable", server.url("/a.xml"))
    polled, polled_b = server.hits["/a.xml"], server.hits["/b.xml"]
    assert wait_for(lambda: server.hits["/b.xml"] >= polled_b + 2, timeout=10), server.hits
    assert server.hits["/a.xml"] <= polled + 1  # a poll already in flight may land; then none
    assert f"; the running daemon (pid {pid}) applied it" in edit("remove", server.url("/b.xml"))
    polled_b = server.hits["/b.xml"]

    good_feed(server, "/gone.xml", "school budget")  # the feed is back: 410 no more
    out = edit("enable", server.url("/gone.xml"))  # disabled by the daemon, not in the config
    assert f"enabled {server.url('/gone.xml')}; the running daemon (pid {pid}) applied it" in out
    assert wait_for(lambda: stored(db, server, "school budget"), timeout=10), daemon.lines
    assert f"; the running daemon (pid {pid}) applied it" in edit("enable", server.url("/a.xml"))
    again = server.hits["/a.xml"]
    assert wait_for(lambda: server.hits["/a.xml"] > again, timeout=10), "enabled in the config: polled again"
    assert server.hits["/b.xml"] <= polled_b + 1
    assert daemon.process.poll() is None and daemon.process.pid == pid
    assert not (tmp_path / "monitor.db.enable").exists()  # the request was taken
