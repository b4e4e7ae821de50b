"""The CPU-bound units of work: parse a feed's bytes, extract a page's article.

Each is a pure, top-level function from one picklable value to another, so the
engine can run it in a process pool (:mod:`monitor.engine`) and a task queue of
distributed workers can run the very same function: nothing here reads the
database, the settings or a clock, and nothing is shared between calls except
the language model, loaded once per process on first need.

A worker process imports only this module to be ready for its first page
(``bench/startup.py`` prints what that costs).
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from monitor.charset import decode_html
from monitor.cluster.features import read_text
from monitor.cluster_params import ClusterParams
from monitor.extract import article_from_entry, article_from_html, detect_language
from monitor.models import Article, FeedEntry, ParsedFeed, ParseFailed, Skipped
from monitor.parse import parse_feed


@dataclass(frozen=True)
class ReadFor:
    """The clusterer's parameters for reading a text (``ClusterParams`` fields of these names)."""

    max_words: int
    shingle_size: int
    # The near-duplicate signature is made here too, under the permutations of this many (the writer takes
    # it only if its own are the same: ``NearDuplicateIndex.presigned``); None: the writer makes it.
    num_perm: int | None = ClusterParams.model_fields["num_perm"].default


@dataclass(frozen=True)
class PageJob:
    """A fetched page to extract: its bytes as served, and where they came from."""

    url: str  # the link the entry gave
    final_url: str  # where it was served from, after redirects (the page speaks for this outlet)
    content: bytes
    encoding: str | None  # the charset the HTTP headers declared
    fetched_at: datetime
    read_for: ReadFor | None = None  # also read the article's text for the clusterer (``Article.reading``)
    date: bool = True  # read the page's date (False when every entry linking to it gives its own, which wins)


@dataclass(frozen=True)
class PageResult:
    """What a page gave: an article, or why not; ``note`` says when its declared charset was overruled."""

    url: str
    extracted: Article | Skipped
    note: str | None = None


def extract_page(job: PageJob) -> PageResult:
    """Decode (the page's own charset first, :func:`~monitor.charset.decode_html`) and extract with trafilatura;
    with ``read_for``, read the text for the writer too (about 6% of the task): what the clusterer reads of it,
    its near-duplicate signature and its exact-duplicate key (``TextReading``)."""
    decoded = decode_html(job.content, job.encoding)
    extracted = article_from_html(decoded.content, url=job.final_url, fetched_at=job.fetched_at, date=job.date)
    if decoded.note and isinstance(extracted, Article):  # kept with the article: how its text was read
        extracted = replace(extracted, extraction=f"{extracted.extraction} ({decoded.note})")
    if job.read_for is not None and isinstance(extracted, Article):  # here, not on the one writer
        read_for = job.read_for
        extracted = replace(extracted, reading=read_text(extracted.text, read_for.max_words, read_for.shingle_size,
                                                         read_for.num_perm, digest=True))
    return PageResult(job.url, extracted, decoded.note)


@dataclass(frozen=True)
class EntryJob:
    """An entry whose page gave no article (none fetched, or nothing extracted): made from the feed's own
    content, with the arguments of :func:`~monitor.extract.article_from_entry`."""

    entry: FeedEntry
    extracted: Skipped | None
    feed_id: int | None
    feed_name: str
    fetched_at: datetime
    feed_url: str | None


def entry_article(job: EntryJob) -> Article | Skipped:
    """The entry's article from the feed's content or summary: here, because its language is identified
    (py3langid: 0.5 s and 100 MB to load), so that the engine's own process never loads the model."""
    return article_from_entry(job.entry, job.extracted, feed_id=job.feed_id, feed_name=job.feed_name,
                              fetched_at=job.fetched_at, feed_url=job.feed_url)


@dataclass(frozen=True)
class FeedJob:
    """A fetched feed document to parse."""

    content: bytes
    url: str
    content_type: str | None = None


def parse_feed_job(job: FeedJob) -> ParsedFeed | ParseFailed:
    return parse_feed(job.content, url=job.url, content_type=job.content_type)


def ignore_stop_signals() -> None:
    """SIGINT/SIGTERM are for the parent, which stops its workers itself.

    A terminal's Ctrl-C reaches the whole process group and systemd signals the
    whole cgroup; a worker killed then would lose the pages the parent is
    still finishing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def start_pool_worker(parent_pid: int) -> None:
    """A pool worker's initializer: stop signals ignored, and an exit when ``parent_pid`` (the engine) dies.

    Why the watch: a worker deaf to SIGTERM outlives a parent killed with SIGKILL (a cron
    timeout, the OOM killer), and nothing else ends it: every worker holds the write ends of
    the pool's queues and of the forkserver's liveness pipe, so neither it nor the
    forkserver ever reads EOF. Each killed ``run --once`` left a forkserver and its
    workers behind, about 120 MB each."""
    ignore_stop_signals()
    when_gone(parent_pid, lambda: os._exit(0))


def when_gone(pid: int, then: Callable[[], object]) -> None:
    """Call ``then`` on a thread of its own once process ``pid`` has ended."""
    threading.Thread(target=_wait_then, args=(pid, then), name="parent-watch", daemon=True).start()


def _wait_then(pid: int, then: Callable[[], object]) -> None:
    """Block until process ``pid`` ends (a pidfd is readable then; polled where there is none)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is gone already
        while _alive(pid):
            time.sleep(2)
    else:
        select.select([fd], [], [])
        os.close(fd)
    then()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A small page that takes the paths a worker's first real pages would otherwise each pay for once per process:
# trafilatura's fallback extractors on a short text (justext's stop lists of every language, about 0.1 s),
# htmldate's search of the text for a date (dateparser and its month names of every locale: about 250 modules
# and 0.1 s), and the clusterer's reading (numpy). No date in it reaches dateparser's own parser, which would
# compile every locale's patterns (about 1.5 s) where a real page may never need them.
_WARM_URL = "http://warm-up.invalid/news/harbour"
_WARM_PAGE = (
    "<html lang='en'><head><title>The council meets on the harbour plan</title></head><body>"
    "<nav><a href='/'>Home</a> | <a href='/news'>News</a></nav><div class='story'>"
    "<h1>The council meets on the harbour plan</h1><div class='byline'>By Ann Example</div>"
    "<div class='date'>Updated 3 h, 10:15</div>"
    "<div><p>The town council met on Tuesday to discuss the harbour plan for the old docks.</p>"
    "<p>\u201cWe have waited long enough,\u201d said the mayor, J\u00fcrgen M\u00fcller.</p></div>"
    "</div><footer>Example News</footer></body></html>").encode()


def warm_up(_: object = None) -> None:
    """Load what a worker's first pages would otherwise wait for: one page through the whole task
    (:data:`_WARM_PAGE`), then the language model (about 0.5 s and 100 MB)."""
    extract_page(PageJob(_WARM_URL, _WARM_URL, _WARM_PAGE, "utf-8", datetime(2026, 1, 1, tzinfo=UTC),
                         ReadFor(max_words=400, shingle_size=3)))
    detect_language("The worker loads its language model once, before its first page arrives.")
