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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx

from monitor.alerts import AlertReport, run_alerts
from monitor.cluster import Clusterer
from monitor.deadline import cancel_when, stopping
from monitor.dedup import canonical_url
from monitor.extract import article_from_entry, article_from_html
from monitor.fetch import HostLimiter, decode_html, fetch_url
from monitor.ingest import AlreadyStored, Stored, ingest_article
from monitor.intervals import adaptive
from monitor.models import Article, FeedEntry, Fetched, FetchFailed, NotModified, ParsedFeed, ParseFailed, Skipped
from monitor.parse import parse_feed
from monitor.politeness import PollHints, PollPolicy, RobotsCache, hints_from_response, parse_retry_after
from monitor.redact import redact
from monitor.seeds import read_seeds
from monitor.settings import FeedConfig, FetchSettings, ScheduleSettings, Settings
from monitor.store import FeedState, Store, StoreReader, iso, now_iso, parse_iso

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

    def count(self, outcome: Stored | AlreadyStored | Skipped) -> None:
        if isinstance(outcome, Skipped):
            self.skipped += 1
        elif isinstance(outcome, AlreadyStored):
            self.already_stored += 1
        else:
            self.added += 1
            self.duplicates += outcome.duplicate_of is not None
            self.new_clusters += outcome.is_new_cluster
            self.splits += outcome.split is not None
            self.merges += outcome.merge is not None

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
    hints: PollHints | None = None
    deferred: int = 0  # new entries left for later polls by fetch.max_pages_per_poll
    stopped: bool = False  # the stop signal cut the poll short; what is missing is polled again

    @property
    def incomplete(self) -> bool:
        """Entries were left out: the feed's validators must not be kept, or the next poll would be a 304."""
        return self.stopped or self.deferred > 0


@dataclass
class PassReport:
    seeds: Counts = field(default_factory=Counts)
    feeds: Counts = field(default_factory=Counts)
    feeds_ok: int = 0
    feeds_failed: int = 0
    duration: float = 0.0
    alerts: AlertReport = field(default_factory=AlertReport)


@dataclass(frozen=True)
class _Page:
    """What one link gave in this poll: its extracted page (None: no page, the feed's own content is used)."""

    extracted: Article | Skipped | None = None


_NO_PAGE = _Page()


class _PollPages:
    """The page fetches of one feed poll: each link fetched once, at most ``fetch.max_pages_per_poll`` of them.

    A 2,000-entry feed made 2,000 requests in one poll, and 300 entries sharing
    one link made 300 requests to it; now the first costs ``max_pages_per_poll``
    (the rest wait for later polls) and the second one request, extracted once.
    """

    def __init__(self, client: httpx.Client, settings: FetchSettings, limiter: HostLimiter,
                 robots: RobotsCache | None) -> None:
        self._client, self._settings, self._limiter, self._robots = client, settings, limiter, robots
        self._pages: dict[str, _Page] = {}
        self.fetches = 0

    def page(self, link: str | None) -> _Page | None:
        """The link's page, fetched if this poll has not yet; None if the poll's page budget is spent."""
        if not (self._settings.fetch_pages and link and link.startswith(("http://", "https://"))):
            return _NO_PAGE
        key = canonical_url(link)
        if key not in self._pages:
            if self.fetches >= self._settings.max_pages_per_poll:
                return None
            self._pages[key] = self._fetch(link)
        return self._pages[key]

    def _fetch(self, link: str) -> _Page:
        if self._robots is not None and not self._robots.allowed(link):
            log.info("page disallowed by robots.txt; using the feed's own content",
                     extra={"event": "page.robots", "url": link})
            return _NO_PAGE
        self.fetches += 1
        page = fetch_url(self._client, link, max_bytes=self._settings.max_bytes, limiter=self._limiter)
        if not isinstance(page, Fetched):
            log.info("page not fetched; using the feed's own content",
                     extra={"event": "page.failed", "url": link, "error": getattr(page, "reason", "not modified")})
            return _NO_PAGE
        decoded = decode_html(page.content, page.encoding)
        extracted = article_from_html(decoded.content, url=page.final_url, fetched_at=datetime.now(UTC))
        if decoded.note:
            log.info("page charset overruled: %s", decoded.note,
                     extra={"event": "page.charset", "url": link, "note": decoded.note})
            if isinstance(extracted, Article):  # kept with the article: `extraction` says how its text was read
                extracted = replace(extracted, extraction=f"{extracted.extraction} ({decoded.note})")
        return _Page(extracted)


