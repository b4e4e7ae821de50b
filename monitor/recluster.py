"""Place every stored article again, from an empty clusterer, in publication order (``newsmonitor recluster``).

Why: an online clusterer's stories depend on what it had read when each report came. The
writer places what one pass brings in publication order, and a first poll's month of history
a day at a time (:func:`monitor.pipeline.place_ready`), but a feed added to a running daemon
brings its weeks after the stories of the other feeds were built from the same weeks, and a
change of the ``cluster`` settings applies only to what is placed after it. Placing the
whole store again gives the stories a first poll of every feed at once would have given.

Story numbers stay where they mean the same thing: a story is numbered after the article that
opened it, so a story opened by the same article keeps its number, its links and its alerts. An
old number no story has now points at the story that holds most of its articles (``merged_into``,
as a merge leaves it), so its links and alerts lead there and a story already announced is
announced again only when it grows (``Store.latest_alert_steps``).

Articles whose text retention dropped (``schedule.retention_days``) cannot be read again: they
stay in the stories they were in, and articles placed again no longer join those stories.

One transaction: a crash or Ctrl-C at any moment leaves the stories as they were, and readers
(Datasette, the web pages) see the old stories until the new ones are complete.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.cluster import ClusterParams
from monitor.ingest import build_clusterer
from monitor.pipeline import Counts, settle
from monitor.store import Store, now_iso


@dataclass(frozen=True)
class Reclustered:
    """What ``recluster`` did: articles placed again, live stories before and after, and how many
    of those after kept a number they had before."""

    articles: int
    stories_before: int
    stories_after: int
    kept_numbers: int
    counts: Counts


def readable_articles(store: Store) -> int:
    """Articles ``recluster`` places again: those placed before whose text is kept."""
    return store.db.execute(
        "SELECT COUNT(*) FROM articles WHERE cluster_id IS NOT NULL AND text IS NOT NULL").fetchone()[0]


def recluster(store: Store, params: ClusterParams, *, keywords: Sequence[str] = (),
              on_placed: Callable[[], None] = lambda: None) -> Reclustered:
    """Place every article whose text is kept again, in publication order, with ``params``, as one transaction;
    ``on_placed`` is called after each placing (for a progress bar)."""
    with store.transaction():
        stories_before = store.count_live_clusters()
        was_in = _forget_places(store)
        clusterer, counts = build_clusterer(store, params), Counts()
        for _, outcome in settle(store, clusterer, {}, keywords=keywords):
            counts.count(outcome)
            on_placed()
        kept = _point_old_numbers(store, was_in)
        return Reclustered(len(was_in), stories_before, store.count_live_clusters(), kept, counts)


def _forget_places(store: Store) -> dict[int, int]:
    """Take every article whose text is kept out of its story, and empty the clusterer's memory; returns
    where each was (article -> story)."""
    db = store.db
    was_in = dict(db.execute(
        "SELECT id, cluster_id FROM articles WHERE cluster_id IS NOT NULL AND text IS NOT NULL").fetchall())
    db.execute("UPDATE articles SET cluster_id = NULL, duplicate_of = NULL, duplicate_similarity = NULL, "
               "cluster_score = NULL, cluster_terms = NULL, split_from = NULL, merged_from = NULL, "
               "rescored_at = NULL WHERE cluster_id IS NOT NULL AND text IS NOT NULL")
    for table in ("cluster_docs", "cluster_states", "cluster_keys"):
        db.execute(f"DELETE FROM {table}")
    # Their tracked keywords are found again from what they hold once placed (``refresh_cluster`` adds to them).
    db.conn.executemany("UPDATE clusters SET keywords = '[]' WHERE id = ?", [(c,) for c in set(was_in.values())])
    return was_in


def _point_old_numbers(store: Store, was_in: dict[int, int]) -> int:
    """Point each story number that holds nothing now at the story holding most of its articles; returns how
    many live stories kept a number that was live before."""
    db = store.db
    now_in = dict(db.execute("SELECT id, cluster_id FROM articles WHERE cluster_id IS NOT NULL").fetchall())
    went: dict[int, Counter[int]] = defaultdict(Counter)
    for article_id, old in was_in.items():
        went[old][now_in[article_id]] += 1
    live = {row[0] for row in db.execute(
        "SELECT DISTINCT cluster_id FROM articles WHERE cluster_id IS NOT NULL").fetchall()}
    moved = [(min(c, key=lambda s: (-c[s], s)), now_iso(), old) for old, c in sorted(went.items()) if old not in live]
    db.conn.executemany("UPDATE clusters SET merged_into = ?, size = 0, articles = 0, sources = 0, updated_at = ? "
                        "WHERE id = ?", moved)
    return len(live & set(went))
