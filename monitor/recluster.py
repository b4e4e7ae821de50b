"""Place stored articles again, in publication order: late feeds (the writer) and ``newsmonitor recluster``.

Why: an online clusterer's stories depend on what it had read when each report came. The
writer places what one pass brings in publication order, and a first poll's month of history
a day at a time (:func:`monitor.pipeline.place_ready`), but a feed added to a running daemon
brings its weeks after the stories of the other feeds were built from the same weeks, and a
change of the ``cluster`` settings applies only to what is placed after it. Placing every
article again from the oldest late one (``late_since``, the writer's own decision), or every
article of the store (the command), gives the stories a first poll of every feed would have given.

Story numbers stay where they mean the same thing: a story is numbered after the article that
opened it, so a story opened by the same article keeps its number, its links and its alerts (and from
a date, a story numbered after an article placed again is placed again whole, earlier articles too). An
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
from datetime import UTC, datetime, timedelta

from monitor.cluster import Clusterer, ClusterParams
from monitor.cluster.memory import day_of
from monitor.ingest import Stored, build_clusterer, refresh_with_keywords
from monitor.pipeline import Counts, settle
from monitor.store import Store, iso, parse_iso


@dataclass(frozen=True)
class Reclustered:
    """What ``recluster`` did: articles placed again, all it placed (with those that waited), live stories
    before and after, and how many of those after kept a number they had before."""

    articles: int
    placed: int
    stories_before: int
    stories_after: int
    kept_numbers: int
    counts: Counts
    clusterer: Clusterer


LATE_AFTER = timedelta(days=1)  # feeds polled every half hour and outlets' delays put reports hours behind, not days


def late_articles(store: Store, clusterer: Clusterer) -> tuple[int, datetime | None]:
    """How many articles waiting to be placed are dated over ``LATE_AFTER`` before the newest placed one, and the
    date of the oldest of them."""
    return _late(store, _newest_placed(store, clusterer))


def late_since(store: Store, clusterer: Clusterer, params: ClusterParams) -> datetime | None:
    """The date from which the writer should place every article again, before placing what waits: the oldest
    late article's (``late_articles``), no further back than ``cluster.replace_late_days`` nor than the
    ``cluster.replace_late_max`` newest placed articles (``_bounded``); None when fewer than
    ``cluster.replace_late`` articles are late (they are placed after the stories, as they come), or when the
    bounds leave none of them to place again.

    Why: the writer places what a pass brings in publication order, but a feed added to a running daemon
    brings its weeks of history after the stories of the other feeds were built from the same weeks.
    Placed again from its oldest report, a late feed gives the stories a first poll of every feed gives
    (the realistic stream's daemon with feeds added while it runs, date seeds 0-8: 0.005-0.009 of F1
    either way around the first poll before; equal to it now in 9 date seeds of 10)."""
    newest = _newest_placed(store, clusterer)
    count, oldest = _late(store, newest)
    if not params.replace_late or count < params.replace_late or oldest is None or newest is None:
        return None
    since = _bounded(store, max(oldest, newest - timedelta(days=params.replace_late_days)), params.replace_late_max)
    return since if since < newest - LATE_AFTER else None


def _bounded(store: Store, since: datetime, most: int) -> datetime:
    """``since``, or a later date from which at most ``most`` articles are placed again.

    Why: placing again holds the writer (nothing else is stored meanwhile) and grows the write-ahead log;
    its cost is per article, about 8 CPU-ms whatever the store holds (``bench/replace_scale.py``: 7 days
    of a store of 100,000 at 1,000 a day, 6,936 articles, 52 CPU-s; 31 days, 250 CPU-s). A month of a
    busy store would hold it for minutes at each feed added."""
    row = store.db.execute(f"SELECT COALESCE(published, fetched_at) AS at FROM articles WHERE {_AGAIN} "
                           "ORDER BY at DESC LIMIT 1 OFFSET :offset", {"since": iso(since), "offset": most}).fetchone()
    return since if row is None else max(since, parse_iso(row[0]) + timedelta(seconds=1))  # dates are to the second


def _newest_placed(store: Store, clusterer: Clusterer) -> datetime | None:
    """The newest date placed, no later than now: a feed whose clock runs ahead (dates up to a day after the
    fetch are kept) must not make every other feed's reports late. None with nothing waiting to be placed:
    an idle pass never reads the clusterer's memory back."""
    if store.db.execute("SELECT 1 FROM articles WHERE cluster_id IS NULL LIMIT 1").fetchone() is None:
        return None
    newest = clusterer.newest()
    return None if newest is None else min(datetime.fromtimestamp(newest, UTC), datetime.now(UTC))


def _late(store: Store, newest: datetime | None) -> tuple[int, datetime | None]:
    if newest is None:
        return 0, None
    count, oldest = store.db.execute(
        "SELECT COUNT(*), MIN(COALESCE(published, fetched_at)) FROM articles "
        "WHERE cluster_id IS NULL AND COALESCE(published, fetched_at) < ?", [iso(newest - LATE_AFTER)]).fetchone()
    return count, parse_iso(oldest)


