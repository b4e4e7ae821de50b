"""The daemon: APScheduler fires one job per feed; jobs produce, this thread writes.

Jobs run in APScheduler's thread pool and only fetch, parse and extract
(:func:`~monitor.pipeline.poll_feed`); they put their :class:`FeedResult` on a
queue. The thread that called :func:`run_daemon` owns the database connection
and the clusterer and applies results one by one, so SQLite sees a single
writer however many feeds are in flight. SIGTERM/SIGINT set ``stop``: the
writer finishes the article in hand, commits, waits for running jobs (their
requests in flight are cancelled within a second, :mod:`monitor.deadline`),
applies what they completed and returns.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.alerts import run_alerts
from monitor.cluster import Clusterer
from monitor.fetch import HostLimiter, make_client
from monitor.ingest import build_clusterer
from monitor.lock import InstanceLock
from monitor.pipeline import FeedResult, apply_feed_result, apply_retention, ingest_seeds, make_robots, poll_feed
from monitor.politeness import RobotsCache
from monitor.settings import FeedConfig, Settings
from monitor.store import Store, StoreReader, now_iso

log = logging.getLogger(__name__)

SEEDS = "seeds"
ALERTS = "alerts"  # queued every ALERTS_INTERVAL s: the writer evaluates rules and sends what is due
ALERTS_INTERVAL = 60
RETENTION = "retention"
RETENTION_EVERY = 6 * 3600


def _feed_job(feed: FeedConfig, settings: Settings, reader: StoreReader, limiter: HostLimiter,
              client, results: queue.Queue, robots: RobotsCache | None = None,
              stop: threading.Event | None = None) -> None:
    """Producer: poll one feed if it is due (backoff may have pushed it later) and queue the result.

    ``stop`` cancels the poll's requests in flight, so SIGTERM does not wait for a slow server.
    """
    state = reader.feed_state(feed.url)
    if state is None or not state.is_due(now_iso()) or (stop is not None and stop.is_set()):
        return
    results.put(poll_feed(client, feed, state, settings=settings.fetch, limiter=limiter, known=reader,
                          robots=robots, should_stop=stop.is_set if stop is not None else lambda: False))


def _first_run(next_due: str | None, start: datetime, jitter: float) -> datetime:
    """Resume where the last run left off (backoff and adaptive intervals survive a restart), spread by jitter."""
    due = max(start, datetime.fromisoformat(next_due)) if next_due else start
    return due + timedelta(seconds=random.uniform(0, jitter))


def build_scheduler(settings: Settings, store: Store, results: queue.Queue, client,
                    stop: threading.Event | None = None) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(settings.fetch.concurrency)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=UTC,
    )
    reader = StoreReader(store.path)
    limiter = HostLimiter(settings.fetch.per_host, settings.fetch.per_host_delay)
    robots = make_robots(settings.fetch, client, limiter)
    start = datetime.now(UTC)
    for feed in settings.feeds:
        state = store.feed_state(feed.url)
        if state is not None and state.disabled:
            log.warning("feed disabled, not scheduled (newsmonitor feeds enable URL)",
                        extra={"event": "feed.skipped", "feed": state.name, "url": feed.url})
            continue
        scheduler.add_job(
            _feed_job, IntervalTrigger(seconds=feed.interval, jitter=settings.schedule.jitter, timezone=UTC),
            args=[feed, settings, reader, limiter, client, results, robots, stop], id=feed.url, name=feed.display_name,
            next_run_time=_first_run(state.next_due if state else None, start, settings.schedule.jitter),
        )
    if settings.schedule.retention_days:
        scheduler.add_job(results.put, IntervalTrigger(seconds=RETENTION_EVERY, timezone=UTC), args=[RETENTION],
                          id=RETENTION, name=RETENTION, next_run_time=start)
    scheduler.add_job(
        results.put, IntervalTrigger(seconds=settings.schedule.seeds_interval, timezone=UTC), args=[SEEDS],
        id=SEEDS, name=SEEDS, next_run_time=start,
    )
    scheduler.add_job(results.put, IntervalTrigger(seconds=ALERTS_INTERVAL, timezone=UTC), args=[ALERTS],
                      id=ALERTS, name=ALERTS, next_run_time=start)
    return scheduler


def reschedule(scheduler: BackgroundScheduler, store: Store, feed: FeedConfig, jitter: float) -> None:
    """Adaptive intervals: the feed's job next fires when the writer decided (``next_due``), or never if disabled."""
    state = store.feed_state(feed.url)
    if state is None or scheduler.get_job(feed.url) is None:
        return
    if state.disabled:
        scheduler.pause_job(feed.url)
        return
    scheduler.modify_job(feed.url, next_run_time=_first_run(state.next_due, datetime.now(UTC), jitter))


def _apply(item: FeedResult | str, settings: Settings, store: Store, clusterer: Clusterer,
           stop: threading.Event) -> None:
    if item == SEEDS:
        counts = ingest_seeds(settings, store, clusterer, stop.is_set)
        if counts.added or counts.skipped:
            log.info("seeds: %d new, %d skipped", counts.added, counts.skipped)
        if counts.added:  # new articles: match and send now; the ALERTS job covers retries and digests
            run_alerts(settings, store, should_stop=stop.is_set)
    elif item == ALERTS:
        run_alerts(settings, store, should_stop=stop.is_set)
    elif item == RETENTION:
        apply_retention(store, settings.schedule)
    elif apply_feed_result(store, clusterer, item, settings=settings, should_stop=stop.is_set).added:
        run_alerts(settings, store, should_stop=stop.is_set)


def run_daemon(settings: Settings, stop: threading.Event) -> None:
    """Run until ``stop`` is set; everything is built here, nothing lives at module level.

    Refuses to start (StoreError) if another newsmonitor holds the database's lock.
    """
    with InstanceLock(settings.database):
        _run_locked(settings, stop)
    log.info("daemon stopped")


def _run_locked(settings: Settings, stop: threading.Event) -> None:
    with Store.open(settings.database) as store:
        store.sync_feeds(settings.feeds)
        clusterer = build_clusterer(store, settings.cluster)
        results: queue.Queue = queue.Queue()
        with make_client(settings.fetch) as client:
            scheduler = build_scheduler(settings, store, results, client, stop)
            scheduler.start()
            log.info("daemon started: %d feeds, database %s", len(settings.feeds), settings.database)
            try:
                while not stop.is_set():
                    try:
                        item = results.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    _apply(item, settings, store, clusterer, stop)
                    if isinstance(item, FeedResult):
                        reschedule(scheduler, store, item.feed, settings.schedule.jitter)
            finally:
                scheduler.shutdown(wait=True)
                _drain(results, settings, store, clusterer)


def _drain(results: queue.Queue, settings: Settings, store: Store, clusterer: Clusterer) -> None:
    """What running jobs fetched before the stop is stored rather than fetched again next time."""
    never = threading.Event()
    while True:
        try:
            item = results.get_nowait()
        except queue.Empty:
            return
        if item not in (SEEDS, ALERTS):
            _apply(item, settings, store, clusterer, never)
