"""Small helpers shared by the daemon, durability and status tests: configs, a pass, rows."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.engine import Engine, open_runtime, run_pass
from monitor.pipeline import PassReport
from monitor.settings import load_settings
from tests.conftest import ROOT, write_config
from tests.feedserver import Entry, FeedServer, recent, story

# No politeness delay, and a timeout no busy machine reaches on loopback (a test of timeouts sets its own).
FAST_FETCH = {"timeout": 10.0, "per_host_delay": 0, "per_host": 8, "concurrency": 8, "max_bytes": 2_000_000}


def config(folder: Path, feeds: list[dict[str, Any]], **overrides: Any) -> Path:
    """A config without seeds and without politeness delays (tests stay fast)."""
    fetch = FAST_FETCH | overrides.pop("fetch", {})
    return write_config(folder, **({"seeds_dir": None, "log_level": "INFO"} | overrides), feeds=feeds, fetch=fetch)


def good_feed(server: FeedServer, path: str, topic: str, count: int = 2) -> list[Entry]:
    """A healthy feed with ``count`` entries about ``topic``, each with an article page."""
    entries = [Entry(f"{topic.replace(' ', '-')}-{i}", f"{topic.title()} report number {i}", story(topic, i),
                     recent(i)) for i in range(count)]
    server.feed(path, entries)
    return entries


def one_pass(config_path: Path) -> PassReport:
    with open_runtime(load_settings(config_path)) as runtime:
        return run_pass(runtime)


def query(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(database)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def feed_row(database: Path, url: str) -> dict[str, Any]:
    rows = query(database, "SELECT * FROM feeds WHERE url = ?", (url,))
    assert rows, f"no feed row for {url}"
    return rows[0]


def article_urls(database: Path) -> list[str]:
    if not database.exists():
        return []
    try:
        return [r["url"] for r in query(database, "SELECT url FROM articles ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []


def newsmonitor(config_path: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``newsmonitor --config ... ARGS`` as a real process (``python -m monitor``)."""
    return subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config_path), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, **popen)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def write_until(engine: Engine, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Be the writer (take and apply messages) until ``condition`` holds."""
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.is_set():
                return False
            message = engine.next_message(timeout=0.05)
            if message is not None:
                engine.apply(message)
        return True
    finally:
        timer.cancel()
