"""The pass engine: producers on threads and processes, one writer, for ``run --once`` and the daemon alike.

Requests run on a pool of fetch threads (polite: :class:`~monitor.fetch.HostLimiter`),
parsing and extraction in a process pool sized to the machine
(:class:`Extractor`, running the pure tasks of :mod:`monitor.tasks`), and
everything they make reaches the writer, the thread that calls :meth:`Engine.run_pass`
or :meth:`Engine.serve`, as typed messages on one bounded queue: a full
queue holds the producers back, so memory stays bounded when the writer is the
slower side. The writer alone holds the database connection and the
clusterer. It stores each article as it arrives, and places the articles waiting
for a cluster in an order of their own (:func:`monitor.pipeline.place_ready`), so
the clusters do not depend on which page happened to arrive first: while polls
are in flight, only those that sort before all they may still bring
(:mod:`monitor.horizon`); the batch is read again once none is
(:func:`monitor.pipeline.settle`, the end of a ``run --once`` pass).

The daemon (:mod:`monitor.scheduler`) is this engine on a schedule: its jobs
only ask for a poll or put a message; a daemon's pass runs from one seeds scan
to the next and is recorded in ``runs`` like a ``run --once`` pass. Both stop
alike: the producers start nothing new and their requests in flight are
cancelled, what was already fetched is extracted and stored, the pass is
recorded, and the caller exits 0.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from monitor.alerts import run_alerts
from monitor.cluster import Clusterer
from monitor.engine_polls import Listed, Made, Poll, Producers
from monitor.errors import ConfigError
from monitor.fetch import HostLimiter, make_client
from monitor.horizon import NOTHING, Horizon
from monitor.ingest import Pending, Stored, build_clusterer
from monitor.pipeline import (
    HELD,
    PLACED_TOGETHER,
    Batch,
    Counts,
    FeedResult,
    PassReport,
    Placed,
    apply_retention,
    ingest_made,
    ingest_seeds,
    place_ready,
    record_poll,
    record_run,
    settle,
)
from monitor.politeness import RobotsCache
from monitor.recluster import late_articles, late_since, recluster
from monitor.settings import FeedConfig, FetchSettings, Settings
from monitor.store import FeedState, Store, StoreReader
from monitor.tasks import ReadFor, start_pool_worker, warm_up

if TYPE_CHECKING:
    from monitor.distributed import RemoteExtractor

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # messages waiting for the writer before the producers are held back
LATE_WAIT = 10  # settle periods late articles wait for the polls in flight (``Engine.settle``)


# -- what the writer is handed ------------------------------------------------------------------


@dataclass(frozen=True)
class Polled:
    """A feed poll is over, its last article handed over before this: record the feed's state."""

    poll: int
    result: FeedResult


@dataclass(frozen=True)
class SeedsDue:
    """Rescan ``seeds_dir``; in the daemon this also ends one pass and begins the next."""


@dataclass(frozen=True)
class AlertsDue:
    """Evaluate the alert rules and send what is due (retries, digests)."""


@dataclass(frozen=True)
class RetentionDue:
    """Drop old article text (``schedule.retention_days``)."""


Message = Listed | Made | Polled | SeedsDue | AlertsDue | RetentionDue


# -- what a run is built from --------------------------------------------------------------------


@dataclass
class Runtime:
    """The store, the clusterer and the HTTP client of one process, built by :func:`open_runtime`."""

    settings: Settings
    store: Store
    clusterer: Clusterer
    client: httpx.Client


@contextmanager
def open_runtime(settings: Settings) -> Iterator[Runtime]:
    """The one place the store, clusterer and client are built: the CLI, the tests and ``bench/`` use it."""
    with Store.open(settings.database) as store, make_client(settings.fetch) as client:
        yield Runtime(settings, store, build_clusterer(store, settings.cluster), client)


