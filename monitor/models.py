"""Small value objects that travel between the stages.

Every stage is a plain function from one of these to another, so that fetch and
extract could later run in worker processes (they are all picklable) without
any of them touching the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.cluster.features import TextReading


@dataclass(frozen=True)
class Article:
    """One article as extracted, before it is stored.

    ``extraction`` records how the text was obtained (``trafilatura``,
    ``text-file``, ``feed-content``, ``feed-summary``), so that a fallback is
    visible in the database rather than silent.
    """

    url: str
    title: str
    text: str
    source: str
    guid: str | None = None
    feed_id: int | None = None
    author: str | None = None
    published: datetime | None = None
    fetched_at: datetime | None = None
    language: str | None = None
    canonical_url: str | None = None
    extraction: str = "trafilatura"
    # What the clusterer reads of ``text``, read where the text was extracted (``monitor.tasks``): the writer
    # then does not. Not stored; the clusterer reads the text itself when it is missing or for another text.
    reading: TextReading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Skipped:
    """An input that produced no article, and why (logged and counted)."""

    what: str
    reason: str


@dataclass(frozen=True)
class Fetched:
    """A successful HTTP response body, with what is needed for the next conditional GET."""

    url: str
    final_url: str
    status: int
    content: bytes
    content_type: str | None = None
    encoding: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    moved_to: str | None = None  # where 301/308 redirects led: the feed's new address


@dataclass(frozen=True)
class NotModified:
    """The server answered 304: nothing to parse, nothing to store."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    moved_to: str | None = None


@dataclass(frozen=True)
class FetchFailed:
    """Any failure to get a usable body: HTTP error status, timeout, cap exceeded, network error."""

    url: str
    reason: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


FetchOutcome = Fetched | NotModified | FetchFailed


@dataclass(frozen=True)
class FeedEntry:
    """One entry of a parsed feed, reduced to what later stages use."""

    link: str | None
    guid: str | None
    title: str | None
    author: str | None
    published: datetime | None
    content: str | None
    summary: str | None


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: tuple[FeedEntry, ...]
    bozo_reason: str | None = None
    ttl_minutes: int | None = None


@dataclass(frozen=True)
class ParseFailed:
    reason: str
