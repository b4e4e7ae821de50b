"""Named read queries for the read-only commands (``status``, ``feeds list``, ``clusters``, ``alerts list``).

:class:`ReadOnlyStore` opens the database with SQLite's ``mode=ro``: it cannot
write, migrate or create the file, so a read-only command run beside the daemon
never competes with the one writer (:mod:`monitor.lock`) and leaves the file as
it found it. The feeds the config names but the database does not know yet are
the caller's to add (the config is the source of truth; the writer syncs it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.store import connect_read_only


class ReadOnlyStore:
    """``with ReadOnlyStore(path) as reader:``; a database not made yet reads as empty."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> ReadOnlyStore:
        if self.path.exists():
            try:
                self._conn = connect_read_only(self.path)
                self._conn.row_factory = sqlite3.Row
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: cannot read the database: {exc}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if self._conn is None:
            return []
        try:
            return [dict(row) for row in self._conn.execute(sql, list(params))]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the database ({exc}); "
                             "`newsmonitor run --once` creates or upgrades it") from None

    def feeds(self, urls: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of the feeds with these URLs (the configured ones), in the order they were added."""
        found = []
        for start in range(0, len(urls), 500):
            chunk = list(urls[start:start + 500])
            found += self._rows(f"SELECT * FROM feeds WHERE url IN ({', '.join('?' * len(chunk))})", chunk)
        return sorted(found, key=lambda row: row["id"])

    def last_run(self) -> dict[str, Any] | None:
        """The latest pass, ``run --once`` (kind ``pass``) or the daemon's (kind ``daemon``)."""
        rows = self._rows("SELECT kind, started, finished, duration, feeds_ok, feeds_failed, articles_added "
                          "FROM runs ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def totals(self) -> dict[str, Any]:
        """Articles (those whose text retention dropped, those waiting for their cluster), live clusters, and
        the latest feed poll."""
        rows = self._rows(
            "SELECT (SELECT COUNT(*) FROM articles) AS articles, "
            "(SELECT COUNT(*) FROM articles WHERE text IS NOT NULL) AS articles_with_text, "
            "(SELECT COUNT(*) FROM articles WHERE cluster_id IS NULL) AS unplaced, "
            "(SELECT COUNT(*) FROM clusters WHERE merged_into IS NULL) AS clusters, "
            "(SELECT MAX(last_fetched) FROM feeds) AS last_poll")
        return rows[0] if rows else {"articles": 0, "articles_with_text": 0, "unplaced": 0, "clusters": 0,
                                     "last_poll": None}

    def latest_clusters(self, limit: int = 20, *, since: str | None = None) -> list[dict[str, Any]]:
        """Live clusters, last seen first; ``since``: only those last seen at or after it."""
        return self._rows(
            "SELECT id, title, size, articles, sources, first_seen, last_seen, keywords FROM clusters "
            "WHERE merged_into IS NULL AND last_seen >= ? ORDER BY last_seen DESC, id DESC LIMIT ?",
            [since or "", limit])

    def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest alerts with their stories' titles."""
        return self._rows(
            "SELECT a.*, c.title AS cluster_title FROM alerts a LEFT JOIN clusters c ON c.id = a.cluster_id "
            "ORDER BY a.id DESC LIMIT ?", [limit])
