"""Store stage: the only module that writes SQL.

A :class:`Store` wraps one ``sqlite_utils.Database`` connection, used by one
thread (the writer). Schema changes are numbered migrations, so a database made
by an older version upgrades itself on open.

Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``) with the
connection in autocommit mode: an article, its cluster update and its keyword
flags are one transaction, and a process killed at any point leaves either all
of them or none. Inside a transaction only raw ``execute`` is used, because
sqlite-utils' write helpers commit on their own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor import identity
from monitor.errors import StoreError
from monitor.migrations import MIGRATIONS  # re-exported: part of the store's interface
from monitor.settings import FeedConfig

HEADLINE_CHARS = 120
# What the write-ahead log may keep on disk once it is checkpointed. A single large transaction (placing
# a month again, a retention pass) grows the log to its size, and SQLite reuses the file at that size for
# as long as a connection is open, which for the daemon is months: 233 MB after placing 31 days of a store
# of 100,000 again (bench/replace_scale.py). With a limit, the next checkpoint that resets the log cuts
# the file back to it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection with SQLite's ``mode=ro``: it cannot write, migrate or create the file, and (WAL) reads
    while the writer commits; for the read-only commands and the fetch threads' look-ups."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of :func:`iso`, always aware (UTC if the text has no offset); None (or a malformed value
    from a hand-edited row) gives None."""
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed is not None and parsed.tzinfo is None else parsed


@dataclass(frozen=True)
class FeedState:
    """What the fetch stage needs to know about a feed before polling it; times are aware UTC datetimes."""

    id: int
    url: str
    name: str
    etag: str | None
    last_modified: str | None  # the server's own validator, sent back verbatim
    consecutive_errors: int
    disabled: bool
    next_due: datetime | None
    url_effective: str | None = None
    poll_interval: float | None = None
    failing_since: datetime | None = None
    last_new_entry: datetime | None = None

    def is_due(self, at: datetime) -> bool:
        return not self.disabled and (self.next_due is None or self.next_due <= at)

    @property
    def poll_url(self) -> str:
        """Where to fetch: the target of a permanent redirect if one was seen, else the configured URL."""
        return self.url_effective or self.url


DISABLED_IN_CONFIG = "disabled in the config (enabled: false)"
_ENABLE = ("UPDATE feeds SET disabled = 0, disabled_reason = NULL, disabled_at = NULL, consecutive_errors = 0, "
           "failing_since = NULL, next_due = NULL, url_effective = NULL WHERE url = ?")


