"""The writer's steps: what one thread does with what the producers made.

The producers (:mod:`monitor.engine_polls`) fetch, parse and extract, and hand
over typed messages (:mod:`monitor.engine`); the writer, the one thread that
holds the database connection and the clusterer, turns them into rows here:
an article (:func:`ingest_made`), a poll's outcome for the ``feeds`` table
(:func:`record_poll`), the seed files, retention and the ``runs`` row of a pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from monitor.alerts import AlertReport
from monitor.cluster import Clusterer
from monitor.dedup import canonical_url
from monitor.ingest import (
    AlreadyStored,
    Pending,
    Rehomed,
    Shifted,
    Stored,
    article_from_row,
    place_article,
    placing_together,
    reconsider_article,
    rehome_article,
    store_article,
)
from monitor.intervals import adaptive
from monitor.models import Article, Fetched, FetchFailed, NotModified, ParseFailed, Skipped
from monitor.politeness import PollHints, PollPolicy, parse_retry_after
from monitor.redact import redact
from monitor.seeds import SeedStored, read_seeds
from monitor.settings import FeedConfig, ScheduleSettings, Settings
from monitor.store import FeedState, Store, iso
from monitor.store_memory import StoredMemory

log = logging.getLogger(__name__)


@dataclass
class Counts:
    """What a pass or a feed did, for the log line, the ``runs`` table and the CLI."""

    added: int = 0
    duplicates: int = 0
    already_stored: int = 0
    skipped: int = 0
    new_clusters: int = 0
    splits: int = 0  # clusters the clusterer found to hold two events and split
    merges: int = 0  # clusters the clusterer found to hold one story with another and merged
    moves: int = 0  # articles read again at the end of a batch and moved to the story they join now

    def count(self, outcome: Pending | Stored | Rehomed | Shifted | AlreadyStored | Skipped) -> None:
        """A stored article counts as added; what placing it did counts when it is placed."""
        if isinstance(outcome, Rehomed | Shifted):
            self.merges += isinstance(outcome, Rehomed)
            self.moves += isinstance(outcome, Shifted)
            self.splits += outcome.split is not None
        elif isinstance(outcome, Skipped):
            self.skipped += 1
        elif isinstance(outcome, AlreadyStored):
            self.already_stored += 1
        elif isinstance(outcome, Pending):
            self.added += 1
        else:
            self.duplicates += outcome.duplicate_of is not None
            self.new_clusters += outcome.is_new_cluster
            self.splits += outcome.split is not None
            self.merges += outcome.merge is not None

    def merge(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class FeedResult:
    """What a producer learned about one feed poll, once its last page is done; the writer records it."""

    feed: FeedConfig
    state: FeedState
    outcome: Fetched | NotModified | FetchFailed | ParseFailed
    entries_seen: int = 0  # articles (or skips) handed to the writer for this poll
    bozo_reason: str | None = None
    duration: float = 0.0
    hints: PollHints | None = None
    deferred: int = 0  # new entries left for later polls by fetch.max_pages_per_poll
    stopped: bool = False  # the stop signal cut the poll short; what is missing is polled again

    @property
    def incomplete(self) -> bool:
        """Entries were left out: the feed's validators must not be kept, or the next poll would be a 304."""
        return self.stopped or self.deferred > 0

    @property
    def failed(self) -> bool:
        return isinstance(self.outcome, FetchFailed | ParseFailed)

    @property
    def cancelled(self) -> bool:
        """The stop cut the feed's own request: nothing was learned about the feed."""
        return self.stopped and not isinstance(self.outcome, Fetched | NotModified)


@dataclass
class PassReport:
    seeds: Counts = field(default_factory=Counts)
    feeds: Counts = field(default_factory=Counts)
    feeds_ok: int = 0
    feeds_failed: int = 0
    duration: float = 0.0
    writer_idle: float = 0.0  # seconds the writer waited for the producers
    placing: float = 0.0  # seconds the writer spent ending batches (``settle``), the producers mostly done
    placed: int = 0  # articles placed in a cluster (stored in this pass or left unplaced by an earlier one)
    placed_early: int = 0  # of those, placed while polls were in flight (``place_ready``)
    alerts: AlertReport = field(default_factory=AlertReport)
    started: float = field(default_factory=time.time)  # wall clock, for the ``runs`` row

    @property
    def added(self) -> int:
        return self.seeds.added + self.feeds.added

    def polled(self, result: FeedResult) -> None:
        """Count the poll as ok or failed; one the stop cancelled says nothing about the feed."""
        if result.cancelled:
            return
        if result.failed:
            self.feeds_failed += 1
        else:
            self.feeds_ok += 1


