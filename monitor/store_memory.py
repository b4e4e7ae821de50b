"""The store's side of the clusterer's memory (``monitor.cluster.memory``): the SQL that
keeps and reads back what the clusterer decided.

Written by the writer only, inside the article's transaction (``Store.transaction``),
so the clusterer's memory and the articles can never disagree after a crash.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

from monitor.cluster.decisions import Doc
from monitor.cluster.memory import Changes, Recall, RecalledDoc, day_of
from monitor.store import Store, parse_iso

_DAY = 86400.0
_CHUNK = 900  # ids per IN (...) list, well under SQLite's variable limit


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for at in range(0, len(ids), _CHUNK):
        yield ids[at:at + _CHUNK]


class StoredMemory:
    """``monitor.cluster.memory.Memory`` over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def remember(self, changes: Changes) -> None:
        """Write what one ``Clusterer.add`` changed (inside the caller's transaction)."""
        db = self.store.db
        if changes.doc is not None:
            article_id, ts, state = changes.doc
            db.execute("INSERT OR REPLACE INTO cluster_docs (article_id, ts, state) VALUES (?, ?, ?)",
                       [article_id, ts, state])
            seq = article_id
        else:
            seq = 0
        db.conn.executemany(
            "INSERT OR REPLACE INTO cluster_states (cluster_id, first_ts, last_ts, seq, state) VALUES (?, ?, ?, ?, ?)",
            [(cid, first, last, seq, state) for cid, first, last, state in changes.clusters])
        db.conn.executemany("DELETE FROM cluster_states WHERE cluster_id = ?", [(cid,) for cid in changes.removed])
        db.conn.executemany("INSERT OR IGNORE INTO cluster_keys (key, day, cluster_id) VALUES (?, ?, ?)",
                            changes.keys)
        db.conn.executemany("DELETE FROM cluster_docs WHERE article_id = ?", [(d,) for d in changes.evicted])

    def forget_before(self, ts: float) -> tuple[int, int]:
        """Drop the index rows of days before ``ts`` and the kept states of clusters last
        changed before it, except those of stories the clusterer holds (inside the caller's
        transaction).  Returns (index rows, states) dropped.

        Why: retention drops old article text so a store running for months stays bounded;
        the clusterer's memory of those stories (about 20 index rows per article, and a
        centroid per story) grew without end beside it.  A report dated before ``ts`` then
        starts a story of its own instead of finding one whose text is gone anyway."""
        db = self.store.db
        keys = db.execute("DELETE FROM cluster_keys WHERE day < ?", [day_of(ts)]).rowcount
        states = db.execute(
            "DELETE FROM cluster_states WHERE last_ts < ? AND cluster_id NOT IN (SELECT a.cluster_id FROM "
            "cluster_docs d JOIN articles a ON a.id = d.article_id WHERE a.cluster_id IS NOT NULL)", [ts]).rowcount
        return keys, states

    def recall(self, hot_docs: int, window_days: float) -> Recall:
        """The last ``hot_docs`` articles to arrive and every article dated within
        ``window_days`` of the newest date kept, in arrival order, with their clusters'
        states in the order the clusters last changed."""
        db = self.store.db
        first_hot = db.execute("SELECT id FROM articles WHERE cluster_id IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?",
                               [hot_docs - 1]).fetchone()
        first_hot_id = first_hot[0] if first_hot else 0
        newest = db.execute("SELECT MAX(ts) FROM cluster_docs").fetchone()[0]
        since = newest - window_days * _DAY if newest is not None else float("inf")
        rows = db.execute(
            "SELECT a.id, a.title, a.published, a.fetched_at, a.source, a.cluster_id, a.duplicate_of, d.state, "
            "CASE WHEN d.state IS NULL THEN a.text END FROM articles a LEFT JOIN cluster_docs d ON d.article_id = a.id "
            "WHERE (a.id >= ? OR a.id IN (SELECT article_id FROM cluster_docs WHERE ts >= ?)) "
            "AND a.cluster_id IS NOT NULL ORDER BY a.id",  # not the article being placed now
            [first_hot_id, since]).fetchall()
        docs = [self._recalled(row) for row in rows]
        clusters = self.cluster_states(sorted({d.cluster_id for d in docs}))
        older = db.execute("SELECT EXISTS (SELECT 1 FROM articles WHERE id < ?)", [first_hot_id]).fetchone()[0]
        recall = Recall(docs, clusters, bool(older))
        return recall if recall.complete else replace(recall, docs=self._with_texts(docs))

    def _with_texts(self, docs: list[RecalledDoc]) -> list[RecalledDoc]:
        """The docs with the texts of those read without (they had a kept state): when some doc's state is
        missing (stored by an earlier version), every doc is read again."""
        texts: dict[int, str] = {}
        for chunk in _chunks([d.doc.id for d in docs if d.state is not None]):
            texts.update(self.store.db.execute(
                f"SELECT id, text FROM articles WHERE id IN ({','.join('?' * len(chunk))})", list(chunk)).fetchall())
        return [replace(d, doc=replace(d.doc, text=texts[d.doc.id] or "")) if d.doc.id in texts else d for d in docs]

    @staticmethod
    def _recalled(row: Sequence[Any]) -> RecalledDoc:
        article_id, title, published, fetched_at, source, cluster_id, duplicate_of, state, text = row
        when = parse_iso(published) or parse_iso(fetched_at)
        doc = Doc(id=article_id, title=title or "", text=text or "", published=when, source=source or "")
        return RecalledDoc(doc, cluster_id if cluster_id is not None else article_id, duplicate_of, state)

    def cold_matches(self, keys: Sequence[str], days: tuple[int, int],
                     exclude: Collection[int]) -> list[tuple[str, int]]:
        """(key, cluster) pairs of stored clusters indexed under ``keys`` on days in ``days``."""
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self.store.db.execute(
            f"SELECT key, cluster_id FROM cluster_keys WHERE key IN ({marks}) AND day BETWEEN ? AND ?",
            [*keys, *days]).fetchall()
        return [(key, cid) for key, cid in rows if cid not in exclude]

    def clusters_in_use(self, ids: Sequence[int]) -> set[int]:
        """Those of these cluster numbers that some article is in: a split may not name its new part after one."""
        found: set[int] = set()
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            found.update(cid for (cid,) in self.store.db.execute(
                f"SELECT DISTINCT cluster_id FROM articles WHERE cluster_id IN ({marks})", list(chunk)))
        return found

    def cluster_states(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Kept states of these clusters (merged-away ones have none), least recently changed first."""
        found: list[tuple[int, int, bytes]] = []
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            found += self.store.db.execute(
                f"SELECT seq, cluster_id, state FROM cluster_states WHERE cluster_id IN ({marks})", list(chunk))
        return {cid: state for _, cid, state in sorted(found)}