def extraction_workers(settings: FetchSettings) -> int:
    """``fetch.extract_workers``, else one process per core this process may use."""
    if settings.extract_workers is not None:
        return settings.extract_workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Extractor:
    """Runs the tasks of :mod:`monitor.tasks` in a process pool (or inline, with 0 workers).

    The pool's processes are forked from a forkserver that has imported
    :mod:`monitor.tasks` and warmed it up once (:mod:`monitor.forkserver_preload`),
    so a new worker is ready at once and pays nothing on its first pages; they ignore
    SIGINT/SIGTERM (a terminal's Ctrl-C and systemd signal the whole group),
    and this process shuts them down once its producers are done; if it is
    killed outright, they exit with it (``tasks.start_pool_worker``). A worker
    that dies (a page that exhausts memory) costs that page, not the run: its
    caller gets BrokenProcessPool (a poll then uses the feed's own content) and
    the pool is made again.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None
        self._warming: list[Future[None]] = []

    def start(self) -> None:
        """Start the processes in the background, if not started: they warm up while the first feeds are
        fetched. Not at construction, so a pass with nothing to poll (``run --once --due`` from cron, most
        minutes) never starts them: their start costs about 1 CPU-second a process."""
        with self._lock:
            if self.workers == 0 or self._starting is not None:
                return
            self._pool = pool = self._new_pool()
            self._starting = threading.Thread(target=self._warm, args=(pool,), name="pool-start", daemon=True)
        self._starting.start()

    def _warm(self, pool: ProcessPoolExecutor) -> None:
        # submit() starts the forkserver and forks the workers: it blocks until they are up (the forkserver
        # loads monitor.tasks first), which is why this runs on a thread of its own.
        self._warming = [pool.submit(warm_up) for _ in range(self.workers)]

    def wait_ready(self) -> None:
        """Until every worker has started and loaded its models."""
        self.start()
        if self._starting is not None:
            self._starting.join()
        for future in self._warming:
            future.result()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["monitor.forkserver_preload"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=start_pool_worker,
                                   initargs=(os.getpid(),))

    def run(self, task: Callable[[Any], Any], job: Any) -> Any:
        """``task(job)`` in a worker process; the calling (fetch) thread waits for it."""
        self.start()
        pool = self._pool
        if pool is None:
            return task(job)
        try:
            return pool.submit(task, job).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    log.error("an extraction process died; starting new ones", extra={"event": "extract.crashed"})
                    self._pool = self._new_pool()
            raise

    def close(self) -> None:
        if self._starting is not None:
            self._starting.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def make_extractor(settings: Settings, stopping: Callable[[], bool]) -> Extractor | RemoteExtractor:
    """The local process pool, or with ``distributed.broker_url`` the workers behind that broker."""
    if settings.distributed.broker_url:
        try:
            from monitor.distributed import RemoteExtractor  # Dramatiq is an optional extra: imported when asked
        except ImportError as exc:
            raise ConfigError(f"needs {exc.name}: pip install 'newsmonitor[distributed]'", key="distributed.broker_url",
                              file=str(settings.config_path) if settings.config_path else None) from None

        return RemoteExtractor(settings.distributed, stopping)  # the same run, wait_ready and close
    return Extractor(extraction_workers(settings.fetch))


def make_robots(settings: FetchSettings, client: httpx.Client, limiter: HostLimiter) -> RobotsCache | None:
    """One robots.txt cache per pass or daemon, if pages are fetched and robots.txt is respected."""
    if not (settings.fetch_pages and settings.respect_robots):
        return None
    return RobotsCache(client, user_agent=settings.user_agent, limiter=limiter)


# -- the engine ----------------------------------------------------------------------------------


@dataclass
class _Writing:
    """The writer's view of the pass in progress."""

    report: PassReport = field(default_factory=PassReport)
    started: float = field(default_factory=time.monotonic)
    polls: dict[int, Counts] = field(default_factory=dict)  # polls in flight, with what they stored so far