def ingest_made(store: Store, made: Article | Skipped, *, feed: str) -> Pending | AlreadyStored | Skipped:
    """One entry of a feed, as its producer made it: stored (to be placed by :func:`settle`), or its skip logged."""
    if isinstance(made, Skipped):
        log.warning("entry skipped: %s", made.reason, extra={"event": "entry.skipped", "feed": feed, "url": made.what})
        return made
    return store_article(store, made)


# Articles kept in memory while they wait to be placed, and again while they may be read again after
# (``settle``); past this many they are read back from the store, so a long backfill stays bounded.
HELD = 2000


@dataclass
class Batch:
    """The articles placed since the batch was last read again, in the order they were placed, and the day of
    publication they were placed at: read again when placing moves to a later day, or at the settle."""

    placed: list[int] = field(default_factory=list)
    kept: dict[int, Pending] = field(default_factory=dict)  # up to HELD of them; the rest are read back
    day: date | None = None
    count: int = 0  # articles placed since the last settle, over every day


Placed = tuple[Pending, Stored | Rehomed | Shifted]
PLACED_TOGETHER = 8  # articles placed in one transaction (``ingest.placing_together``)


def place_ready(store: Store, clusterer: Clusterer, held: dict[int, Pending], batch: Batch, *,
                keywords: Sequence[str], before: datetime | None = None, limit: int | None = None) -> Iterator[Placed]:
    """Place stored articles that have no cluster yet, in publication order, then by URL: those placed at a
    date before ``before`` (all if None), at most ``limit`` of them; the batch is read again (``read_again``)
    each time placing moves on to a later day of publication.

    An online clusterer's result depends on the order it reads reports in, and the order
    pages reach the writer is an accident of timing: how fast each outlet answers, how
    its feed lists items, how many processes extract. Placing in an order of the articles'
    own (``Store.unplaced_articles``) makes the clusters a function of what was fetched,
    not of when, and lets the earliest report of a story found in a month of backfill
    open its cluster. While polls are in flight, the writer places only what sorts before
    every article still to come (``before``, :mod:`monitor.horizon`), which keeps that order.
    ``held`` are the articles still in memory (by id); any other unplaced article (left
    by a crash or a stop) is read back.

    Why a day at a time: a daemon that polls through the month reads each day's reports again once they
    are placed, before the next day's come; a first poll that brings the month at once, placed as one batch,
    read its reports again only at the end, and came out otherwise (ECB+ dev dated over a month, as text
    through the store, 6 date seeds: 0.9636 a settle a day, 0.9574 the month as one batch). Read again at each
    day of publication, the month's backfill gives the daily daemon's clusters, whatever order it came in.
    """
    ids = store.unplaced_articles(before=iso(before), limit=limit)
    for day, run in _runs_of_a_day(held.get(a) or article_from_row(store.article_for_placing(a)) for a in ids):
        if batch.placed and day != batch.day:
            yield from read_again(store, clusterer, batch, keywords=keywords)
        batch.day = day
        placed: list[tuple[Pending, Stored]] = []
        with placing_together(store, clusterer):
            for pending in run:
                if not (batch.placed or placed):
                    clusterer.lone_considered()  # only what this batch's docs were scored against counts in read_again
                placed.append((pending, place_article(store, clusterer, pending, keywords=keywords)))
        for pending, _ in placed:  # committed
            held.pop(pending.article_id, None)
            batch.placed.append(pending.article_id)
            if len(batch.kept) < HELD:
                batch.kept[pending.article_id] = pending
        batch.count += len(placed)
        yield from placed


def _runs_of_a_day(pendings: Iterable[Pending]) -> Iterator[tuple[date | None, list[Pending]]]:
    """Consecutive articles placed at one day of publication (UTC), ``PLACED_TOGETHER`` at most a run."""
    run: list[Pending] = []
    day: date | None = None
    for pending in pendings:
        placed_at = pending.article.published or pending.article.fetched_at
        this_day = placed_at.astimezone(UTC).date() if placed_at is not None else None
        if run and (this_day != day or len(run) == PLACED_TOGETHER):
            yield day, run
            run = []
        run.append(pending)
        day = this_day
    if run:
        yield day, run


def settle(store: Store, clusterer: Clusterer, held: dict[int, Pending], *, keywords: Sequence[str],
           batch: Batch | None = None) -> Iterator[Placed]:
    """Place every stored article that has no cluster yet (:func:`place_ready`), then read the batch again
    (:func:`read_again`). The batch (what :func:`place_ready` placed since the last settle, if given) is then over.
    """
    batch = batch or Batch()
    yield from place_ready(store, clusterer, held, batch, keywords=keywords)
    held.clear()
    yield from read_again(store, clusterer, batch, keywords=keywords)
    batch.day, batch.count = None, 0


