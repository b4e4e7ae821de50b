"""The data behind ``newsmonitor status``: feed health, totals, the last pass, is the daemon running.

Read-only (:class:`~monitor.store_read.ReadOnlyStore`) over the same tables
Datasette shows (``feeds``, ``runs``), so the terminal and the browser never
disagree, and ``status`` beside a running daemon writes nothing. The configured
feeds are the list (a feed added to the config shows before the writer has
synced it). Rendering lives in the CLI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monitor.lock import running_pid
from monitor.redact import redact
from monitor.settings import FeedConfig, Settings
from monitor.store import DISABLED_IN_CONFIG
from monitor.store_read import ReadOnlyStore

_FEED_COLUMNS = ("id", "name", "url", "url_effective", "last_status", "last_http_status", "last_fetched",
                 "last_success", "last_error", "consecutive_errors", "failing_since", "next_due", "poll_interval",
                 "interval", "disabled", "disabled_reason", "disabled_at", "articles_added")


@dataclass(frozen=True)
class FeedHealth:
    id: int | None  # None: configured, not yet in the database
    name: str
    url: str
    url_effective: str | None
    last_status: str | None
    last_http_status: int | None
    last_fetched: str | None
    last_success: str | None
    last_error: str | None
    consecutive_errors: int
    failing_since: str | None
    next_due: str | None
    poll_interval: float | None
    interval: float | None
    disabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    articles_added: int

    @property
    def health(self) -> str:
        """One word for the table: disabled, failing, never-polled, moved or ok."""
        if self.disabled:
            return "disabled"
        if self.consecutive_errors:
            return "failing"
        if not self.last_fetched:
            return "never-polled"
        return "moved" if self.url_effective else "ok"


@dataclass(frozen=True)
class StatusReport:
    database: str
    daemon_pid: int | None
    articles: int
    articles_with_text: int
    unplaced: int  # stored, waiting for their cluster (placed when the polls in flight are done)
    clusters: int
    last_pass: dict[str, Any] | None
    last_poll: str | None
    feeds: list[FeedHealth] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        kinds = [f.health for f in self.feeds]
        return {kind: kinds.count(kind) for kind in ("ok", "moved", "failing", "disabled", "never-polled")}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, feed in zip(data["feeds"], self.feeds, strict=True):
            row["health"] = feed.health
        data["feed_counts"] = self.counts
        return data


_SHOWN_MASKED = ("url", "url_effective", "last_error", "disabled_reason")


def _never_polled(feed: FeedConfig) -> dict[str, Any]:
    return dict.fromkeys(_FEED_COLUMNS) | {"url": feed.url, "interval": feed.interval,
                                           "tags": json.dumps(list(feed.tags))}


def configured_feeds(reader: ReadOnlyStore, feeds: list[FeedConfig]) -> list[dict[str, Any]]:
    """The configured feeds' rows, named as the config names them; one not yet stored as never polled."""
    stored = {row["url"]: row for row in reader.feeds([f.url for f in feeds])}
    rows = []
    for feed in feeds:
        row = stored.get(feed.url, _never_polled(feed)) | {"name": feed.display_name}
        if not feed.enabled and not row["disabled"]:  # the writer has not synced the edit yet
            row |= {"disabled": 1, "disabled_reason": DISABLED_IN_CONFIG}
        rows.append(row)
    return rows


def feed_health(reader: ReadOnlyStore, feeds: list[FeedConfig]) -> list[FeedHealth]:
    """Feeds as shown to a person: URLs' passwords and tokens, and any in an error, masked (monitor.redact)."""
    rows = configured_feeds(reader, feeds)
    health = [FeedHealth(**({k: row[k] for k in _FEED_COLUMNS} | {k: redact(row[k]) for k in _SHOWN_MASKED} | {
        "disabled": bool(row["disabled"]), "consecutive_errors": row["consecutive_errors"] or 0,
        "articles_added": row["articles_added"] or 0})) for row in rows]
    return sorted(health, key=lambda f: (f.name, f.id or 0))


def status_report(reader: ReadOnlyStore, settings: Settings) -> StatusReport:
    totals = reader.totals()
    return StatusReport(
        database=str(Path(settings.database).resolve()), daemon_pid=running_pid(settings.database),
        articles=totals["articles"], articles_with_text=totals["articles_with_text"], unplaced=totals["unplaced"],
        clusters=totals["clusters"],
        last_pass=reader.last_run(), last_poll=totals["last_poll"], feeds=feed_health(reader, list(settings.feeds)),
    )