class Engine:
    """Producers and one writer; use as a context manager (the pools are shut down on exit)."""

    def __init__(self, runtime: Runtime, stop: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.stop = stop or threading.Event()
        self._closing = threading.Event()  # set on exit: producers left behind by an error end soon
        fetch = self.settings.fetch
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=QUEUE_SIZE)
        self._fetchers = ThreadPoolExecutor(fetch.concurrency, thread_name_prefix="fetch")
        self._extractor = make_extractor(self.settings, self.stopping)
        limiter = HostLimiter(fetch.per_host, fetch.per_host_delay)
        self._producers = Producers(
            client=runtime.client, settings=fetch, limiter=limiter,
            robots=make_robots(fetch, runtime.client, limiter), known=StoreReader(runtime.store.path),
            fetchers=self._fetchers, run_task=self._extractor.run, emit=self._emit,
            should_stop=self.stopping, read_for=ReadFor(self.settings.cluster.max_words,
                                                        self.settings.cluster.shingle_size,
                                                        self.settings.cluster.num_perm))
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._polling: dict[str, int] = {}  # feed URL -> its poll in flight (one at a time per feed)
        self._backlog: dict[str, int] = {}  # feed URL -> polls that followed its capped poll (``_read_on``)
        self._writing = _Writing()
        self._held: dict[int, Pending] = {}  # stored, not yet placed (up to HELD of them)
        self._horizon = Horizon()  # what the polls in flight may still bring: how far placing may go
        self._batch = Batch()  # placed since it was last read again (each day of publication, and at a settle)
        self._may_place = False  # something changed since placing last found nothing to place
        self._waiting_since: float | None = None  # monotonic time the oldest unplaced article was stored
        self.on_polled: Callable[[FeedResult], None] | None = None  # the daemon reschedules the feed

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        self._fetchers.shutdown(wait=True, cancel_futures=True)
        self._extractor.close()

    def stopping(self) -> bool:
        return self.stop.is_set() or self._closing.is_set()

    def wait_ready(self) -> None:
        """Until the extraction processes are up (a benchmark times the pass without their start)."""
        self._extractor.wait_ready()

    @property
    def known(self) -> StoreReader:
        return self._producers.known

    # -- producers ------------------------------------------------------------------------------

    def poll(self, feed: FeedConfig, state: FeedState) -> bool:
        """Start polling ``feed`` on a fetch thread; False if it is being polled already or the engine stops."""
        with self._lock:
            if self.stopping() or feed.url in self._polling:
                return False
            poll_id = next(self._ids)
            self._polling[feed.url] = poll_id
            self._writing.polls[poll_id] = Counts()
            self._horizon.expect(poll_id)
        self._extractor.start()
        poll = Poll(poll_id, feed, state, self._producers, done=lambda i, r: self._emit(Polled(i, r)))
        self._fetchers.submit(poll.run)
        return True

    def put(self, message: SeedsDue | AlertsDue | RetentionDue) -> None:
        """For the daemon's jobs: a message for the writer."""
        self._emit(message)

    def _emit(self, message: Message) -> None:
        """Hand a message to the writer, waiting while its queue is full (back-pressure); dropped only when
        the engine is closing because the writer failed, so no producer waits for ever on a writer gone."""
        while True:
            try:
                self._queue.put(message, timeout=0.2)
                return
            except queue.Full:
                if self._closing.is_set():
                    return

    def busy(self) -> bool:
        with self._lock:
            return bool(self._polling)

    def polling(self, url: str) -> bool:
        """Whether the feed is being polled (a backlog read on counts as the same poll for progress)."""
        with self._lock:
            return url in self._polling

    # -- the writer -----------------------------------------------------------------------------

    def next_message(self, timeout: float | None = None) -> Message | None:
        """The next message (None after ``timeout``); the time spent waiting is the writer's idle time.

        While none is waiting, the writer places what it may already (:meth:`place_ready`), so placing
        overlaps the producers' fetching and extracting instead of following it."""
        while self._queue.empty() and self.place_ready():
            pass
        waited = time.monotonic()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            self._writing.report.writer_idle += time.monotonic() - waited

    def apply(self, message: Message) -> None:
        """The writer's step for one message (daemon-only messages included)."""
        settings, store, writing = self.settings, self.runtime.store, self._writing
        if isinstance(message, Made):
            outcome = ingest_made(store, message.article, feed=message.feed)
            writing.polls[message.poll].count(outcome)
            self._hold(outcome)
            self._horizon.made(message.poll, message.bound)
        elif isinstance(message, Listed):
            self._horizon.listed(message.poll, message.bounds)
        elif isinstance(message, Polled):
            self._horizon.finished(message.poll)
            counts = writing.polls.pop(message.poll)
            record_poll(store, message.result, counts, schedule=settings.schedule)
            writing.report.feeds.merge(counts)
            with self._lock:
                self._polling.pop(message.result.feed.url, None)
            if not self._read_on(message.result):
                writing.report.polled(message.result)
            if self.on_polled is not None:
                self.on_polled(message.result)
        elif isinstance(message, SeedsDue):
            self.ingest_seeds()
        elif isinstance(message, AlertsDue):
            run_alerts(settings, store, should_stop=self.stop.is_set)
        elif isinstance(message, RetentionDue):
            apply_retention(store, settings.schedule)
        self._may_place = True
        if isinstance(message, Polled | SeedsDue) and not self.busy():
            self.settle()

    def _read_on(self, result: FeedResult) -> bool:
        """Poll the feed again at once if its poll left entries over ``fetch.max_pages_per_poll`` and its backlog
        has had fewer than ``fetch.backlog_polls`` polls so far; whether it did.

        Why: the writer places articles in publication order, but only what has arrived. A month of history
        read over polls half an hour apart had its newest reports placed first and its oldest, the reports
        that opened each story, placed after its stories were built: a first poll of the realistic stream
        (``bench/stream_eval.py``, 10 outlets of about 50 entries each) came out other than a daemon that had
        polled all month, in 2 date seeds of 10 by more than 0.01 of F1. Read in one go, the backlog is placed
        with the rest, and the first poll gives the daily daemon's stories. The page budget still bounds each
        poll (other feeds' polls run between two of this feed's), and ``backlog_polls`` the whole backlog."""
        url, polls = result.feed.url, self._backlog.pop(result.feed.url, 0)
        if not result.deferred or result.stopped or polls >= self.settings.fetch.backlog_polls:
            return False
        feed = next((f for f in self.settings.feeds if f.url == url), None)  # the config may have been reloaded
        state = self.runtime.store.feed_state(url)
        if feed is None or state is None or state.disabled or not self.poll(feed, state):
            return False
        self._backlog[url] = polls + 1
        return True

    def ingest_seeds(self) -> Counts:
        counts = ingest_seeds(self.settings, self.runtime.store, self.stop.is_set, on_stored=self._hold)
        self._writing.report.seeds.merge(counts)
        return counts

    def _hold(self, outcome: object) -> None:
        if not isinstance(outcome, Pending):
            return
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        if len(self._held) < HELD:
            self._held[outcome.article_id] = outcome

    def waiting_for(self) -> float:
        """Seconds the oldest article stored in this process has waited for its cluster."""
        return 0.0 if self._waiting_since is None else time.monotonic() - self._waiting_since

    def place_ready(self) -> int:
        """Place, in the batch's order, up to ``PLACED_TOGETHER`` stored articles that sort before every article
        the polls in flight may still bring (:class:`~monitor.horizon.Horizon`); how many. One transaction
        of a few ms between two looks at the queue."""
        cutoff = self._horizon.cutoff() if self._may_place else NOTHING
        # Late articles wait for the settle, which may place everything again from them (``late_since``).
        if cutoff == NOTHING or late_articles(self.runtime.store, self.runtime.clusterer)[0]:
            self._may_place = False
            return 0
        placed = self._count(place_ready(self.runtime.store, self.runtime.clusterer, self._held, self._batch,
                                         keywords=self.settings.keywords, before=cutoff, limit=PLACED_TOGETHER))
        self._may_place = placed == PLACED_TOGETHER
        self._writing.report.placed_early += placed
        return placed

    def settle(self) -> int:
        """Place the stored articles that wait for a cluster and read the batch again
        (:func:`~monitor.pipeline.settle`), or place every article again from late ones
        (:func:`~monitor.recluster.late_since`); how many the batch placed.

        Late articles wait for the polls in flight, up to ``LATE_WAIT`` settle periods: the feeds of
        an OPML import are polled over minutes, and each settle meanwhile would place the same weeks again."""
        report, started = self._writing.report, time.monotonic()
        early = self._batch.count
        since = late_since(self.runtime.store, self.runtime.clusterer, self.settings.cluster)
        if since is not None and self.busy() and self.waiting_for() < LATE_WAIT * self.settings.schedule.settle_every:
            return 0
        if since is not None:
            placed = early + self._place_again(since)
        else:
            placed = early + self._count(settle(self.runtime.store, self.runtime.clusterer, self._held,
                                                keywords=self.settings.keywords, batch=self._batch))
        report.placed += placed
        report.placing += time.monotonic() - started
        self._waiting_since = None
        if placed:
            log.info("articles placed in their clusters", extra={
                "event": "settle", "articles": placed, "early": early,
                "duration": round(time.monotonic() - started, 3)})
        return placed

    def _place_again(self, since: datetime) -> int:
        """Place every article from ``since`` again, with those waiting (``monitor.recluster``), and go on with the
        clusterer that did; how many of those waiting it placed."""
        started = time.monotonic()
        done = recluster(self.runtime.store, self.settings.cluster, since=since, keywords=self.settings.keywords)
        self.runtime.clusterer, self._batch = done.clusterer, Batch()
        self._held.clear()
        log.info("late articles: stories placed again from their date", extra={
            "event": "recluster", "since": since.isoformat(), "articles": done.articles,
            "waiting": done.placed - done.articles, "stories_before": done.stories_before,
            "stories_after": done.stories_after, "duration": round(time.monotonic() - started, 3)})
        return done.placed - done.articles

    def _count(self, outcomes: Iterator[Placed]) -> int:
        """Count what placing did in the pass's report; how many articles it placed."""
        report, placed = self._writing.report, 0
        for pending, outcome in outcomes:
            (report.seeds if pending.article.feed_id is None else report.feeds).count(outcome)
            placed += isinstance(outcome, Stored)
        return placed

    def drain(self, progress: Callable[[int, int], None] | None = None, total: int = 0) -> None:
        """Apply messages until no poll is in flight: what was fetched before a stop is stored.

        ``progress(done, total)`` after each poll is recorded (the CLI draws a bar with it).
        """
        done = 0
        while self.busy() or not self._queue.empty():
            message = self.next_message(timeout=0.2)
            if message is None or (self.stop.is_set() and isinstance(message, SeedsDue | AlertsDue)):
                continue
            self.apply(message)
            if progress and isinstance(message, Polled) and not self.polling(message.result.feed.url):
                done += 1
                progress(done, total)

    @property
    def report(self) -> PassReport:
        """The pass in progress."""
        return self._writing.report

    def end_pass(self, kind: str, *, alerts: bool = True, retention: bool = True) -> PassReport:
        """Retention and alerts (if asked), and the pass's ``runs`` row; a new pass begins."""
        self.settle()
        report = self._writing.report
        if retention:
            apply_retention(self.runtime.store, self.settings.schedule)
        if alerts:
            report.alerts = run_alerts(self.settings, self.runtime.store, should_stop=self.stop.is_set)
        report.duration = time.monotonic() - self._writing.started
        record_run(self.runtime.store, report, kind=kind)
        self._writing = _Writing(polls=self._writing.polls)
        return report

    def run_pass(self, *, due_only: bool = False, progress: Callable[[int, int], None] | None = None) -> PassReport:
        """Seeds, then every enabled feed (only those due with ``due_only``), written here, in this thread."""
        store = self.runtime.store
        store.sync_feeds(self.settings.feeds)
        self.ingest_seeds()
        started = [self.poll(feed, state) for feed, state in feed_states(store, self.settings.feeds, due_only=due_only)]
        if progress:
            progress(0, sum(started))
        self.drain(progress, sum(started))
        return self.end_pass("pass")


def feed_states(store: Store, feeds: Sequence[FeedConfig], *,
                due_only: bool = False) -> list[tuple[FeedConfig, FeedState]]:
    """Enabled feeds with their stored state (``sync_feeds`` must have run); if ``due_only``, only those due."""
    pairs = []
    now = datetime.now(UTC)
    for feed in feeds:
        state = store.feed_state(feed.url)
        if state is not None and not state.disabled and (not due_only or state.is_due(now)):
            pairs.append((feed, state))
    return pairs


def run_pass(runtime: Runtime, *, stop: threading.Event | None = None, due_only: bool = False,
             progress: Callable[[int, int], None] | None = None) -> PassReport:
    """``run --once``: one pass of the engine; on ``stop`` it stores what was fetched, records the pass, returns."""
    with Engine(runtime, stop) as engine:
        return engine.run_pass(due_only=due_only, progress=progress)
