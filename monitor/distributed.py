"""Parse and extract on worker processes of any machine, through Dramatiq and a Redis broker.

The daemon stays the scheduler, the fetcher and the single writer: it fetches
politely (it alone knows what is in flight per host), sends each fetched
document as a job (a :class:`~monitor.tasks.PageJob` or
:class:`~monitor.tasks.FeedJob`, pickled) to the broker's queue, and the fetch
thread that sent it waits for its result, exactly as it waits for the local
process pool in :class:`monitor.engine.Extractor`. Workers (``newsmonitor
worker``, :func:`run_worker`) run the same pure functions of
:mod:`monitor.tasks` and put the result back into Redis.

Why Dramatiq: its Redis broker acknowledges a message only after the task has
run (a message taken by a worker that dies stays in that worker's ack set and
goes back to the queue once the worker misses its heartbeats), its results
backend waits with one blocking Redis call per job, safe from many fetch
threads at once (Celery's Redis result consumer is not thread-safe: celery
issues 3761, 4480, 6350), and it needs no daemon of its own beyond Redis.

Nothing lost: a job stays the daemon's until its result is back. A dead
worker's jobs are put back by the broker's maintenance, which the waiting
daemon runs each ``heartbeat_timeout``; a broker that restarts without its
data (no AOF) loses the messages, so after ``result_timeout`` the job is sent
again; while Redis is unreachable the daemon retries. Nothing doubled: a job
redelivered after its worker died may run twice, but its fetch thread takes
one result and the writer stores a link once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import DEFAULT_MAINTENANCE_CHANCE, MAINTENANCE_SCALE, RedisBroker
from dramatiq.encoder import PickleEncoder
from dramatiq.message import Message
from dramatiq.middleware import Middleware, Retries
from dramatiq.results import ResultFailure, Results, ResultTimeout
from dramatiq.results.backends import RedisBackend

from monitor.models import ParseFailed, Skipped
from monitor.settings import DistributedSettings
from monitor.tasks import (
    EntryJob,
    FeedJob,
    PageJob,
    PageResult,
    entry_article,
    extract_page,
    parse_feed_job,
    warm_up,
    when_gone,
)

log = logging.getLogger(__name__)

QUEUE = "newsmonitor"
TASKS: dict[str, Callable[[Any], Any]] = {"extract_page": extract_page, "parse_feed_job": parse_feed_job,
                                          "entry_article": entry_article}
RESULT_TTL_MS = 3_600_000  # an orphaned result (its daemon restarted) expires after an hour
IDLE_POLL_MS = 100  # an idle worker looks for a new job this often
MAX_RETRIES = 2  # a task that raises is run twice more, then its job is reported as failed


def run_task(name: str, job: Any) -> Any:
    """The one actor: ``TASKS[name](job)``; only the functions named in :data:`TASKS` can be asked for."""
    return TASKS[name](job)


class Broker:
    """The Dramatiq broker, results backend and actor for one process (the daemon's, or a worker's)."""

    def __init__(self, settings: DistributedSettings, *, maintain: bool,
                 middleware: Iterable[Middleware] = ()) -> None:
        if not settings.broker_url:
            raise ValueError("distributed.broker_url is not set")
        # Jobs carry bytes and dataclasses: pickled. Whoever can write to the broker can run code on the workers
        # and the daemon, so the broker must be reachable by them alone (README, "Many machines").
        dramatiq.set_encoder(PickleEncoder())
        self.settings = settings
        self.backend = RedisBackend(url=settings.broker_url, namespace="newsmonitor-results", encoder=PickleEncoder())
        self.broker = RedisBroker(
            url=settings.broker_url, namespace="newsmonitor",
            heartbeat_timeout=int(settings.heartbeat_timeout * 1000),
            # The daemon's calls sweep dead workers' jobs back every time (it calls rarely: once per job sent and
            # once per heartbeat_timeout of waiting); workers keep Dramatiq's default chance.
            maintenance_chance=MAINTENANCE_SCALE if maintain else DEFAULT_MAINTENANCE_CHANCE,
            middleware=[Retries(max_retries=MAX_RETRIES, min_backoff=100, max_backoff=1000),
                        Results(backend=self.backend, result_ttl=RESULT_TTL_MS), *middleware])
        self.actor = dramatiq.actor(run_task, broker=self.broker, actor_name="newsmonitor.run", queue_name=QUEUE,
                                    store_results=True, max_retries=MAX_RETRIES)

    def heartbeat(self) -> None:
        """One cheap broker call: records this process as alive and, on the daemon, requeues dead workers' jobs."""
        self.broker.do_qsize(QUEUE)

    def close(self) -> None:
        self.broker.close()