def _feed_state(conn: sqlite3.Connection, url: str) -> FeedState | None:
    row = conn.execute(
        "SELECT id, url, name, etag, last_modified, consecutive_errors, disabled, next_due, url_effective, "
        "poll_interval, failing_since, last_new_entry FROM feeds WHERE url = ?",
        [url],
    ).fetchone()
    if row is None:
        return None
    return FeedState(row[0], row[1], row[2], row[3], row[4], row[5] or 0, bool(row[6]), parse_iso(row[7]),
                     row[8], row[9], parse_iso(row[10]), parse_iso(row[11]))


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating and migrating if needed); any problem is one StoreError naming the file."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={int(WAL_SIZE_LIMIT)}")
            store = cls(sqlite_utils.Database(conn), path)
            store.migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"{path}: cannot use the database: {exc}") from None
        return store

    @classmethod
    def open_read_only(cls, path: Path) -> Store:
        """Open an existing database with SQLite's ``mode=ro``, for commands that only read (``alerts test``):
        it cannot write, migrate or create the file, so it never competes with the writer. A database at an
        older schema is refused rather than upgraded (the writer upgrades it)."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no database yet; `newsmonitor run --once` creates it")
        try:
            store = cls(sqlite_utils.Database(connect_read_only(path)), path)
            version = store.schema_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot read the database: {exc}") from None
        if version != len(MIGRATIONS):
            store.close()
            raise StoreError(f"{path}: the database is at schema {version}, this newsmonitor reads "
                             f"{len(MIGRATIONS)}; `newsmonitor run --once` upgrades it")
        return store

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.db["_migrations"].exists():
            return 0
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM _migrations").fetchone()[0]

    def migrate(self) -> None:
        if not self.db["_migrations"].exists():
            self.db["_migrations"].create({"id": int, "name": str, "applied_at": str}, pk="id")
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= self.schema_version():
                continue
            # Not one transaction: sqlite-utils' FTS set-up runs executescript, which commits.
            # Each migration is therefore written to be re-runnable after a crash half-way.
            migration(self.db)
            self.db.execute("INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                            [number, migration.__name__, now_iso()])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work; rolled back on any exception (including KeyboardInterrupt).
        Inside another, it is part of that one.

        SQLite's own failures (a full disk, a locked or damaged file) leave as one
        StoreError naming the file, after the rollback, so the CLI can say so in a
        line; constraint violations are our bugs and stay what they are.
        """
        conn = self.db.conn
        if conn.in_transaction:  # inside another (several placings in one): that one commits or rolls back
            yield
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise StoreError(f"{self.path}: {exc}") from exc
            raise

    def _insert(self, table: str, row: dict[str, Any], *, on_conflict: str = "") -> sqlite3.Cursor:
        """INSERT one row given as a dict (raw SQL: safe inside our transactions)."""
        columns = ", ".join(f"[{c}]" for c in row)
        marks = ", ".join("?" for _ in row)
        return self.db.execute(f"INSERT INTO [{table}] ({columns}) VALUES ({marks}) {on_conflict}",
                               list(row.values()))

    def _update(self, table: str, row_id: int, fields: dict[str, Any]) -> None:
        assignments = ", ".join(f"[{name}] = ?" for name in fields)
        self.db.execute(f"UPDATE [{table}] SET {assignments} WHERE id = ?", [*fields.values(), row_id])

    # -- feeds --------------------------------------------------------------------------------

    def sync_feeds(self, feeds: Sequence[FeedConfig]) -> None:
        """Mirror the config's feed list: the YAML is the source of truth, the table holds state.

        A feed with ``enabled: false`` is disabled here (reason :data:`DISABLED_IN_CONFIG`), so every
        poller skips it as it skips a feed disabled for failing; set back to enabled, it is polled at once.
        """
        with self.transaction():
            self.db.execute("UPDATE feeds SET in_config = 0")
            for feed in feeds:
                self.db.execute(
                    "INSERT INTO feeds (url, name, tags, interval, in_config) VALUES (?, ?, ?, ?, 1) "
                    "ON CONFLICT(url) DO UPDATE SET name = excluded.name, tags = excluded.tags, "
                    "interval = excluded.interval, in_config = 1",
                    [feed.url, feed.display_name, json.dumps(list(feed.tags)), feed.interval],
                )
                if not feed.enabled:
                    self.db.execute("UPDATE feeds SET disabled = 1, disabled_reason = ?, disabled_at = ? "
                                    "WHERE url = ? AND disabled_reason IS NOT ?",
                                    [DISABLED_IN_CONFIG, now_iso(), feed.url, DISABLED_IN_CONFIG])
                else:
                    self.db.execute(_ENABLE + " AND disabled_reason = ?", [feed.url, DISABLED_IN_CONFIG])

    def feed_state(self, url: str) -> FeedState | None:
        return _feed_state(self.db.conn, url)

    def update_feed(self, feed_id: int, **fields: Any) -> None:
        """Record a poll's outcome; callers pass only the columns that changed."""
        self.record_poll(feed_id, fields)

    def record_poll(self, feed_id: int, fields: dict[str, Any], *, added: int = 0) -> None:
        """A poll's outcome (only the columns that changed) and the articles it added, in one transaction."""
        if not fields and not added:
            return
        with self.transaction():
            if fields:
                self._update("feeds", feed_id, fields)
            if added:
                self.db.execute("UPDATE feeds SET articles_added = articles_added + ? WHERE id = ?", [added, feed_id])

    def feeds(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM feeds ORDER BY id"))

    def enable_feed(self, url: str) -> bool:
        """Undo a disable (410, failing too long): the next poll happens at once, with a clean slate."""
        with self.transaction():
            cursor = self.db.execute(_ENABLE, [url])
        return cursor.rowcount > 0

    def drop_old_text(self, fetched_before: str, *, batch: int = 500) -> int:
        """Retention: empty ``text`` of articles stored before the cut-off; rows, titles and clusters stay.

        Small batches, one transaction each, so the writer never holds the lock
        for long; the FTS update trigger keeps ``articles_fts`` in step.
        """
        dropped = 0
        while True:
            with self.transaction():
                cursor = self.db.execute(
                    "UPDATE articles SET text = NULL WHERE id IN (SELECT id FROM articles "
                    "WHERE fetched_at < ? AND text IS NOT NULL LIMIT ?)", [fetched_before, batch])
            dropped += cursor.rowcount
            if cursor.rowcount < batch:
                return dropped

    # -- articles -----------------------------------------------------------------------------

    def find_duplicate(
        self, *, canonical_url: str | None, guid: str | None, content_hash: str | None,
        feed_id: int | None = None, source: str = "",
    ) -> tuple[int, str] | None:
        """An already stored article of the same outlet with the same canonical URL or text hash, or of the
        same feed with the same GUID, and which key matched (:mod:`monitor.identity`)."""
        return identity.find_duplicate(self.db.conn, canonical_url=canonical_url, guid=guid,
                                       content_hash=content_hash, feed_id=feed_id, source=source)

    def has_url(self, canonical_url: str | None) -> bool:
        """Is an article with this canonical URL stored? Seed files already stored are skipped unread."""
        return identity.has_canonical_url(self.db.conn, canonical_url)

    def insert_article(self, row: dict[str, Any]) -> int:
        return self._insert("articles", row).lastrowid

    def set_article_cluster(self, article_id: int, **fields: Any) -> None:
        self._update("articles", article_id, fields)

    def ensure_cluster(self, cluster_id: int, *, title: str) -> None:
        """A new cluster is named after its first article.

        A split may name its new part after an article whose own first cluster was merged
        away earlier: that number is a live cluster again, no longer merged into another."""
        self.db.execute(
            "INSERT INTO clusters (id, title) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET merged_into = NULL WHERE merged_into IS NOT NULL", [cluster_id, title]
        )

    def move_articles(self, article_ids: Sequence[int], cluster_id: int, *, split_from: int) -> None:
        """Re-home articles after the clusterer split ``split_from`` (callers refresh both clusters).

        ``split_from`` is kept on each article, so a reader knows it was moved; its score and
        terms explain the join it made to that cluster until ``set_reasons`` re-scores it."""
        for start in range(0, len(article_ids), 500):
            chunk = list(article_ids[start:start + 500])
            self.db.execute(
                "UPDATE articles SET cluster_id = ?, split_from = ?, rescored_at = NULL "
                f"WHERE id IN ({', '.join('?' * len(chunk))})",
                [cluster_id, split_from, *chunk])

    def merge_cluster(self, absorbed: int, into: int) -> None:
        """Move every article of ``absorbed`` into ``into`` (callers refresh ``into``).

        The absorbed row stays, empty and pointing at ``into``, so links to it and its past
        alerts still lead somewhere; its articles record ``merged_from``."""
        self.db.execute("UPDATE articles SET cluster_id = ?, merged_from = ?, rescored_at = NULL WHERE cluster_id = ?",
                        [into, absorbed, absorbed])
        self.db.execute("UPDATE clusters SET merged_into = ?, size = 0, articles = 0, sources = 0, updated_at = ? "
                        "WHERE id = ?", [into, now_iso(), absorbed])

    def set_reasons(self, reasons: Sequence[tuple[int, float, Sequence[str]]]) -> None:
        """Store (article id, score, shared terms) recomputed against the article's cluster now.

        ``rescored_at`` says the score and terms no longer describe the article's first join
        but its place in the cluster a split or merge moved it to."""
        now = now_iso()
        self.db.conn.executemany(
            "UPDATE articles SET cluster_score = ?, cluster_terms = ?, rescored_at = ? WHERE id = ?",
            [(score, json.dumps(list(terms)), now, article_id) for article_id, score, terms in reasons])

    def cluster_texts(self, cluster_id: int) -> list[str]:
        """Title and text of each article of a cluster, to recompute its tracked keywords."""
        return [f"{title or ''}\n{text or ''}" for title, text in self.db.execute(
            "SELECT title, text FROM articles WHERE cluster_id = ? ORDER BY id", [cluster_id])]

    def refresh_cluster(
        self, cluster_id: int, *, keywords: Sequence[str] = (), replace_keywords: bool = False
    ) -> None:
        """Recompute a cluster's statistics from its articles (duplicates count once in ``size``).

        The title is the earliest original article's headline; a title longer than
        ``HEADLINE_CHARS`` is usually a first sentence standing in for a missing
        headline, so a real headline from a later report is preferred to it.
        ``keywords`` are added to the cluster's tracked terms, or replace them after a
        split (when articles left the cluster).
        """
        existing = [] if replace_keywords else json.loads(
            self.db.execute("SELECT keywords FROM clusters WHERE id = ?", [cluster_id]).fetchone()[0] or "[]"
        )
        merged = sorted(set(existing) | set(keywords), key=str.casefold)
        self.db.execute(
            """
            UPDATE clusters SET
              title = COALESCE((SELECT title FROM articles WHERE cluster_id = :id AND title <> ''
                                ORDER BY duplicate_of IS NOT NULL, LENGTH(title) > :headline, id LIMIT 1), title),
              first_seen = (SELECT MIN(COALESCE(published, fetched_at)) FROM articles WHERE cluster_id = :id),
              last_seen = (SELECT MAX(COALESCE(published, fetched_at)) FROM articles WHERE cluster_id = :id),
              size = (SELECT COUNT(*) FROM articles WHERE cluster_id = :id AND duplicate_of IS NULL),
              articles = (SELECT COUNT(*) FROM articles WHERE cluster_id = :id),
              sources = (SELECT COUNT(DISTINCT source) FROM articles WHERE cluster_id = :id),
              keywords = :keywords,
              updated_at = :now
            WHERE id = :id
            """,
            {"id": cluster_id, "keywords": json.dumps(merged), "now": now_iso(), "headline": HEADLINE_CHARS},
        )

    def unplaced_articles(self, *, before: str | None = None, limit: int | None = None) -> list[int]:
        """Stored articles with no cluster yet, in the order they are placed: by the date the
        clusterer places them at (published, else fetched), then by URL, so the order does not
        depend on the order they were fetched in; only those placed at a date before ``before``
        (ISO, as stored) if given, at most ``limit`` if given."""
        return [row[0] for row in self.db.execute(
            "SELECT id FROM articles WHERE cluster_id IS NULL AND (? IS NULL OR COALESCE(published, fetched_at) < ?) "
            "ORDER BY COALESCE(published, fetched_at), COALESCE(canonical_url, url, ''), title, id LIMIT ?",
            [before, before, -1 if limit is None else limit])]

    def article_for_placing(self, article_id: int) -> dict[str, Any]:
        """What placing an article left unplaced by an earlier run needs (``ingest.article_from_row``)."""
        return next(self.db.query(
            "SELECT id, url, canonical_url, guid, feed_id, source, title, text, published, fetched_at, language "
            "FROM articles WHERE id = ?", [article_id]))

    # -- runs and reports ---------------------------------------------------------------------

    def record_run(self, row: dict[str, Any]) -> int:
        with self.transaction():
            return self._insert("runs", row).lastrowid

    def count(self, table: str) -> int:
        return self.db[table].count

    def count_live_clusters(self) -> int:
        """Clusters that hold articles now: those merged into another are only pointers."""
        return self.db.execute("SELECT COUNT(*) FROM clusters WHERE merged_into IS NULL").fetchone()[0]

    # -- alerts -------------------------------------------------------------------------------

    def alert_watermark(self) -> str | None:
        row = self.db.execute("SELECT value FROM alert_state WHERE name = 'evaluated_until'").fetchone()
        return row[0] if row else None

    def known_alert_rules(self) -> set[str]:
        """Rules evaluated at least once; a rule not in here is new and looks back at recent stories."""
        return {row[0][5:] for row in self.db.execute("SELECT name FROM alert_state WHERE name LIKE 'rule:%'")}

    def clusters_since(self, since: str | None, *, column: str = "updated_at") -> list[dict[str, Any]]:
        """Live clusters changed (``updated_at``) or active (``last_seen``) since ``since``; all if None.

        Clusters merged into another are left out: their articles are in the other one."""
        if column not in ("updated_at", "last_seen"):
            raise ValueError(column)
        sql = ("SELECT id, title, first_seen, last_seen, size, articles, sources, updated_at FROM clusters "
               "WHERE merged_into IS NULL")
        if since is None:
            return list(self.db.query(sql + " ORDER BY id"))
        return list(self.db.query(sql + f" AND {column} >= ? ORDER BY id", [since]))

    def newest_cluster_update(self) -> str | None:
        """Where a first alert evaluation leaves the watermark: every cluster so far counts as seen."""
        return self.db.execute("SELECT MAX(updated_at) FROM clusters").fetchone()[0]

    def cluster_articles(self, cluster_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The articles of each cluster, with their feed's name and tags (for rule filters and links)."""
        found: dict[int, list[dict[str, Any]]] = {cid: [] for cid in cluster_ids}
        for start in range(0, len(cluster_ids), 500):
            chunk = list(cluster_ids[start:start + 500])
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.query(
                "SELECT a.id, a.cluster_id, a.title, a.text, a.url, a.source, a.language, a.published, a.fetched_at, "
                "f.name AS feed_name, f.tags AS feed_tags FROM articles a LEFT JOIN feeds f ON f.id = a.feed_id "
                f"WHERE a.cluster_id IN ({marks}) ORDER BY a.id", chunk):
                found[row["cluster_id"]].append(row)
        return found

    def latest_alert_steps(self, cluster_ids: Sequence[int]) -> dict[tuple[str, int], tuple[int, int]]:
        """(rule, cluster) -> (last step, outlets at that alert), to decide first alert vs re-alert.

        Alerts of clusters merged into a cluster (at any depth) count as its own: the story
        was already announced under its other number, so it re-alerts only on growth."""
        latest: dict[tuple[str, int], tuple[int, int]] = {}
        for start in range(0, len(cluster_ids), 500):
            chunk = list(cluster_ids[start:start + 500])
            marks = ", ".join("?" for _ in chunk)
            for rule, cluster_id, step, sources in self.db.execute(
                    f"""WITH RECURSIVE owner(id, root) AS (
                          SELECT id, id FROM clusters WHERE id IN ({marks})
                          UNION SELECT c.id, owner.root FROM clusters c JOIN owner ON c.merged_into = owner.id)
                        SELECT a.rule, owner.root, a.step, a.sources_at_alert
                        FROM alerts a JOIN owner ON owner.id = a.cluster_id
                        ORDER BY a.step, a.sources_at_alert""", chunk):
                latest[(rule, cluster_id)] = max(latest.get((rule, cluster_id), (-1, 0)), (step, sources or 0))
        return latest

    def record_alerts(self, rows: Sequence[dict[str, Any]], *, watermark: str | None,
                      rules: Sequence[str] = ()) -> list[int]:
        """Insert new alerts and move the watermark in one transaction; an existing (rule, cluster, step) is kept."""
        ids = []
        with self.transaction():
            for row in rows:
                cursor = self._insert("alerts", row, on_conflict="ON CONFLICT(rule, cluster_id, step) DO NOTHING")
                if cursor.rowcount:
                    ids.append(cursor.lastrowid)
            if watermark is not None:
                self.db.execute("INSERT INTO alert_state (name, value) VALUES ('evaluated_until', ?) "
                                "ON CONFLICT(name) DO UPDATE SET value = excluded.value", [watermark])
            for rule in rules:
                self.db.execute("INSERT INTO alert_state (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                                [f"rule:{rule}", now_iso()])
        return ids

    def undelivered_alerts(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM alerts WHERE delivered_at IS NULL ORDER BY id"))

    def update_alerts(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Record one delivery attempt's outcome for the alerts it carried, atomically."""
        with self.transaction():
            for alert_id, fields in updates:
                self._update("alerts", alert_id, fields)


class StoreReader:
    """Read-only look-ups for worker threads: a feed's state, and is this entry already stored?

    Workers must not share the writer's connection (sqlite3 connections are
    per-thread), so each thread opens its own read-only one; WAL lets them
    read while the writer commits.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_read_only(self._path)
        return conn

    def feed_state(self, url: str) -> FeedState | None:
        return _feed_state(self._conn(), url)

    def contains(self, *, canonical_url: str | None, guid: str | None, feed_id: int | None = None) -> bool:
        """Is this feed's entry stored (:func:`monitor.identity.known_entry`)?"""
        return identity.known_entry(self._conn(), feed_id=feed_id, canonical_url=canonical_url, guid=guid)
