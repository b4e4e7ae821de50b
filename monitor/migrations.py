"""The database schema as numbered migrations: a database made by an older version upgrades
itself on open (``Store.migrate``).  Each migration is written to be re-runnable after a
crash half-way: sqlite-utils' FTS set-up runs ``executescript``, which commits, so a
migration cannot be one transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _migration_1_initial(db: sqlite_utils.Database) -> None:
    db["feeds"].create(
        {
            "id": int, "url": str, "name": str, "title": str, "tags": str, "interval": float,
            "in_config": int, "etag": str, "last_modified": str, "last_status": str,
            "last_http_status": int, "last_error": str, "last_fetched": str, "last_success": str,
            "consecutive_errors": int, "next_due": str, "disabled": int, "entries_seen": int,
            "articles_added": int,
        },
        pk="id",
        not_null={"url"},
        if_not_exists=True,
        defaults={"consecutive_errors": 0, "disabled": 0, "in_config": 1, "entries_seen": 0,
                  "articles_added": 0},
    )
    db["feeds"].create_index(["url"], unique=True, if_not_exists=True)
    db["clusters"].create(
        {
            "id": int, "title": str, "first_seen": str, "last_seen": str, "size": int,
            "articles": int, "sources": int, "keywords": str, "updated_at": str,
        },
        pk="id",
        defaults={"size": 0, "articles": 0, "sources": 0, "keywords": "[]"},
        if_not_exists=True,
    )
    db["articles"].create(
        {
            "id": int, "url": str, "canonical_url": str, "guid": str, "feed_id": int, "source": str,
            "title": str, "text": str, "author": str, "published": str, "fetched_at": str,
            "language": str, "content_hash": str, "extraction": str, "cluster_id": int,
            "duplicate_of": int, "duplicate_similarity": float, "cluster_score": float,
            "cluster_terms": str,
        },
        pk="id",
        foreign_keys=[("feed_id", "feeds", "id"), ("cluster_id", "clusters", "id"),
                      ("duplicate_of", "articles", "id")],
        if_not_exists=True,
    )
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_articles_canonical_url ON articles(canonical_url) "
               "WHERE canonical_url IS NOT NULL")
    db["articles"].create_index(["guid"], if_not_exists=True)
    db["articles"].create_index(["content_hash"], if_not_exists=True)
    db["articles"].create_index(["cluster_id"], if_not_exists=True)
    db["articles"].create_index(["published"], if_not_exists=True)
    if not db["articles"].detect_fts():
        db["articles"].enable_fts(["title", "text"], create_triggers=True, tokenize="porter")
    db["runs"].create(
        {"id": int, "started": str, "finished": str, "kind": str, "seeds": int, "feeds_ok": int,
         "feeds_failed": int, "articles_added": int, "duplicates": int, "skipped": int,
         "duration": float},
        pk="id",
        if_not_exists=True,
    )


def _migration_2_alerts(db: sqlite_utils.Database) -> None:
    """Alerts, written before they are sent; the unique key makes "once per (rule, cluster, growth step)" a fact.

    ``delivered_to`` lists the channel targets (hashed, never the URLs with
    their secrets) already served, so a retry after a partial failure does not
    repeat a message to the targets that got it. ``alert_state`` holds the
    evaluation watermark (clusters updated since then are matched next).
    """
    db.execute("""
        CREATE TABLE IF NOT EXISTS alerts (
          id INTEGER PRIMARY KEY,
          rule TEXT NOT NULL,
          cluster_id INTEGER NOT NULL REFERENCES clusters(id),
          step INTEGER NOT NULL DEFAULT 0,
          reason TEXT,
          matched_terms TEXT NOT NULL DEFAULT '[]',
          sources_at_alert INTEGER,
          articles_at_alert INTEGER,
          created TEXT NOT NULL,
          title TEXT,
          message TEXT,
          delivered_at TEXT,
          delivered_to TEXT NOT NULL DEFAULT '[]',
          attempts INTEGER NOT NULL DEFAULT 0,
          last_error TEXT,
          next_attempt TEXT,
          UNIQUE (rule, cluster_id, step)
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS idx_alerts_pending ON alerts(next_attempt) WHERE delivered_at IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_alerts_created ON alerts(created)")
    db.execute("CREATE TABLE IF NOT EXISTS alert_state (name TEXT PRIMARY KEY, value TEXT)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_clusters_updated_at ON clusters(updated_at)")

def _migration_3_feed_health(db: sqlite_utils.Database) -> None:
    """Adaptive scheduling, permanent redirects, disabling and retention (re-runnable: adds what is missing)."""
    have = set(db["feeds"].columns_dict)
    for column, kind in (("url_effective", str), ("poll_interval", float), ("failing_since", str),
                         ("last_new_entry", str), ("disabled_reason", str), ("disabled_at", str)):
        if column not in have:
            db["feeds"].add_column(column, kind)
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_fetched_at ON articles(fetched_at)")


def _migration_4_split_from(db: sqlite_utils.Database) -> None:
    """Articles moved by a split check remember the cluster they left (re-runnable)."""
    if "split_from" not in db["articles"].columns_dict:
        db["articles"].add_column("split_from", int)


def _migration_5_merges(db: sqlite_utils.Database) -> None:
    """A cluster merged into another points at it; its articles remember where they came from."""
    if "merged_into" not in db["clusters"].columns_dict:
        db["clusters"].add_column("merged_into", int)
    if "merged_from" not in db["articles"].columns_dict:
        db["articles"].add_column("merged_from", int)
    db.execute("CREATE INDEX IF NOT EXISTS idx_clusters_merged_into ON clusters(merged_into)")


def _migration_6_rescored(db: sqlite_utils.Database) -> None:
    """An article's score and terms may be recomputed against the cluster a split or merge moved it to."""
    if "rescored_at" not in db["articles"].columns_dict:
        db["articles"].add_column("rescored_at", str)


def _migration_7_clusterer_memory(db: sqlite_utils.Database) -> None:
    """The clusterer's memory (``monitor.store_memory``): each article's kept state, each
    cluster's centroid, and the (key, day, cluster) index that finds stories out of memory."""
    db.execute("CREATE TABLE IF NOT EXISTS cluster_docs (article_id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
               "state BLOB NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_cluster_docs_ts ON cluster_docs(ts)")
    db.execute("CREATE TABLE IF NOT EXISTS cluster_states (cluster_id INTEGER PRIMARY KEY, first_ts REAL NOT NULL, "
               "last_ts REAL NOT NULL, seq INTEGER NOT NULL, state BLOB NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS cluster_keys (key TEXT NOT NULL, day INTEGER NOT NULL, "
               "cluster_id INTEGER NOT NULL, PRIMARY KEY (key, day, cluster_id)) WITHOUT ROWID")


def _migration_8_outlet_identity(db: sqlite_utils.Database) -> None:
    """Identity belongs to the outlet (``monitor.identity``): a canonical URL is unique per outlet, not
    globally (another outlet's copy claiming it is stored too), and GUIDs are looked up per feed."""
    db.execute("DROP INDEX IF EXISTS idx_articles_canonical_url")
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_canonical ON articles(canonical_url) "
               "WHERE canonical_url IS NOT NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_feed_guid ON articles(feed_id, guid) WHERE guid IS NOT NULL")