def read_again(store: Store, clusterer: Clusterer, batch: Batch, *, keywords: Sequence[str]) -> Iterator[Placed]:
    """Read again the articles the batch placed, and those its stories make worth reading again.

    Each article of the batch that joined others moves if another story scores higher
    without it (``Clusterer.reconsider``), so do the few articles of earlier batches in the
    stories this one touched whose kept vectors say they may belong elsewhere now
    (``Clusterer.unsettled``), and each that stands alone in the cluster it opened, in this
    batch or an earlier one, and that a doc of this batch was scored against, moves if it
    joins a story now (``Clusterer.rehome``). Then the batch starts again, empty.
    """
    kept = batch.kept
    yield from _reconsidered(store, clusterer, kept, batch.placed, keywords)
    yield from _reconsidered(store, clusterer, kept, clusterer.unsettled(set(batch.placed)), keywords)
    for article_id in clusterer.lone_considered():
        pending = _kept_or_read(store, kept, article_id)
        if (moved := rehome_article(store, clusterer, pending, keywords=keywords)) is not None:
            yield pending, moved
    batch.placed, batch.kept = [], {}


def _reconsidered(store: Store, clusterer: Clusterer, kept: dict[int, Pending], article_ids: Sequence[int],
                  keywords: Sequence[str]) -> Iterator[tuple[Pending, Shifted]]:
    for article_id in article_ids:
        pending = _kept_or_read(store, kept, article_id)
        if (shifted := reconsider_article(store, clusterer, pending, keywords=keywords)) is not None:
            yield pending, shifted


def _kept_or_read(store: Store, kept: dict[int, Pending], article_id: int) -> Pending:
    return kept.get(article_id) or article_from_row(store.article_for_placing(article_id))


def _failure_fields(result: FeedResult, policy: PollPolicy, now: datetime) -> dict[str, object]:
    """Back off (honouring Retry-After); disable on 410 or after failing for ``disable_after``."""
    state, outcome = result.state, result.outcome
    errors = state.consecutive_errors + 1
    failing_since = state.failing_since or now
    headers = getattr(outcome, "headers", None) or {}
    plan = policy.failure(result.feed.interval, errors, status=getattr(outcome, "status", None),
                          reason=outcome.reason, retry_after=parse_retry_after(headers.get("retry-after"), now),
                          failing_since=failing_since, now=now)
    fields: dict[str, object] = {
        "last_status": "error", "last_error": redact(outcome.reason), "consecutive_errors": errors,
        "last_http_status": getattr(outcome, "status", None), "failing_since": iso(failing_since),
        "next_due": iso(plan.next_due)}
    if plan.disable_reason:
        fields |= {"disabled": 1, "disabled_reason": plan.disable_reason, "disabled_at": iso(now)}
        log.warning("feed disabled", extra={"event": "feed.disabled", "feed": state.name, "url": state.poll_url,
                                            "reason": plan.disable_reason})
    return fields


def _success_fields(result: FeedResult, policy: PollPolicy, added: int, now: datetime,
                    adapts: bool) -> dict[str, object]:
    """Adaptive interval: server hints and how long the feed has been quiet may lengthen it."""
    state, outcome = result.state, result.outcome
    last_new = now if added else state.last_new_entry
    quiet_for = (now - last_new).total_seconds() if last_new else None
    plan = policy.success(result.feed.interval, result.hints, quiet_for=quiet_for, now=now, adaptive=adapts)
    interval = plan.interval
    if adapts and isinstance(outcome, NotModified) and state.poll_interval:
        # A 304 carries no entries to measure; it is no reason to poll more often than last time.
        interval = min(max(interval, state.poll_interval), max(result.feed.interval, policy.max_interval))
    fields: dict[str, object] = {
        "last_status": "not-modified" if isinstance(outcome, NotModified) else "ok",
        "last_error": f"malformed feed used: {result.bozo_reason}" if result.bozo_reason else None,
        "last_http_status": 304 if isinstance(outcome, NotModified) else outcome.status,
        "consecutive_errors": 0, "failing_since": None, "last_success": iso(now),
        "etag": outcome.etag, "last_modified": outcome.last_modified, "poll_interval": interval,
        "next_due": iso(max(plan.next_due, now + timedelta(seconds=interval))), "last_new_entry": iso(last_new)}
    if result.deferred:  # entries wait over fetch.max_pages_per_poll: back at the configured interval
        fields["next_due"] = iso(now + timedelta(seconds=result.feed.interval))
    moved = outcome.moved_to
    if moved and moved != state.poll_url:
        fields["url_effective"] = moved
        log.warning("feed moved permanently; polling the new address (update the config to make it official)",
                    extra={"event": "feed.moved", "feed": state.name, "url": state.url, "moved_to": moved})
    return fields


