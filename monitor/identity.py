"""Identity look-ups: is this article already stored, asked only of what its own outlet published.

A canonical URL or a text hash is matched only against articles of the same outlet (the same
registrable domain, :func:`monitor.dedup.registrable_domain`, of ``articles.source``), and a GUID
only within its feed. So a feed or page cannot make another outlet's entry be skipped by claiming
its URL, reusing its GUID or copying its text first: each outlet's copy is stored under its own
host, and the clusterer links the copies as near-duplicates.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

from monitor.dedup import registrable_domain


def outlet(source: str | None) -> str:
    """The registrable domain of an ``articles.source`` (a host; a file or feed name is itself)."""
    return registrable_domain(source or "")


def _same_outlet_row(conn: sqlite3.Connection, column: str, value: str, source: str) -> int | None:
    mine = outlet(source)
    for row_id, stored in conn.execute(f"SELECT id, source FROM articles WHERE {column} = ? ORDER BY id", [value]):
        if outlet(stored) == mine:
            return row_id
    return None


def find_duplicate(
    conn: sqlite3.Connection, *, canonical_url: str | None, guid: str | None, content_hash: str | None,
    feed_id: int | None, source: str,
) -> tuple[int, str] | None:
    """The stored article this one repeats, and which key matched: the canonical URL or text hash of the
    same outlet, or the GUID of the same feed."""
    if canonical_url and (found := _same_outlet_row(conn, "canonical_url", canonical_url, source)):
        return found, "canonical url"
    if guid:
        row = conn.execute("SELECT id FROM articles WHERE feed_id IS ? AND guid = ? LIMIT 1",
                           [feed_id, guid]).fetchone()
        if row:
            return row[0], "guid"
    if content_hash and (found := _same_outlet_row(conn, "content_hash", content_hash, source)):
        return found, "text hash"
    return None


def has_canonical_url(conn: sqlite3.Connection, canonical_url: str | None) -> bool:
    """Any article with this canonical URL (seed files are keyed by their own ``file:`` URL)."""
    return bool(canonical_url) and conn.execute(
        "SELECT 1 FROM articles WHERE canonical_url = ? LIMIT 1", [canonical_url]).fetchone() is not None


def known_entry(conn: sqlite3.Connection, *, feed_id: int | None, canonical_url: str | None,
                guid: str | None) -> bool:
    """Is a feed entry stored already (so its page need not be fetched)? Its GUID within its feed; its
    link if this feed stored it, or if the link's own outlet did (another feed's hostile copy does not count)."""
    if guid and conn.execute(
            "SELECT 1 FROM articles WHERE feed_id IS ? AND guid = ? LIMIT 1", [feed_id, guid]).fetchone():
        return True
    if not canonical_url:
        return False
    link_outlet = registrable_domain(urlsplit(canonical_url).hostname or "")
    for stored_feed, stored in conn.execute(
            "SELECT feed_id, source FROM articles WHERE canonical_url = ?", [canonical_url]):
        if (feed_id is not None and stored_feed == feed_id) or outlet(stored) == link_outlet:
            return True
    return False