def poll_feed(
    client: httpx.Client,
    feed: FeedConfig,
    state: FeedState,
    *,
    settings: FetchSettings,
    limiter: HostLimiter,
    known: StoreReader,
    robots: RobotsCache | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FeedResult:
    """Fetch, parse and extract one feed. Never raises for anything the web does.

    ``should_stop`` cancels the fetches in flight (:mod:`monitor.deadline`) and
    ends the poll; the result says so (``stopped``) and the writer keeps only
    what was complete.
    """
    started = time.monotonic()
    with cancel_when(should_stop):
        fetched = fetch_url(client, state.poll_url, max_bytes=settings.max_bytes, etag=state.etag,
                            last_modified=state.last_modified, limiter=limiter)
        if not isinstance(fetched, Fetched):
            return FeedResult(feed, state, fetched, duration=time.monotonic() - started,
                              hints=hints_from_response(fetched.headers), stopped=stopping())
        parsed = parse_feed(fetched.content, url=fetched.final_url, content_type=fetched.content_type)
        if isinstance(parsed, ParseFailed):
            return FeedResult(feed, state, parsed, duration=time.monotonic() - started)
        hints = hints_from_response(fetched.headers, content=fetched.content, ttl_minutes=parsed.ttl_minutes,
                                    published=[e.published for e in parsed.entries])
        pages = _PollPages(client, settings, limiter, robots)
        articles, deferred = _entry_articles(parsed, state, pages=pages, known=known, feed_url=fetched.final_url)
        return FeedResult(feed, state, fetched, tuple(articles), parsed.bozo_reason, time.monotonic() - started,
                          hints, deferred=deferred, stopped=stopping())


def _newest_first(item: tuple[int, FeedEntry]) -> float:
    published = item[1].published
    return -published.timestamp() if published else float("inf")  # undated last, in feed order


def _entry_articles(parsed: ParsedFeed, state: FeedState, *, pages: _PollPages, known: StoreReader,
                    feed_url: str | None = None) -> tuple[list[Article | Skipped], int]:
    """New entries only (one whose link or GUID is stored costs no page fetch), and how many were deferred.

    Entries are visited newest first, so when the page budget runs out it is the
    oldest that wait; the articles keep the feed's order. On stop, the entry in
    hand and those after it are left out: the next poll fetches them, where a
    fallback to the feed's summary would have stored them for good.
    """
    new = [(index, entry) for index, entry in enumerate(parsed.entries)
           if not known.contains(canonical_url=canonical_url(entry.link) if entry.link else None, guid=entry.guid,
                                 feed_id=state.id)]
    made: list[tuple[int, Article | Skipped]] = []
    deferred = 0
    for index, entry in sorted(new, key=_newest_first):
        page = None if stopping() else pages.page(entry.link)
        if stopping():
            break
        if page is None:
            deferred += 1
            continue
        made.append((index, article_from_entry(entry, page.extracted, feed_id=state.id, feed_name=state.name,
                                               fetched_at=datetime.now(UTC), feed_url=feed_url)))
    return [article for _, article in sorted(made, key=lambda pair: pair[0])], deferred


def _failure_fields(result: FeedResult, policy: PollPolicy, now: datetime) -> dict[str, object]:
    """Back off (honouring Retry-After); disable on 410 or after failing for ``disable_after``."""
    state, outcome = result.state, result.outcome
    errors = state.consecutive_errors + 1
    failing_since = parse_iso(state.failing_since) or now
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
    last_new = now if added else parse_iso(state.last_new_entry)
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


def apply_feed_result(
    store: Store, clusterer: Clusterer, result: FeedResult, *, settings: Settings,
    should_stop: Callable[[], bool] = lambda: False,
) -> Counts:
    """Writer side: ingest the articles (one transaction each), then record the poll in ``feeds``."""
    counts = Counts()
    state, outcome = result.state, result.outcome
    if result.stopped and not isinstance(outcome, Fetched | NotModified):
        log.info("feed poll cancelled by the stop; it is polled again next time",
                 extra={"event": "feed.cancelled", "feed": state.name, "url": state.poll_url})
        return counts  # a cancelled request says nothing about the feed: no error, no backoff
    if result.deferred:
        log.info("%d new entries left for later polls (fetch.max_pages_per_poll)", result.deferred,
                 extra={"event": "feed.deferred", "feed": state.name, "url": state.poll_url})
    interrupted = result.incomplete
    for index, article in enumerate(result.articles):
        if should_stop():
            interrupted = True
            log.info("feed interrupted after %d of %d entries", index, len(result.articles),
                     extra={"event": "feed.interrupted", "feed": state.name, "url": state.poll_url})
            break
        outcome_ = article if isinstance(article, Skipped) else ingest_article(
            store, clusterer, article, keywords=settings.keywords)
        if isinstance(outcome_, Skipped):
            log.warning("entry skipped: %s", outcome_.reason,
                        extra={"event": "entry.skipped", "feed": state.name, "url": outcome_.what})
        counts.count(outcome_)
    now = datetime.now(UTC)
    policy = PollPolicy.from_settings(settings.schedule)
    fields: dict[str, object] = {"last_fetched": iso(now), "entries_seen": len(result.articles)}
    if isinstance(outcome, FetchFailed | ParseFailed):
        fields |= _failure_fields(result, policy, now)
    else:
        fields |= _success_fields(result, policy, counts.added, now, adaptive(result.feed, settings.schedule)[0])
    if interrupted:
        # Keep the old validators so the next poll fetches the rest (deferred, stopped, interrupted), not a 304.
        fields |= {"etag": state.etag, "last_modified": state.last_modified}
    store.update_feed(state.id, **fields)
    if counts.added:
        store.db.execute("UPDATE feeds SET articles_added = articles_added + ? WHERE id = ?", [counts.added, state.id])
    failed = fields["last_status"] == "error"
    log.log(logging.WARNING if failed else logging.INFO, "feed polled", extra={
        "event": "feed.poll", "feed": state.name, "url": state.poll_url, "status": fields["last_status"],
        "http_status": fields.get("last_http_status"), "duration": round(result.duration, 3),
        "new": counts.added, "skipped": counts.skipped, "error": fields.get("last_error") if failed else None,
        "errors_in_a_row": fields["consecutive_errors"] if failed else None, "next_due": fields.get("next_due")})
    return counts


def ingest_seeds(settings: Settings, store: Store, clusterer: Clusterer,
                 should_stop: Callable[[], bool] = lambda: False) -> Counts:
    counts = Counts()
    if settings.seeds_dir is None:
        return counts
    seeds = read_seeds(settings.seeds_dir, max_bytes=settings.fetch.max_bytes,
                       is_stored=lambda url: store.has_url(canonical_url(url)))
    for item in seeds:
        if should_stop():
            break
        if isinstance(item, str):
            counts.already_stored += 1
            continue
        if isinstance(item, Skipped):
            log.warning("seed %s skipped: %s", item.what, item.reason)
            counts.count(item)
            continue
        counts.count(ingest_article(store, clusterer, item, keywords=settings.keywords))
    return counts


def feed_states(store: Store, feeds: Sequence[FeedConfig], *,
                due_only: bool = False) -> list[tuple[FeedConfig, FeedState]]:
    """Enabled feeds with their stored state (``sync_feeds`` must have run); if ``due_only``, only those due."""
    pairs = []
    now = now_iso()
    for feed in feeds:
        state = store.feed_state(feed.url)
        if state is not None and not state.disabled and (not due_only or state.is_due(now)):
            pairs.append((feed, state))
    return pairs


def make_robots(settings: FetchSettings, client: httpx.Client, limiter: HostLimiter) -> RobotsCache | None:
    """One robots.txt cache per pass or daemon, if pages are fetched and robots.txt is respected."""
    if not (settings.fetch_pages and settings.respect_robots):
        return None
    return RobotsCache(client, user_agent=settings.user_agent, limiter=limiter)


def apply_retention(store: Store, schedule: ScheduleSettings) -> int:
    """Drop the full text of articles stored more than ``retention_days`` ago (rows and clusters stay)."""
    if not schedule.retention_days:
        return 0
    dropped = store.drop_old_text(iso(datetime.now(UTC) - timedelta(days=schedule.retention_days)))
    if dropped:
        log.info("retention: dropped old article text", extra={"event": "retention", "articles": dropped,
                                                                 "days": schedule.retention_days})
    return dropped


def run_pass(
    settings: Settings, store: Store, clusterer: Clusterer, client: httpx.Client,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] | None = None,
    due_only: bool = False,
) -> PassReport:
    """Seeds, then every enabled feed: fetched by a thread pool, written here, in this thread.

    ``progress(done, total)`` is called after each feed is written (the CLI draws a bar with it).
    ``due_only`` skips feeds whose ``next_due`` (interval, backoff, Retry-After) is still ahead,
    which makes ``run --once --due`` from cron as polite as the daemon.
    """
    started = time.monotonic()
    report = PassReport()
    store.sync_feeds(settings.feeds)
    report.seeds = ingest_seeds(settings, store, clusterer, should_stop)
    limiter = HostLimiter(settings.fetch.per_host, settings.fetch.per_host_delay)
    known = StoreReader(store.path)
    robots = make_robots(settings.fetch, client, limiter)
    with ThreadPoolExecutor(max_workers=settings.fetch.concurrency, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(poll_feed, client, feed, state, settings=settings.fetch, limiter=limiter, known=known,
                               robots=robots, should_stop=should_stop)
                   for feed, state in feed_states(store, settings.feeds, due_only=due_only)]
        if progress:
            progress(0, len(futures))
        for done, future in enumerate(as_completed(futures), start=1):
            if should_stop():
                pool.shutdown(cancel_futures=True)
                break
            result = future.result()
            report.feeds.merge(apply_feed_result(store, clusterer, result, settings=settings, should_stop=should_stop))
            if isinstance(result.outcome, FetchFailed | ParseFailed):
                report.feeds_failed += 1
            else:
                report.feeds_ok += 1
            if progress:
                progress(done, len(futures))
    apply_retention(store, settings.schedule)
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
