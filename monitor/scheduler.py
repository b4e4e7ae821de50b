"""The daemon: the pass engine (:mod:`monitor.engine`) on an APScheduler schedule.

Jobs run in APScheduler's threads and only ask: a feed's job starts its poll on
the engine if the feed is due (backoff may have pushed it later), the seeds,
alerts and retention jobs put a typed message for the writer. The thread that
called :func:`run_daemon` is the writer: it applies the engine's messages one
by one, so SQLite sees a single writer however many feeds are in flight. A
daemon's pass runs from one seeds scan to the next and gets its ``runs`` row
like a ``run --once`` pass. SIGTERM/SIGINT set ``stop``: the scheduler stops,
requests in flight are cancelled within a second (:mod:`monitor.deadline`), what
was fetched is extracted and stored, the pass is recorded, and the daemon returns.

Live reload: SIGHUP, or a change of the config file's mtime or size (checked
every ``schedule.config_check`` seconds by a job), asks the writer to re-read
the config between two messages. An invalid config is logged and the old one
kept; a valid one is synced to the store by the writer (still the only
writer), feeds' jobs are added, removed or rescheduled, and the following
passes use the new feeds, keywords, rules, channels and digest. Settings the
daemon built its machinery from (database, fetch, cluster, schedule, logging)
take effect after a restart.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.alerts import run_alerts
from monitor.control import take_enable_requests
from monitor.engine import AlertsDue, Engine, RetentionDue, SeedsDue, open_runtime
from monitor.errors import MonitorError
from monitor.lock import InstanceLock
from monitor.redact import redact, register_settings
from monitor.settings import FeedConfig, Settings, load_settings
from monitor.store import Store, StoreReader

log = logging.getLogger(__name__)

SEEDS = "seeds"
ALERTS = "alerts"  # every ALERTS_INTERVAL s: the writer evaluates rules and sends what is due
ALERTS_INTERVAL = 60
RETENTION = "retention"
RETENTION_EVERY = 6 * 3600
CONFIG_CHECK = "config-check"
# What the daemon built its machinery from: a reload keeps the running values (a restart applies them).
RESTART_ONLY = ("database", "fetch", "cluster", "schedule", "log_level", "log_format", "web")


def _feed_job(engine: Engine, reader: StoreReader, feed: FeedConfig) -> None:
    """A feed's job: start its poll on the engine if it is due; the engine polls a feed once at a time."""
    state = reader.feed_state(feed.url)
    if state is not None and state.is_due(datetime.now(UTC)):
        engine.poll(feed, state)


def _first_run(next_due: datetime | None, start: datetime, jitter: float) -> datetime:
    """Resume where the last run left off (backoff and adaptive intervals survive a restart), spread by jitter."""
    due = max(start, next_due) if next_due else start
    return due + timedelta(seconds=random.uniform(0, jitter))


@dataclass
class ConfigWatch:
    """Asks the writer to reload the config: SIGHUP, or the file's (mtime, size) changed since the last look."""

    path: Path | None
    requested: bool = False  # a plain flag: a signal handler must not take a lock the writer may hold
    stamp: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.stamp = self.look()

    def look(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat() if self.path else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    def check(self) -> None:
        """The config-check job (a pool thread): only compares and flags; the writer reloads."""
        stamp = self.look()
        if stamp != self.stamp:
            self.stamp = stamp
            self.requested = True


@dataclass
class FeedJobs:
    """Adds a feed's job, resuming at its stored next_due."""

    settings: Settings
    store: Store
    engine: Engine

    def add(self, scheduler: BackgroundScheduler, feed: FeedConfig, start: datetime) -> None:
        state = self.store.feed_state(feed.url)
        if state is not None and state.disabled:
            log.warning("feed disabled, not scheduled (newsmonitor feeds enable URL)",
                        extra={"event": "feed.skipped", "feed": state.name, "url": feed.url})
            return
        jitter = self.settings.schedule.jitter
        scheduler.add_job(
            _feed_job, IntervalTrigger(seconds=feed.interval, jitter=jitter, timezone=UTC),
            args=[self.engine, self.engine.known, feed],
            id=feed.url, name=feed.display_name, replace_existing=True,
            next_run_time=_first_run(state.next_due if state else None, start, jitter),
        )


def build_scheduler(settings: Settings, feed_jobs: FeedJobs, *,
                    watch: ConfigWatch | None = None) -> BackgroundScheduler:
    """Feed jobs only start polls and the others only put a message: two threads are plenty."""
    engine = feed_jobs.engine
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=UTC,
    )
    start = datetime.now(UTC)
    for feed in settings.feeds:
        feed_jobs.add(scheduler, feed, start)
    if settings.schedule.retention_days:
        scheduler.add_job(engine.put, IntervalTrigger(seconds=RETENTION_EVERY, timezone=UTC), args=[RetentionDue()],
                          id=RETENTION, name=RETENTION, next_run_time=start)
    scheduler.add_job(
        engine.put, IntervalTrigger(seconds=settings.schedule.seeds_interval, timezone=UTC), args=[SeedsDue()],
        id=SEEDS, name=SEEDS, next_run_time=start,
    )
    scheduler.add_job(engine.put, IntervalTrigger(seconds=ALERTS_INTERVAL, timezone=UTC), args=[AlertsDue()],
                      id=ALERTS, name=ALERTS, next_run_time=start)
    if watch is not None and watch.path is not None and settings.schedule.config_check:
        scheduler.add_job(watch.check, IntervalTrigger(seconds=settings.schedule.config_check, timezone=UTC),
                          id=CONFIG_CHECK, name=CONFIG_CHECK)
    return scheduler