def record_poll(store: Store, result: FeedResult, counts: Counts, *, schedule: ScheduleSettings) -> None:
    """Writer side, after the poll's last article: its outcome, backoff and next poll in ``feeds``."""
    state = result.state
    if result.cancelled:
        log.info("feed poll cancelled by the stop; it is polled again next time",
                 extra={"event": "feed.cancelled", "feed": state.name, "url": state.poll_url})
        store.record_poll(state.id, {}, added=counts.added)
        return  # a cancelled request says nothing about the feed: no error, no backoff
    if result.deferred:
        log.info("%d new entries left for later polls (fetch.max_pages_per_poll)", result.deferred,
                 extra={"event": "feed.deferred", "feed": state.name, "url": state.poll_url})
    now = datetime.now(UTC)
    policy = PollPolicy.from_settings(schedule)
    fields: dict[str, object] = {"last_fetched": iso(now), "entries_seen": result.entries_seen}
    if result.failed:
        fields |= _failure_fields(result, policy, now)
    else:
        fields |= _success_fields(result, policy, counts.added, now, adaptive(result.feed, schedule)[0])
    if result.incomplete:
        # Keep the old validators so the next poll fetches the rest (deferred or stopped), not a 304.
        fields |= {"etag": state.etag, "last_modified": state.last_modified}
    store.record_poll(state.id, fields, added=counts.added)
    failed = fields["last_status"] == "error"
    log.log(logging.WARNING if failed else logging.INFO, "feed polled", extra={
        "event": "feed.poll", "feed": state.name, "url": state.poll_url, "status": fields["last_status"],
        "http_status": fields.get("last_http_status"), "duration": round(result.duration, 3),
        "new": counts.added, "skipped": counts.skipped, "error": fields.get("last_error") if failed else None,
        "errors_in_a_row": fields["consecutive_errors"] if failed else None, "next_due": fields.get("next_due")})


def ingest_seeds(settings: Settings, store: Store, should_stop: Callable[[], bool] = lambda: False,
                 on_stored: Callable[[Pending], None] = lambda pending: None) -> Counts:
    """Store the seed files not stored yet (placed by :func:`settle`, with the feeds' articles)."""
    counts = Counts()
    if settings.seeds_dir is None:
        return counts
    seeds = read_seeds(settings.seeds_dir, max_bytes=settings.fetch.max_bytes,
                       is_stored=lambda url: store.has_url(canonical_url(url)))
    for item in seeds:
        if should_stop():
            break
        if isinstance(item, SeedStored):
            counts.already_stored += 1
            continue
        if isinstance(item, Skipped):
            log.warning("seed %s skipped: %s", item.what, item.reason)
            counts.count(item)
            continue
        outcome = store_article(store, item)
        counts.count(outcome)
        if isinstance(outcome, Pending):
            on_stored(outcome)
    return counts


def apply_retention(store: Store, schedule: ScheduleSettings) -> int:
    """Drop the full text of articles stored more than ``retention_days`` ago (rows and clusters stay),
    and the clusterer's memory of stories older than that (``StoredMemory.forget_before``)."""
    if not schedule.retention_days:
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=schedule.retention_days)
    dropped = store.drop_old_text(iso(cutoff))
    with store.transaction():
        StoredMemory(store).forget_before(cutoff.timestamp())
    if dropped:
        log.info("retention: dropped old article text", extra={"event": "retention", "articles": dropped,
                                                                 "days": schedule.retention_days})
    return dropped


def record_run(store: Store, report: PassReport, *, kind: str) -> None:
    """The pass's ``runs`` row (``kind``: ``pass`` for ``run --once``, ``daemon`` for a daemon's pass)."""
    store.record_run({
        "started": iso(datetime.fromtimestamp(report.started, UTC)), "finished": iso(datetime.now(UTC)),
        "kind": kind, "seeds": report.seeds.added, "feeds_ok": report.feeds_ok,
        "feeds_failed": report.feeds_failed, "articles_added": report.added,
        "duplicates": report.seeds.duplicates + report.feeds.duplicates,
        "skipped": report.seeds.skipped + report.feeds.skipped, "duration": round(report.duration, 3),
    })
