"""The writer's steps: store an article (exact dedup), then place it (near-dup and event clustering).

Only the writer thread calls these. :func:`store_article` inserts the article
without a cluster; :func:`place_article` decides its cluster, and the clusterer
learns it inside that transaction: what it learned (the article's kept state, its
cluster's centroid, index rows) is written in the same transaction, so the store is
the clusterer's memory. If the transaction fails, the clusterer forgets everything
and reads it back from the store when next needed, so memory is never ahead of the
database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc, Merge, Reason, Split
from monitor.dedup import canonical_url, content_hash
from monitor.models import Article
from monitor.store import Store, iso, parse_iso
from monitor.store_memory import StoredMemory


@dataclass(frozen=True)
class Stored:
    article_id: int
    cluster_id: int
    is_new_cluster: bool
    duplicate_of: int | None
    split: Split | None = None
    merge: Merge | None = None


@dataclass(frozen=True)
class AlreadyStored:
    article_id: int
    reason: str


IngestOutcome = Stored | AlreadyStored


def matched_keywords(keywords: Sequence[str], text: str) -> list[str]:
    """Tracked terms found in ``text`` as whole words, case-insensitively ("ICE" is not in "police")."""
    return [k for k in keywords if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.IGNORECASE)]


def _doc_of(pending: Pending) -> Doc:
    """What the clusterer reads of a stored article: placed at its date, else when it was fetched; with its
    text as the extraction processes read it, when they did (``Article.reading``)."""
    article = pending.article
    return Doc(id=pending.article_id, title=article.title, text=article.text,
               published=article.published or article.fetched_at, source=article.source, reading=article.reading)


MAX_CLOCK_SKEW = timedelta(days=1)
# Before this a date is a broken default (the Unix epoch, year 1), not a news report's date.
EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=UTC)


def _sane_published(article: Article) -> datetime | None:
    """The publication date the store keeps and the clusterer places the article by.

    The rule, for dates a feed or page claims:
    - none: stored as unknown; the clusterer places the article at its fetch time;
    - before 1990 (the epoch, year 1): a broken default, treated as none;
    - more than a day after we fetched it: a wrong clock, capped at fetch time + 1 day,
      so it neither sorts first for ever nor sits beside stories of days to come;
    - anything else, however old, is believed: backfills and late arrivals are normal,
      and the clusterer compares an article with the stories around its own date.
    """
    published = article.published
    if published is None or published < EARLIEST_PLAUSIBLE:
        return None
    return min(published, (article.fetched_at or datetime.now(UTC)) + MAX_CLOCK_SKEW)


def earliest_placing(claimed: datetime | None, now: datetime) -> datetime | None:
    """The earliest date a feed entry claiming ``claimed`` can be placed at, stored after ``now``
    (None: any date, since an undated entry takes its page's date); the rule of :func:`_sane_published`
    as a lower bound, for placing articles while polls are in flight (:mod:`monitor.horizon`)."""
    if claimed is None:
        return None
    if claimed < EARLIEST_PLAUSIBLE:  # counted as none: placed when it is fetched, after now
        return now.replace(microsecond=0)
    return min(claimed, now + MAX_CLOCK_SKEW).replace(microsecond=0)


def _row(article: Article, canonical: str | None, digest: str | None) -> dict[str, object]:
    return {
        "url": article.url or None, "canonical_url": canonical, "guid": article.guid,
        "feed_id": article.feed_id, "source": article.source, "title": article.title,
        "text": article.text, "author": article.author, "published": iso(article.published),
        "fetched_at": iso(article.fetched_at), "language": article.language,
        "content_hash": digest, "extraction": article.extraction,
    }


@dataclass(frozen=True)
class Pending:
    """Stored, and waiting to be placed in a cluster (:func:`place_article`); ``article`` is as stored."""

    article_id: int
    article: Article


def store_article(store: Store, article: Article) -> Pending | AlreadyStored:
    """Store ``article`` once, without a cluster yet; storing it again is a no-op that says why.

    Placing is a step of its own so the writer can place what a batch of polls brought
    in publication order, whatever order the pages were fetched in (``Engine.settle``).
    A crash between the two leaves a stored article without a cluster, which the next
    settle places: the store says what is left to do."""
    published, fetched = _sane_published(article), article.fetched_at or datetime.now(UTC)
    # As the store keeps them (whole seconds), so an article placed from memory and one read back agree.
    article = replace(article, published=published and published.replace(microsecond=0),
                      fetched_at=fetched.replace(microsecond=0))
    url = article.canonical_url or article.url
    canonical = canonical_url(url) if url else None
    # Empty texts all hash alike; they must not count as copies of each other.
    # Made with the text's reading in the extraction processes, where there is one (0.25 ms of the writer's).
    digest = ((article.reading and article.reading.digest_of(article.text)) or content_hash(article.text)
              if article.text.strip() else None)
    with store.transaction():
        existing = store.find_duplicate(canonical_url=canonical, guid=article.guid, content_hash=digest,
                                        feed_id=article.feed_id, source=article.source)
        if existing:
            return AlreadyStored(*existing)
        return Pending(store.insert_article(_row(article, canonical, digest)), article)


@contextmanager
def placing_together(store: Store, clusterer: Clusterer) -> Iterator[None]:
    """One transaction around several placings (each still writes what the clusterer learned from it). If it
    fails, the clusterer forgets all of them and reads the store back when next needed.

    Why: each commit writes every page the transaction touched (about 43 WAL pages per placed
    article, 21 of them the clusterer's memory, many the same pages again); 8 articles in one
    write each of those pages once. Settling the 110 pages of ``bench/pass_rate.py``: 2.28-2.40 ->
    2.09-2.15 CPU-ms per article (minimum of 15, three paired runs), with the same clusters."""
    try:
        with store.transaction():
            yield
    except BaseException:
        clusterer.forget()
        raise


@contextmanager
def _learning(store: Store, clusterer: Clusterer) -> Iterator[None]:
    """One transaction for what the block writes and what the clusterer learned meanwhile (its
    ``changes``, written last). If it fails, the clusterer forgets everything and reads the store
    back when next needed: memory may be ahead of what was rolled back, and the store is the truth."""
    with placing_together(store, clusterer):
        yield
        StoredMemory(store).remember(clusterer.changes())


def place_article(store: Store, clusterer: Clusterer, pending: Pending, *, keywords: Sequence[str] = ()) -> Stored:
    """Place a stored article in its cluster, in one transaction with what the clusterer learned."""
    with _learning(store, clusterer):
        doc, assignment = _store_placed(store, clusterer, pending, keywords)
        clusterer.add(doc, assignment)
    return Stored(
        doc.id, assignment.final_cluster_of(doc.id), assignment.is_new_cluster,
        assignment.duplicate_of, assignment.split, assignment.merge,
    )


def ingest_article(
    store: Store, clusterer: Clusterer, article: Article, *, keywords: Sequence[str] = ()
) -> IngestOutcome:
    """Store ``article`` and place it at once, for callers that take one article at a time."""
    pending = store_article(store, article)
    if isinstance(pending, AlreadyStored):
        return pending
    return place_article(store, clusterer, pending, keywords=keywords)


@dataclass(frozen=True)
class Rehomed:
    """An article that had opened a cluster of its own, moved into the story it joins now."""

    article_id: int
    cluster_id: int
    merge: Merge
    split: Split | None = None  # the story it joined, found then to hold two events


def rehome_article(store: Store, clusterer: Clusterer, pending: Pending, *,
                   keywords: Sequence[str] = ()) -> Rehomed | None:
    """Read again an article that opened a cluster and still stands alone (``Clusterer.rehome``); if it
    joins a story now, its cluster merges into that one, in one transaction with the clusterer's memory."""
    assignment = clusterer.rehome(_doc_of(pending))
    if assignment is None or assignment.merge is None:
        return None
    with _learning(store, clusterer):
        store.merge_cluster(assignment.merge.absorbed, assignment.cluster_id)
        _store_reasons(store, assignment.merge.reasons)
        _store_arrival_split(store, assignment, (assignment.cluster_id,), keywords)
        clusterer.move(pending.article_id, assignment)
    return Rehomed(pending.article_id, assignment.final_cluster_of(pending.article_id), assignment.merge,
                   assignment.split)


@dataclass(frozen=True)
class Shifted:
    """An article that had joined a story with others, moved to the story it joins now."""

    article_id: int
    cluster_id: int
    left: int
    split: Split | None = None  # the story it joined, found then to hold two events


def reconsider_article(store: Store, clusterer: Clusterer, pending: Pending, *,
                       keywords: Sequence[str] = ()) -> Shifted | None:
    """Read again an article placed with others (``Clusterer.reconsider``); if another story scores higher
    now, it moves there, in one transaction with the clusterer's memory."""
    left = clusterer.cluster_of(pending.article_id)
    assignment = clusterer.reconsider(_doc_of(pending))
    if assignment is None or left is None:
        return None
    with _learning(store, clusterer):
        store.move_articles([pending.article_id], assignment.cluster_id, split_from=left)
        store.set_reasons([(pending.article_id, assignment.score or 0.0, assignment.shared_terms)])
        _store_arrival_split(store, assignment, (left, assignment.cluster_id), keywords)
        clusterer.shift(pending.article_id, assignment)
    return Shifted(pending.article_id, assignment.final_cluster_of(pending.article_id), left, assignment.split)


def article_from_row(row: dict[str, Any]) -> Pending:
    """An article stored by an earlier run and not yet placed, as :func:`store_article` left it."""
    return Pending(row["id"], Article(
        url=row["url"] or "", title=row["title"] or "", text=row["text"] or "", source=row["source"] or "",
        guid=row["guid"], feed_id=row["feed_id"], published=parse_iso(row["published"]),
        fetched_at=parse_iso(row["fetched_at"]), language=row["language"], canonical_url=row["canonical_url"]))


def _store_placed(store: Store, clusterer: Clusterer, pending: Pending,
                  keywords: Sequence[str]) -> tuple[Doc, Assignment]:
    """Place the article: its cluster, and any split or merge that causes."""
    article_id, article = pending.article_id, pending.article
    doc = _doc_of(pending)
    assignment = clusterer.decide(doc)
    store.ensure_cluster(assignment.cluster_id, title=article.title)
    store.set_article_cluster(
        article_id,
        cluster_id=assignment.cluster_id,
        duplicate_of=assignment.duplicate_of,
        duplicate_similarity=assignment.duplicate_similarity,
        cluster_score=assignment.score,
        cluster_terms=json.dumps(list(assignment.shared_terms)),
    )
    store.refresh_cluster(
        assignment.cluster_id,
        keywords=matched_keywords(keywords, f"{article.title}\n{article.text}"),
    )
    if assignment.split is not None:
        _store_split(store, assignment.split, keywords)
    if assignment.merge is not None:
        store.merge_cluster(assignment.merge.absorbed, assignment.cluster_id)
        _store_reasons(store, assignment.merge.reasons)
        refresh_with_keywords(store, assignment.cluster_id, keywords)
    return doc, assignment


def _store_split(store: Store, split: Split, keywords: Sequence[str]) -> None:
    """Move the split-off articles to their new cluster, in the article's own transaction.

    Each article records the cluster it left (``split_from``) and gets the score and
    shared terms the clusterer recomputed against its new cluster; both clusters'
    statistics, titles and tracked keywords are recomputed from what they now hold.
    """
    store.ensure_cluster(split.new_cluster_id, title="")
    store.move_articles(split.moved, split.new_cluster_id, split_from=split.cluster_id)
    _store_reasons(store, split.reasons)
    for cluster_id in (split.cluster_id, split.new_cluster_id):
        refresh_with_keywords(store, cluster_id, keywords)


def _store_arrival_split(store: Store, assignment: Assignment, touched: Sequence[int],
                         keywords: Sequence[str]) -> None:
    """Store the split a read-again move made, if any, then recompute each story the move ``touched`` that
    the split did not (a split recomputes both its parts): each once."""
    done: set[int] = set()
    if assignment.split is not None:
        _store_split(store, assignment.split, keywords)
        done = {assignment.split.cluster_id, assignment.split.new_cluster_id}
    for cluster_id in touched:
        if cluster_id not in done:
            refresh_with_keywords(store, cluster_id, keywords)


def _store_reasons(store: Store, reasons: Sequence[Reason]) -> None:
    store.set_reasons([(r.doc_id, r.score, r.shared_terms) for r in reasons])


def refresh_with_keywords(store: Store, cluster_id: int, keywords: Sequence[str]) -> None:
    """Statistics, title and tracked keywords recomputed from what a cluster holds after a revision."""
    found = {k for text in store.cluster_texts(cluster_id) for k in matched_keywords(keywords, text)}
    store.refresh_cluster(cluster_id, keywords=sorted(found), replace_keywords=True)


def build_clusterer(store: Store, params: ClusterParams) -> Clusterer:
    """A clusterer whose memory is the store: it reads back what it held the first time it
    is needed (a pass that stores nothing new never does), and looks there for stories
    that have left memory when a late report arrives."""
    return Clusterer(params, memory=StoredMemory(store))
