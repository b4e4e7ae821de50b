"""The producer side of one feed poll: fetch the feed, then stream its pages to the writer.

A :class:`Poll` runs on the engine's fetch threads and never touches the
database but through :class:`~monitor.store.StoreReader`. After the feed is
fetched and parsed it plans the pages: new entries only (one whose link or
GUID is stored costs no request), newest first, one request per link, at most
``fetch.max_pages_per_poll`` of them (the oldest wait for the polls the engine
starts at once after this one, ``fetch.backlog_polls``, then for later ones). The
pages are then fetched concurrently, at most ``fetch.per_host`` of this poll's
at a time (the shared :class:`~monitor.fetch.HostLimiter` keeps every host's
limits across polls), each extracted in the process pool and handed to the
writer the moment it is done: the writer does not wait for the feed's slowest
page. The poll's own result (:class:`~monitor.pipeline.FeedResult`) follows
its last article.

On stop, pages not yet started are left out and requests in flight are
cancelled; a page already fetched is still extracted and handed over (finish
what was fetched). The result then says ``stopped``, so the writer keeps the
feed's old validators and the next poll fetches what is missing, where a
fallback to the feed's summary would have stored it for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import httpx

from monitor.deadline import cancel_when, stopping
from monitor.dedup import canonical_url
from monitor.extract import article_from_entry
from monitor.fetch import HostLimiter, fetch_url
from monitor.ingest import earliest_placing
from monitor.models import Article, FeedEntry, Fetched, ParsedFeed, ParseFailed, Skipped
from monitor.pipeline import FeedResult
from monitor.politeness import RobotsCache, hints_from_response
from monitor.settings import FeedConfig, FetchSettings
from monitor.store import FeedState, StoreReader
from monitor.tasks import (
    EntryJob,
    FeedJob,
    PageJob,
    PageResult,
    ReadFor,
    entry_article,
    extract_page,
    parse_feed_job,
)

log = logging.getLogger(__name__)

Run = Callable[[Callable, object], object]  # runs a task (monitor.tasks) and returns its result


@dataclass(frozen=True)
class Made:
    """An entry's article (or why there is none), ready for the writer."""

    poll: int
    feed: str
    article: Article | Skipped
    bound: datetime | None = None  # the earliest date the entry could be placed at, as its poll listed it


@dataclass(frozen=True)
class Listed:
    """A poll's entries to come (each made now or after its page, or over the page budget: a poll that follows
    at once may bring those), as the earliest date each can be placed at (:class:`~monitor.horizon.Horizon`);
    sent before the first of them."""

    poll: int
    bounds: tuple[datetime | None, ...]


class _Cancelled:
    """A page request the stop cut short: its entries are left for the next poll."""


CANCELLED = _Cancelled()


@dataclass(frozen=True)
class Producers:
    """What every poll shares: the client, the politeness state, the pools, and where results go."""

    client: httpx.Client
    settings: FetchSettings
    limiter: HostLimiter
    robots: RobotsCache | None
    known: StoreReader
    fetchers: Executor  # threads: feed and page requests
    run_task: Run  # the extraction pool (monitor.engine.Extractor.run)
    emit: Callable[[object], None]  # hands a message to the writer (blocks while its queue is full)
    should_stop: Callable[[], bool]
    read_for: ReadFor | None = None  # the pages' texts are read for the clusterer where they are extracted


@dataclass
class _Page:
    """One link to fetch in this poll, and the entries (one, or several sharing the link) waiting for it."""

    link: str
    entries: list[FeedEntry] = field(default_factory=list)

    @property
    def undated(self) -> bool:
        """An entry waiting for it gives no date: it takes the page's, which may be any."""
        return any(e.published is None for e in self.entries)


def _newest_first(item: tuple[int, FeedEntry]) -> float:
    published = item[1].published
    return -published.timestamp() if published else float("inf")  # undated last, in feed order


def _undated_then_oldest(page: _Page) -> float:
    """The order a poll fetches the pages it chose: those that may take any date first, then the oldest,
    so the writer can place what came before all that is left (:mod:`monitor.horizon`)."""
    return float("-inf") if page.undated else min(e.published.timestamp() for e in page.entries if e.published)