def _failed(job: Any, reason: str) -> Any:
    """What a job that raised on every try gives: the outcome its own task uses for a failure; an entry to make
    from the feed's content is made here instead (it needs no page)."""
    if isinstance(job, FeedJob):
        return ParseFailed(reason)
    if isinstance(job, EntryJob):
        return entry_article(job)
    url = getattr(job, "url", "?")
    return PageResult(url, Skipped(url, reason)) if isinstance(job, PageJob) else Skipped(url, reason)


class RemoteExtractor:
    """:class:`monitor.engine.Extractor`'s interface, running the tasks on ``newsmonitor worker`` processes.

    ``run`` is called from many fetch threads at once; each waits for its own
    job's result (a blocking Redis call per job), so the number of jobs in
    flight is bounded by ``fetch.concurrency``, as with the local pool.
    """

    workers = 0  # no local processes

    def __init__(self, settings: DistributedSettings, stopping: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self._stopping = stopping  # the daemon stops: a job nobody answers is given up, not sent again
        self._broker = Broker(settings, maintain=True)
        self._wait_ms = max(1000, int(settings.heartbeat_timeout * 1000))  # the backend's waits are whole seconds

    def start(self) -> None:
        """Nothing to start here: the workers run elsewhere."""

    def wait_ready(self) -> None:
        """Until the broker answers (the workers may come later: the jobs wait in the queue for them)."""
        self._retry(self._broker.heartbeat, "the broker")

    def run(self, task: Callable[[Any], Any], job: Any) -> Any:
        """``task(job)`` on a worker; this (fetch) thread waits for the result."""
        name = task.__name__
        if TASKS.get(name) is not task:
            raise ValueError(f"{name} is not a task workers run (monitor.distributed.TASKS)")
        message = self._send(name, job)
        waited = 0.0
        while True:
            try:
                return self._broker.backend.get_result(message, block=True, timeout=self._wait_ms)
            except ResultFailure as exc:
                log.error("a job failed on the workers", extra={"event": "worker.failed", "error": str(exc)})
                return _failed(job, f"failed on a worker: {exc}")
            except ResultTimeout:
                waited += self._wait_ms / 1000
            except redis.ConnectionError:
                self._retry(self._broker.heartbeat, "the broker")
                continue
            self._retry(self._broker.heartbeat, "the broker")  # a dead worker's jobs go back to the queue
            if waited >= self.settings.result_timeout and self._stopping():
                return _failed(job, "no worker answered before the daemon stopped")
            if waited >= self.settings.result_timeout:
                log.warning("no result for a job; sending it again", extra={
                    "event": "worker.resent", "url": getattr(job, "url", "?"), "waited": round(waited)})
                message, waited = self._send(name, job), 0.0

    def _send(self, name: str, job: Any) -> Message:
        return self._retry(lambda: self._broker.actor.send(name, job), "the broker")

    @staticmethod
    def _retry(call: Callable[[], Any], what: str) -> Any:
        """``call()``, again and again while Redis is unreachable (a broker restart), backing off to 2 s."""
        delay = 0.1
        while True:
            try:
                return call()
            except redis.ConnectionError as exc:
                log.warning("%s is unreachable; retrying", what, extra={"event": "broker.unreachable",
                                                                         "error": str(exc)})
                time.sleep(delay)  # a backoff between reconnection attempts, not a wait for an outcome
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._broker.close()


def run_worker(settings: DistributedSettings, stop: threading.Event, *, threads: int = 1,
               middleware: Iterable[Middleware] = (), ready: Callable[[], None] | None = None) -> None:
    """``newsmonitor worker``: run jobs until ``stop`` is set, then finish the jobs in hand and return.

    One thread per process suits the CPU-bound tasks (start one process per
    core); a second job is prefetched, so the thread never waits for Redis
    between jobs. A thread of its own calls the broker every quarter of
    ``heartbeat_timeout``, so a long job does not make its worker look dead.

    It is ready for jobs before it has loaded what its first pages would
    otherwise pay for (:func:`~monitor.tasks.warm_up`: the language model, stop
    lists, month names; about 1 CPU-second and 100 MB): a thread loads those
    right after, and says ``worker.warm``. ``run_workers`` loads them once before
    forking, for its children.
    """
    broker = Broker(settings, maintain=False, middleware=middleware)
    worker = dramatiq.Worker(broker.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=IDLE_POLL_MS)
    worker.start()
    beat = threading.Thread(target=_heartbeats, args=(broker, stop), name="heartbeat", daemon=True)
    beat.start()
    log.info("worker ready", extra={"event": "worker.ready", "threads": threads})
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    if ready is not None:
        ready()
    try:
        stop.wait()
    finally:
        worker.stop()
        beat.join()
        broker.close()
        log.info("worker stopped", extra={"event": "worker.stopped"})


def _warm_up() -> None:
    started = time.thread_time()
    warm_up()  # in a child of run_workers, which warmed up before forking, one small page and nothing else
    log.info("worker warmed up", extra={"event": "worker.warm", "cpu": round(time.thread_time() - started, 3)})


def _heartbeats(broker: Broker, stop: threading.Event) -> None:
    while not stop.wait(broker.settings.heartbeat_timeout / 4):
        try:
            broker.heartbeat()
        except redis.ConnectionError:
            continue  # the consumer reconnects by itself; the next beat tries again


def run_workers(settings: DistributedSettings, stop: threading.Event, *, processes: int, threads: int = 1) -> None:
    """``newsmonitor worker --processes N``: load the models once, then fork N workers; one that dies is replaced.

    The children inherit the imported extractor and language model, so each is
    ready in milliseconds and shares those pages with its siblings
    (copy-on-write) instead of loading them again. SIGTERM/SIGINT reach this
    process, which stops its children the same way: each finishes its job.
    """
    if processes == 1:
        run_worker(settings, stop, threads=threads)
        return
    warm_up()
    log.info("models loaded; forking the workers", extra={"event": "worker.forking", "processes": processes})
    context = multiprocessing.get_context("fork")  # the point: the children start from this loaded process
    children = [_fork(context, settings, threads, n) for n in range(processes)]
    while not stop.is_set():
        wait([child.sentinel for child in children], timeout=0.5)  # a child's exit, or a look at ``stop``
        for n, child in enumerate(children):
            if not child.is_alive() and not stop.is_set():
                log.error("a worker process died; starting another", extra={
                    "event": "worker.died", "pid": child.pid, "exitcode": child.exitcode})
                children[n] = _fork(context, settings, threads, n)
    for child in children:
        child.terminate()
    for child in children:
        child.join()


def _fork(context: Any, settings: DistributedSettings, threads: int, n: int) -> Any:
    child = context.Process(target=_child, args=(settings, threads, os.getpid()), name=f"newsmonitor-worker-{n}")
    child.start()
    return child


def _child(settings: DistributedSettings, threads: int, parent: int) -> None:
    """A forked worker: it stops as on SIGTERM (its job finished) when its parent does, or when the
    parent is killed outright; otherwise an orphan would go on taking jobs nobody supervises."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    when_gone(parent, stop.set)
    run_worker(settings, stop, threads=threads)
