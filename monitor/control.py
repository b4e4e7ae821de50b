"""Commands that change what a running daemon does: ask it to reload, and see that it did.

A command never writes the database while the daemon holds it (the daemon is the one
writer, and its scheduler would not know). After a config edit the command sends the
daemon SIGHUP (it also notices the file's change within ``schedule.config_check``) and
watches the ``feeds`` table, read-only, until the reload shows there. Re-enabling a feed
the daemon disabled (410 Gone, failing too long) is not a config edit: the command
writes the feed's URL to ``<database>.enable`` and the daemon's reload enables it, in
its own transaction, and schedules it again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.lock import running_pid
from monitor.store import Store

#: (in_config, disabled) of a feed's row, None if there is no row.
FeedRow = tuple[bool, bool] | None

WAIT = 10.0  # seconds a command waits for the daemon to apply an edit (it reloads between two stored results)


def enable_requests(database: Path) -> Path:
    return Path(f"{database}.enable")


def ask_enable(database: Path, urls: Iterable[str]) -> None:
    """Leave the URLs for the daemon's next reload (appended: two commands in a row both count)."""
    with open(enable_requests(database), "a", encoding="utf-8") as requests:
        requests.writelines(f"{url}\n" for url in urls)


def take_enable_requests(store: Store) -> set[str]:
    """The daemon's side, at a reload: enable the feeds asked for; returns their URLs."""
    path = enable_requests(store.path)
    taken = path.with_name(path.name + ".taken")
    try:
        path.replace(taken)  # a command appending from now on starts a new file, for the next reload
        urls = {line.strip() for line in taken.read_text(encoding="utf-8").splitlines() if line.strip()}
    except FileNotFoundError:
        return set()
    enabled = {url for url in urls if store.enable_feed(url)}
    taken.unlink(missing_ok=True)
    return enabled


def feed_rows(database: Path, urls: Iterable[str]) -> dict[str, FeedRow]:
    """Read-only: each URL's (in_config, disabled), as the daemon last wrote it."""
    rows: dict[str, FeedRow] = dict.fromkeys(urls)
    if not Path(database).exists():
        return rows
    try:
        conn = sqlite3.connect(f"{Path(database).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return rows
    try:
        for url in rows:
            found = conn.execute("SELECT in_config, disabled FROM feeds WHERE url = ?", [url]).fetchone()
            rows[url] = (bool(found[0]), bool(found[1])) if found else None
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return rows


@dataclass(frozen=True)
class Applied:
    """What became of a config edit: no daemon, applied by the daemon, or not (yet)."""

    pid: int | None
    applied: bool = False
    signalled: bool = False

    def describe(self, config_check: float | None) -> str:
        if self.pid is None:
            return "no daemon is running (`newsmonitor run` starts one)"
        who = f"the running daemon (pid {self.pid})" if self.pid > 0 else "the running daemon"
        if self.applied:
            return f"{who} applied it"
        if config_check:
            return f"{who} has not applied it yet; it reloads within {config_check:g} s of a change, or on SIGHUP"
        return f"{who} has not applied it yet; send it SIGHUP to apply it"


def reload_daemon(database: Path, urls: Iterable[str], done: Callable[[dict[str, FeedRow]], bool], *,
                  wait: float = WAIT) -> Applied:
    """Ask a running daemon to reload (SIGHUP) and wait until ``done`` holds for the URLs' rows."""
    pid = running_pid(database)
    if pid is None:
        return Applied(None)
    signalled = False
    if pid > 0 and pid != os.getpid():  # a daemon in a thread of this very process has no SIGHUP handler
        try:
            os.kill(pid, signal.SIGHUP)
            signalled = True
        except OSError:  # another user's process: it still notices the config's change by itself
            pass
    urls = list(urls)
    deadline = time.monotonic() + wait
    while True:
        if done(feed_rows(database, urls)):
            return Applied(pid, applied=True, signalled=signalled)
        if time.monotonic() >= deadline or running_pid(database) is None:
            return Applied(pid, signalled=signalled)
        time.sleep(0.1)