def reload_settings(old: Settings, scheduler: BackgroundScheduler, store: Store, feed_jobs: FeedJobs,
                    watch: ConfigWatch) -> Settings:
    """The writer re-reads the config; returns the settings to use from now on (the old ones if invalid)."""
    watch.stamp = watch.look()  # a change from here on is checked again
    try:
        new = load_settings(old.config_path) if old.config_path else old
    except MonitorError as exc:
        log.error("config reload failed, keeping the running config: %s", redact(str(exc)).replace("\n", " "),
                  extra={"event": "config.invalid"})
        return old
    register_settings(new)  # new channel tokens and feed credentials are masked from now on
    kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
    new = new.model_copy(update={name: getattr(old, name) for name in RESTART_ONLY})
    store.sync_feeds(new.feeds)
    enabled = take_enable_requests(store)  # `feeds enable URL` of a feed this daemon disabled
    before, after = {f.url: f for f in old.feeds}, {f.url: f for f in new.feeds}
    start = datetime.now(UTC)
    for url in before.keys() - after.keys():
        if scheduler.get_job(url) is not None:
            scheduler.remove_job(url)
    changed = [f for url, f in after.items() if before.get(url) != f or url in enabled]
    for feed in changed:
        feed_jobs.add(scheduler, feed, start)
    added = len(after.keys() - before.keys())
    log.info("config reloaded: %d feeds (%d added, %d removed, %d changed), %d alert rules, %d keywords",
             len(new.feeds), added, len(before.keys() - after.keys()), len(changed) - added, len(new.alerts),
             len(new.keywords), extra={"event": "config.reloaded"})
    if kept:
        log.warning("config reload: changes to %s take effect after a restart", ", ".join(kept),
                    extra={"event": "config.restart_needed"})
    return new


def reschedule(scheduler: BackgroundScheduler, store: Store, feed: FeedConfig, jitter: float) -> None:
    """Adaptive intervals: the feed's job next fires when the writer decided (``next_due``), or never if disabled."""
    state = store.feed_state(feed.url)
    if state is None or scheduler.get_job(feed.url) is None:
        return
    if state.disabled:
        scheduler.pause_job(feed.url)
        return
    scheduler.modify_job(feed.url, next_run_time=_first_run(state.next_due, datetime.now(UTC), jitter))


def run_daemon(settings: Settings, stop: threading.Event) -> None:
    """Run until ``stop`` is set; everything is built here, nothing lives at module level.

    Refuses to start (StoreError) if another newsmonitor holds the database's lock.
    """
    with InstanceLock(settings.database):
        _run_locked(settings, stop)
    log.info("daemon stopped")


def _run_locked(settings: Settings, stop: threading.Event) -> None:
    with open_runtime(settings) as runtime, Engine(runtime, stop) as engine:
        store = runtime.store
        store.sync_feeds(settings.feeds)
        watch = ConfigWatch(settings.config_path)
        feed_jobs = FeedJobs(settings, store, engine)
        scheduler = build_scheduler(settings, feed_jobs, watch=watch)
        engine.on_polled = lambda result: reschedule(scheduler, store, result.feed, settings.schedule.jitter)
        with _reload_on_sighup(watch):
            scheduler.start()
            log.info("daemon started: %d feeds, database %s", len(settings.feeds), settings.database)
            try:
                seeded = False
                while not stop.is_set():
                    if watch.requested:
                        watch.requested = False
                        engine.settings = reload_settings(engine.settings, scheduler, store, feed_jobs, watch)
                    message = engine.next_message(timeout=0.2)
                    if isinstance(message, SeedsDue) and seeded:
                        engine.end_pass("daemon", alerts=False, retention=False)  # one pass per seeds scan
                    seeded = seeded or isinstance(message, SeedsDue)
                    _apply(engine, message)
            finally:
                scheduler.shutdown(wait=True)
                engine.drain()
                engine.end_pass("daemon", alerts=False, retention=False)


def _apply(engine: Engine, message: object) -> None:
    """The engine's step; articles kept waiting too long are placed; alerts at once when articles were placed
    (the alerts job covers retries)."""
    before = engine.report.placed
    if message is not None:
        engine.apply(message)
    if engine.waiting_for() >= engine.settings.schedule.settle_every:
        engine.settle()
    if engine.report.placed > before:
        run_alerts(engine.settings, engine.runtime.store, should_stop=engine.stop.is_set)


@contextmanager
def _reload_on_sighup(watch: ConfigWatch) -> Iterator[None]:
    """SIGHUP flags a reload (only the main thread may set handlers; a daemon in a thread has none)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        yield
        return
    previous = signal.signal(signal.SIGHUP, lambda *_: setattr(watch, "requested", True))
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)
