"""The data behind ``newsmonitor status``: feed health, totals, the last pass, is the daemon running.

Read-only over the same tables Datasette shows (``feeds``, ``runs``), so the
terminal and the browser never disagree. Rendering lives in the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monitor.lock import running_pid
from monitor.redact import redact
from monitor.store import Store

_FEED_COLUMNS = ("id", "name", "url", "url_effective", "last_status", "last_http_status", "last_fetched",
                 "last_success", "last_error", "consecutive_errors", "failing_since", "next_due", "poll_interval",
                 "interval", "disabled", "disabled_reason", "disabled_at", "articles_added")


@dataclass(frozen=True)
class FeedHealth:
    id: int
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


def feed_health(store: Store, *, configured_only: bool = True) -> list[FeedHealth]:
    """Feeds as shown to a person: URLs' passwords and tokens, and any in an error, masked (monitor.redact)."""
    where = "WHERE in_config = 1" if configured_only else ""
    rows = store.db.query(f"SELECT {', '.join(_FEED_COLUMNS)} FROM feeds {where} ORDER BY name, id")
    return [FeedHealth(**(row | {k: redact(row[k]) for k in _SHOWN_MASKED} | {
        "disabled": bool(row["disabled"]), "consecutive_errors": row["consecutive_errors"] or 0,
        "articles_added": row["articles_added"] or 0})) for row in rows]


def status_report(store: Store, database: Path) -> StatusReport:
    last_pass = next(iter(store.db.query(
        "SELECT started, finished, duration, feeds_ok, feeds_failed, articles_added FROM runs "
        "WHERE kind = 'pass' ORDER BY id DESC LIMIT 1")), None)
    articles, with_text, last_poll = store.db.execute(
        "SELECT (SELECT COUNT(*) FROM articles), (SELECT COUNT(*) FROM articles WHERE text IS NOT NULL), "
        "(SELECT MAX(last_fetched) FROM feeds)").fetchone()
    return StatusReport(
        database=str(Path(database).resolve()), daemon_pid=running_pid(database), articles=articles,
        articles_with_text=with_text, clusters=store.count_live_clusters(), last_pass=last_pass, last_poll=last_poll,
        feeds=feed_health(store),
    )