class Poll:
    """One feed poll in flight; :meth:`run` starts it on a fetch thread, ``done`` is called once at the end."""

    def __init__(self, poll_id: int, feed: FeedConfig, state: FeedState, producers: Producers,
                 done: Callable[[int, FeedResult], None]) -> None:
        self.id, self.feed, self.state, self._p, self._done = poll_id, feed, state, producers, done
        self._lock = threading.Lock()
        self._pending: deque[_Page] = deque()
        self._in_flight = 0
        self._made = 0
        self._started = time.monotonic()
        self._result: FeedResult | None = None  # the feed's outcome, finished once the pages are done
        self._feed_url: str | None = None  # where the feed was served from (after redirects)
        self._stopped = False
        self._planned = datetime.now(UTC)  # when the entries were planned (``_bound``)

    # -- the feed ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            with cancel_when(self._p.should_stop):
                self._poll_feed()
        except Exception as exc:  # a bug must not leave the writer waiting for this poll for ever
            log.exception("feed poll failed unexpectedly", extra={"event": "feed.crashed", "url": self.state.poll_url})
            with self._lock:
                self._pending.clear()
                self._result = self._result or FeedResult(self.feed, self.state,
                                                          ParseFailed(f"internal error: {exc!r}"))
        self._page_finished(started=False)

    def _poll_feed(self) -> None:
        state, settings = self.state, self._p.settings
        fetched = fetch_url(self._p.client, state.poll_url, max_bytes=settings.max_bytes, etag=state.etag,
                            last_modified=state.last_modified, limiter=self._p.limiter)
        if not isinstance(fetched, Fetched):
            self._result = FeedResult(self.feed, state, fetched, duration=self._elapsed(),
                                      hints=hints_from_response(fetched.headers), stopped=stopping())
            return
        parsed = self._p.run_task(parse_feed_job, FeedJob(fetched.content, fetched.final_url, fetched.content_type))
        if isinstance(parsed, ParseFailed):
            self._result = FeedResult(self.feed, state, parsed, duration=self._elapsed())
            return
        hints = hints_from_response(fetched.headers, content=fetched.content, ttl_minutes=parsed.ttl_minutes,
                                    published=[e.published for e in parsed.entries])
        deferred = self._plan(parsed, fetched.final_url)
        self._result = FeedResult(self.feed, state, fetched, bozo_reason=parsed.bozo_reason, hints=hints,
                                  deferred=deferred)

    def _plan(self, parsed: ParsedFeed, feed_url: str) -> int:
        """New entries, newest first: each either made now from the feed's own content, queued behind its
        page, or deferred by the page budget. The writer learns first what dates they may bring (``Listed``).
        Returns how many were deferred."""
        self._feed_url, self._planned = feed_url, datetime.now(UTC)
        settings, known = self._p.settings, self._p.known
        new = [(i, e) for i, e in enumerate(parsed.entries)
               if not known.contains(canonical_url=canonical_url(e.link) if e.link else None, guid=e.guid,
                                     feed_id=self.state.id)]
        pages: dict[str, _Page] = {}
        now: list[FeedEntry] = []  # made at once from the feed's own content
        deferred: list[FeedEntry] = []  # over the page budget: a poll that follows at once may bring them
        for _, entry in sorted(new, key=_newest_first):
            link = entry.link
            if not (settings.fetch_pages and link and link.startswith(("http://", "https://"))):
                now.append(entry)
                continue
            key = canonical_url(link)
            if key in pages:
                pages[key].entries.append(entry)
            elif self._p.robots is not None and not self._p.robots.allowed(link):
                log.info("page disallowed by robots.txt; using the feed's own content",
                         extra={"event": "page.robots", "url": link})
                now.append(entry)
            elif len(pages) >= settings.max_pages_per_poll:
                deferred.append(entry)
            else:
                pages[key] = _Page(link, [entry])
        coming = [*now, *(e for page in pages.values() for e in page.entries), *deferred]
        self._p.emit(Listed(self.id, tuple(self._bound(e) for e in coming)))
        for entry in now:
            self._hand_over(entry, None)
        self._pending.extend(sorted(pages.values(), key=_undated_then_oldest))
        return len(deferred)

    def _bound(self, entry: FeedEntry) -> datetime | None:
        return earliest_placing(entry.published, self._planned)

    # -- the pages -----------------------------------------------------------------------------

    def _take_pages(self) -> list[_Page]:
        """Pages to start now (lock held): up to ``fetch.per_host`` of this poll's in flight (the shared
        limiter holds each host's limits across polls); none once the stop is set."""
        starting = []
        while self._pending and self._in_flight < self._p.settings.per_host:
            if self._p.should_stop():
                self._stopped = True
                self._pending.clear()
                break
            self._in_flight += 1
            starting.append(self._pending.popleft())
        return starting

    def _page(self, page: _Page) -> None:
        extracted: Article | Skipped | _Cancelled | None = None
        try:
            try:
                with cancel_when(self._p.should_stop):
                    extracted = self._fetch_page(page.link, date=page.undated)
            except Exception:  # a bug, or an extraction process that died: the feed's own content is used
                log.exception("page failed unexpectedly; using the feed's own content",
                              extra={"event": "page.crashed", "url": page.link})
            if extracted is CANCELLED:
                with self._lock:
                    self._stopped = True
            else:
                for entry in page.entries:
                    self._hand_over(entry, extracted)
        finally:  # the writer waits for this poll's end: it must come whatever happened
            self._page_finished(started=True)

    def _fetch_page(self, link: str, *, date: bool) -> Article | Skipped | _Cancelled | None:
        """The page's article (or why not); None if there is no page (the feed's own content is used).
        ``date``: read the page's date (an entry's own date wins over it, so dated entries need none)."""
        settings = self._p.settings
        page = fetch_url(self._p.client, link, max_bytes=settings.max_bytes, limiter=self._p.limiter)
        if not isinstance(page, Fetched):
            if stopping():
                return CANCELLED
            log.info("page not fetched; using the feed's own content",
                     extra={"event": "page.failed", "url": link, "error": getattr(page, "reason", "not modified")})
            return None
        result: PageResult = self._p.run_task(extract_page, PageJob(link, page.final_url, page.content,
                                                                    page.encoding, datetime.now(UTC),
                                                                    self._p.read_for, date))
        if result.note:
            log.info("page charset overruled: %s", result.note,
                     extra={"event": "page.charset", "url": link, "note": result.note})
        return result.extracted

    def _hand_over(self, entry: FeedEntry, extracted: Article | Skipped | None) -> None:
        """One entry's article (the page's, else the feed's own content) to the writer, now."""
        if isinstance(extracted, Article):  # the page's article with the entry's fields
            made = article_from_entry(entry, extracted, feed_id=self.state.id, feed_name=self.state.name,
                                      fetched_at=datetime.now(UTC), feed_url=self._feed_url)
        else:
            made = self._from_feed(EntryJob(entry, extracted, self.state.id, self.state.name, datetime.now(UTC),
                                            self._feed_url))
        self._p.emit(Made(self.id, self.state.name, made, self._bound(entry)))
        with self._lock:
            self._made += 1

    def _from_feed(self, job: EntryJob) -> Article | Skipped:
        """The entry made from the feed's content in the extraction pool, where the language model is loaded;
        here if the pool broke under it (it is made again for the next task)."""
        try:
            return self._p.run_task(entry_article, job)
        except BrokenProcessPool:
            return entry_article(job)

    def _page_finished(self, *, started: bool) -> None:
        """After the feed (``started`` False) or one of its pages: start more pages, or finish if none is left."""
        with self._lock:
            self._in_flight -= started
            starting = self._take_pages()
            last = self._in_flight == 0 and not self._pending and self._result is not None
            result, self._result = (self._result, None) if last else (None, self._result)
        for page in starting:
            self._p.fetchers.submit(self._page, page)
        if result is not None:
            self._done(self.id, replace(result, entries_seen=self._made, duration=self._elapsed(),
                                        stopped=result.stopped or self._stopped))

    def _elapsed(self) -> float:
        return time.monotonic() - self._started