# Articles placed again: placed before, text kept, and (from a date) placed at that date or after.
_AGAIN = "cluster_id IS NOT NULL AND text IS NOT NULL AND (:since IS NULL OR COALESCE(published, fetched_at) >= :since)"
# With them, every article (text kept) of a story numbered after one of them, and so on. Why: a story is numbered
# after the article that opened it, and an article placed again that opens a story opens it under its own
# number; a story still holding that number with earlier articles would take it in without any decision (the
# article was read again out of the story it opened, or is placed again under stricter settings).
_PLACED_AGAIN = f"""WITH RECURSIVE again(id) AS (
    SELECT id FROM articles WHERE {_AGAIN}
    UNION SELECT articles.id FROM articles JOIN again ON articles.cluster_id = again.id WHERE articles.text IS NOT NULL
)"""


def readable_articles(store: Store, since: datetime | None = None) -> int:
    """Articles ``recluster`` places again: those placed before whose text is kept (from ``since``, with the
    earlier ones of the stories numbered after them)."""
    return store.db.execute(f"{_PLACED_AGAIN} SELECT COUNT(*) FROM again", {"since": iso(since)}).fetchone()[0]


def recluster(store: Store, params: ClusterParams, *, since: datetime | None = None, keywords: Sequence[str] = (),
              on_placed: Callable[[], None] = lambda: None) -> Reclustered:
    """Place every article whose text is kept again (those placed at ``since`` or after, if given) in
    publication order, with ``params``, as one transaction; ``on_placed`` is called after each placing
    (for a progress bar). The clusterer that placed them is returned, for a writer to go on with."""
    with store.transaction():
        stories_before = _stories(store)
        was_in = _forget_places(store, since)
        clusterer, counts, placed = build_clusterer(store, params), Counts(), 0
        for _, outcome in settle(store, clusterer, {}, keywords=keywords):
            counts.count(outcome)
            if isinstance(outcome, Stored):
                placed += 1
                on_placed()
        stories_after = _renumber(store, was_in, keywords)
        return Reclustered(len(was_in), placed, len(stories_before), len(stories_after),
                           len(stories_after & stories_before), counts, clusterer)


def _stories(store: Store) -> set[int]:
    """The numbers of the stories that hold articles."""
    return {row[0] for row in store.db.execute("SELECT DISTINCT cluster_id FROM articles WHERE cluster_id IS NOT NULL")}


def _forget_places(store: Store, since: datetime | None) -> dict[int, int]:
    """Take the articles to place again out of their stories, and what the clusterer's memory says of those
    stories; returns where each article was (article -> story).

    From a date, the stories that keep earlier articles keep them, but not their centroids (which held
    the later ones) nor the index rows of the days placed again: the clusterer that places the articles
    again assembles those stories from the kept states of the docs it holds (``cluster.memory.restore_kept``),
    as it does at each start-up until they change; a story that left memory is found again only
    through docs still in memory."""
    db, marks = store.db, {"since": iso(since)}
    was_in = dict(db.execute(f"{_PLACED_AGAIN} SELECT id, cluster_id FROM articles WHERE id IN again", marks))
    db.conn.executemany("UPDATE articles SET cluster_id = NULL, duplicate_of = NULL, duplicate_similarity = NULL, "
                        "cluster_score = NULL, cluster_terms = NULL, split_from = NULL, merged_from = NULL, "
                        "rescored_at = NULL WHERE id = ?", [(a,) for a in was_in])
    if since is None:
        for table in ("cluster_docs", "cluster_states", "cluster_keys"):
            db.execute(f"DELETE FROM {table}")
    else:
        db.conn.executemany("DELETE FROM cluster_docs WHERE article_id = ?", [(a,) for a in was_in])
        db.conn.executemany("DELETE FROM cluster_states WHERE cluster_id = ?", [(c,) for c in set(was_in.values())])
        db.execute("DELETE FROM cluster_keys WHERE day >= ?", [day_of(since.timestamp())])
    return was_in


def _renumber(store: Store, was_in: dict[int, int], keywords: Sequence[str]) -> set[int]:
    """Point each story number that holds nothing now at the story holding most of its articles, as a merge
    leaves it, and count again what each story touched holds (statistics, title, tracked keywords); returns
    the numbers of the stories that hold articles now."""
    now_in = dict(store.db.execute("SELECT id, cluster_id FROM articles WHERE cluster_id IS NOT NULL").fetchall())
    went: dict[int, Counter[int]] = defaultdict(Counter)
    for article_id, old in was_in.items():
        went[old][now_in[article_id]] += 1
    live = set(now_in.values())
    for old, successors in sorted(went.items()):
        if old not in live:
            store.merge_cluster(old, min(successors, key=lambda s: (-successors[s], s)))
    # A number an article opens again may have been another story's, with that story's tracked keywords.
    for cluster_id in sorted({now_in[a] for a in was_in} | (live & set(went))):
        refresh_with_keywords(store, cluster_id, keywords)
    return live