def _migration_9_fts_on_text_only(db: sqlite_utils.Database) -> None:
    """The full-text index is updated when an article's title or text changes, not on every
    update: placing an article in a cluster, a split or a merge touched the row and re-indexed
    its whole text (8.7% of the writer's CPU)."""
    db.execute("DROP TRIGGER IF EXISTS articles_au")
    db.execute("""CREATE TRIGGER IF NOT EXISTS articles_au AFTER UPDATE OF title, text ON articles BEGIN
  INSERT INTO articles_fts (articles_fts, rowid, title, text) VALUES('delete', old.rowid, old.title, old.text);
  INSERT INTO articles_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text);
END""")


_FTS_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS articles_ai AFTER INSERT ON articles BEGIN
  INSERT INTO articles_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text);
END""",
    """CREATE TRIGGER IF NOT EXISTS articles_ad AFTER DELETE ON articles BEGIN
  INSERT INTO articles_fts (articles_fts, rowid, title, text) VALUES('delete', old.rowid, old.title, old.text);
END""",
    """CREATE TRIGGER IF NOT EXISTS articles_au AFTER UPDATE OF title, text ON articles BEGIN
  INSERT INTO articles_fts (articles_fts, rowid, title, text) VALUES('delete', old.rowid, old.title, old.text);
  INSERT INTO articles_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text);
END""",
)


def _migration_10_web_orders(db: sqlite_utils.Database) -> None:
    """Indexes for what the web pages filter and order by (``monitor.store_views``): live stories by
    latest activity and by size, and a story's articles found by language or by feed."""
    # merged_into first (live stories are "merged_into IS NULL"), so the filter and the order are one index.
    db.execute("CREATE INDEX IF NOT EXISTS idx_clusters_live_last_seen ON clusters(merged_into, last_seen, id)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_clusters_live_size ON clusters(merged_into, sources, size, last_seen)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_language_cluster ON articles(language, cluster_id)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_feed_cluster ON articles(feed_id, cluster_id)")


def _migration_11_fts_whole_words(db: sqlite_utils.Database) -> None:
    """The full-text index holds whole words (``unicode61``, accents kept), not Porter stems, so the
    web search answers the alert query language exactly (``monitor.query``: "ICE" is not "iced").

    One transaction: a crash leaves the old index or the new one, never none.
    """
    tokenize = db.execute("SELECT sql FROM sqlite_master WHERE name = 'articles_fts'").fetchone()
    if tokenize and "unicode61" in tokenize[0]:
        return
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for trigger in ("articles_ai", "articles_ad", "articles_au"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute("DROP TABLE IF EXISTS articles_fts")
        # Written as sqlite-utils and Datasette look for it (``content="articles"``), so both find the index.
        conn.execute("""CREATE VIRTUAL TABLE "articles_fts" USING FTS5 ("title", "text", """
                     """tokenize='unicode61 remove_diacritics 0', content="articles")""")
        conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
        for trigger in _FTS_TRIGGERS:
            conn.execute(trigger)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migration_12_outlet_index(db: sqlite_utils.Database) -> None:
    """Outlets (``articles.source``) by index: the articles table's outlet facet read every row (0.2 s at
    100,000 articles), and the story list's outlet names come from it."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_source ON articles(source)")


def _migration_13_unplaced_index(db: sqlite_utils.Database) -> None:
    """Articles stored but not yet in a cluster: the writer places them in publication order when the
    polls in flight are done (``Engine.settle``), and finds them by this small partial index."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_articles_unplaced ON articles(id) WHERE cluster_id IS NULL")


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1_initial, _migration_2_alerts, _migration_3_feed_health, _migration_4_split_from,
    _migration_5_merges, _migration_6_rescored, _migration_7_clusterer_memory, _migration_8_outlet_identity,
    _migration_9_fts_on_text_only, _migration_10_web_orders, _migration_11_fts_whole_words,
    _migration_12_outlet_index, _migration_13_unplaced_index)
