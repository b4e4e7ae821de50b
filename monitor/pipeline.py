"""One ingest pass: seeds and feeds, fetched by workers, written by one thread.

Producers (:func:`poll_feed`) fetch, parse and extract; they read the database
only through :class:`~monitor.store.StoreReader` and return a
:class:`FeedResult`. The writer (:func:`apply_feed_result`) records the feed's
state and ingests the articles. :func:`run_pass` wires the two for
``run --once``; the daemon wires the same two functions to the scheduler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from monitor.alerts import AlertReport, run_alerts
from monitor.cluster import Clusterer
from monitor.dedup import canonical_url
from monitor.extract import article_from_entry
from monitor.fetch import HostLimiter, fetch_url
from monitor.ingest import AlreadyStored, Stored, ingest_article
from monitor.models import Article, Fetched, FetchFailed, NotModified, ParsedFeed, ParseFailed, Skipped
from monitor.parse import parse_feed
from monitor.seeds import read_seeds
from monitor.settings import FeedConfig, FetchSettings, ScheduleSettings, Settings
from monitor.store import FeedState, Store, StoreReader, iso, now_iso

log = logging.getLogger(__name__)


@dataclass
class Counts:
    """What a pass or a feed did, for the log line, the ``runs`` table and the CLI."""

    added: int = 0
    duplicates: int = 0
    already_stored: int = 0
    skipped: int = 0
    new_clusters: int = 0

    def count(self, outcome: Stored | AlreadyStored | Skipped) -> None:
        if isinstance(outcome, Skipped):
            self.skipped += 1
        elif isinstance(outcome, AlreadyStored):
            self.already_stored += 1
        else:
            self.added += 1
            self.duplicates += outcome.duplicate_of is not None
            self.new_clusters += outcome.is_new_cluster

    def merge(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class FeedResult:
    """Everything a producer learned about one feed; the writer turns it into rows."""

    feed: FeedConfig
    state: FeedState
    outcome: Fetched | NotModified | FetchFailed | ParseFailed
    articles: tuple[Article | Skipped, ...] = ()
    bozo_reason: str | None = None
    duration: float = 0.0


@dataclass
class PassReport:
    seeds: Counts = field(default_factory=Counts)
    feeds: Counts = field(default_factory=Counts)
    feeds_ok: int = 0
    feeds_failed: int = 0
    duration: float = 0.0
    alerts: AlertReport = field(default_factory=AlertReport)


def _entry_page(
    client: httpx.Client, link: str | None, settings: FetchSettings, limiter: HostLimiter
) -> Fetched | None:
    if not (settings.fetch_pages and link and link.startswith(("http://", "https://"))):
        return None
    page = fetch_url(client, link, max_bytes=settings.max_bytes, limiter=limiter)
    if not isinstance(page, Fetched):
        log.info("page %s not fetched (%s); using the feed's own content", link,
                 getattr(page, "reason", "not modified"))
        return None
    return page


def poll_feed(
    client: httpx.Client,
    feed: FeedConfig,
    state: FeedState,
    *,
    settings: FetchSettings,
    limiter: HostLimiter,
    known: StoreReader,
) -> FeedResult:
    """Fetch, parse and extract one feed. Never raises for anything the web does."""
    started = time.monotonic()
    fetched = fetch_url(client, state.url, max_bytes=settings.max_bytes, etag=state.etag,
                        last_modified=state.last_modified, limiter=limiter)
    if not isinstance(fetched, Fetched):
        return FeedResult(feed, state, fetched, duration=time.monotonic() - started)
    parsed = parse_feed(fetched.content, url=fetched.final_url, content_type=fetched.content_type)
    if isinstance(parsed, ParseFailed):
        return FeedResult(feed, state, parsed, duration=time.monotonic() - started)
    articles = tuple(_entry_articles(client, parsed, state, settings=settings, limiter=limiter, known=known))
    return FeedResult(feed, state, fetched, articles, parsed.bozo_reason, time.monotonic() - started)


def _entry_articles(client: httpx.Client, parsed: ParsedFeed, state: FeedState, *, settings: FetchSettings,
                    limiter: HostLimiter, known: StoreReader) -> list[Article | Skipped]:
    """New entries only: an entry whose link or GUID is stored costs no page fetch."""
    results: list[Article | Skipped] = []
    for entry in parsed.entries:
        link = canonical_url(entry.link) if entry.link else None
        if known.contains(canonical_url=link, guid=entry.guid):
            continue
        page = _entry_page(client, entry.link, settings, limiter)
        results.append(article_from_entry(entry, page, feed_id=state.id, feed_name=state.name,
                                          fetched_at=datetime.now(UTC)))
    return results


def next_due(interval: float, consecutive_errors: int, schedule: ScheduleSettings) -> str:
    """Exponential backoff per feed, capped: a failing site is asked less and less often."""
    delay = interval if consecutive_errors == 0 else min(interval * 2 ** consecutive_errors, schedule.max_backoff)
    return iso(datetime.now(UTC) + timedelta(seconds=delay))


def apply_feed_result(
    store: Store, clusterer: Clusterer, result: FeedResult, *, settings: Settings,
    should_stop: Callable[[], bool] = lambda: False,
) -> Counts:
    """Writer side: record the poll in ``feeds`` and ingest its articles, one transaction each."""
    counts = Counts()
    state, outcome = result.state, result.outcome
    fields: dict[str, object] = {"last_fetched": now_iso()}
    if isinstance(outcome, FetchFailed | ParseFailed):
        errors = state.consecutive_errors + 1
        fields |= {"last_status": "error", "last_error": outcome.reason, "consecutive_errors": errors,
                   "last_http_status": getattr(outcome, "status", None),
                   "next_due": next_due(result.feed.interval, errors, settings.schedule)}
        log.warning("feed %s failed: %s (%d in a row)", state.url, outcome.reason, errors)
    else:
        fields |= {"last_status": "not-modified" if isinstance(outcome, NotModified) else "ok",
                   "last_error": f"malformed feed used: {result.bozo_reason}" if result.bozo_reason else None,
                   "last_http_status": 304 if isinstance(outcome, NotModified) else outcome.status,
                   "consecutive_errors": 0, "last_success": now_iso(),
                   "etag": outcome.etag, "last_modified": outcome.last_modified,
                   "next_due": next_due(result.feed.interval, 0, settings.schedule)}
    for index, article in enumerate(result.articles):
        if should_stop():
            # Interrupted: keep the old validators so the next poll fetches the rest, not a 304.
            fields |= {"etag": state.etag, "last_modified": state.last_modified}
            log.info("feed %s interrupted after %d of %d entries", state.url, index, len(result.articles))
            break
        outcome_ = article if isinstance(article, Skipped) else ingest_article(
            store, clusterer, article, keywords=settings.keywords)
        if isinstance(outcome_, Skipped):
            log.warning("entry of %s skipped: %s (%s)", state.url, outcome_.reason, outcome_.what)
        counts.count(outcome_)
    fields["entries_seen"] = len(result.articles)
    store.update_feed(state.id, **fields)
    if counts.added:
        store.db.execute("UPDATE feeds SET articles_added = articles_added + ? WHERE id = ?", [counts.added, state.id])
    log.info("feed %s: %s, %d new, %d skipped, %.2fs", state.url, fields["last_status"], counts.added,
             counts.skipped, result.duration)
    return counts


def ingest_seeds(settings: Settings, store: Store, clusterer: Clusterer,
                 should_stop: Callable[[], bool] = lambda: False) -> Counts:
    counts = Counts()
    if settings.seeds_dir is None:
        return counts
    for item in read_seeds(settings.seeds_dir, max_bytes=settings.fetch.max_bytes):
        if should_stop():
            break
        if isinstance(item, Skipped):
            log.warning("seed %s skipped: %s", item.what, item.reason)
            counts.count(item)
            continue
        counts.count(ingest_article(store, clusterer, item, keywords=settings.keywords))
    return counts


def feed_states(store: Store, feeds: Sequence[FeedConfig]) -> list[tuple[FeedConfig, FeedState]]:
    """Enabled feeds with their stored state (``sync_feeds`` must have run)."""
    pairs = []
    for feed in feeds:
        state = store.feed_state(feed.url)
        if state is not None and not state.disabled:
            pairs.append((feed, state))
    return pairs


def run_pass(
    settings: Settings, store: Store, clusterer: Clusterer, client: httpx.Client,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassReport:
    """Seeds, then every enabled feed: fetched by a thread pool, written here, in this thread."""
    started = time.monotonic()
    report = PassReport()
    store.sync_feeds(settings.feeds)
    report.seeds = ingest_seeds(settings, store, clusterer, should_stop)
    limiter = HostLimiter(settings.fetch.per_host, settings.fetch.per_host_delay)
    known = StoreReader(store.path)
    with ThreadPoolExecutor(max_workers=settings.fetch.concurrency, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(poll_feed, client, feed, state, settings=settings.fetch, limiter=limiter, known=known)
                   for feed, state in feed_states(store, settings.feeds)]
        for future in as_completed(futures):
            if should_stop():
                pool.shutdown(cancel_futures=True)
                break
            result = future.result()
            report.feeds.merge(apply_feed_result(store, clusterer, result, settings=settings, should_stop=should_stop))
            if isinstance(result.outcome, FetchFailed | ParseFailed):
                report.feeds_failed += 1
            else:
                report.feeds_ok += 1
    report.alerts = run_alerts(settings, store, should_stop=should_stop)
    report.duration = time.monotonic() - started
    _record_run(store, report, started_wall=time.time() - report.duration)
    return report


def _record_run(store: Store, report: PassReport, *, started_wall: float) -> None:
    store.record_run({
        "started": iso(datetime.fromtimestamp(started_wall, UTC)), "finished": now_iso(), "kind": "pass",
        "seeds": report.seeds.added, "feeds_ok": report.feeds_ok, "feeds_failed": report.feeds_failed,
        "articles_added": report.seeds.added + report.feeds.added,
        "duplicates": report.seeds.duplicates + report.feeds.duplicates,
        "skipped": report.seeds.skipped + report.feeds.skipped, "duration": round(report.duration, 3),
    })
