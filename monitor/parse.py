"""Parse stage: feedparser on bytes we fetched ourselves (never on a URL, so feedparser does no I/O)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

import feedparser

from monitor.models import FeedEntry, ParsedFeed, ParseFailed


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _content(entry: Any) -> str | None:
    """The fullest body the feed offers: content:encoded / atom:content before the summary."""
    contents = entry.get("content") or []
    values = [c.get("value", "") for c in contents if c.get("value")]
    return max(values, key=len) if values else None


def _link(entry: Any) -> str | None:
    """Only a web address counts as a link (feedparser copies an Atom ``urn:`` id into ``link``)."""
    link = (entry.get("link") or "").strip()
    return link if link.lower().startswith(("http://", "https://")) else None


def _entry(entry: Any) -> FeedEntry:
    return FeedEntry(
        link=_link(entry),
        guid=entry.get("id") or entry.get("guid") or None,
        title=(entry.get("title") or "").strip() or None,
        author=entry.get("author") or None,
        published=_when(entry),
        content=_content(entry),
        summary=entry.get("summary") or None,
    )


def _ttl_minutes(feed: Any) -> int | None:
    ttl = str(feed.get("ttl") or "").strip()
    return int(ttl) if ttl.isdigit() else None


def parse_feed(content: bytes, *, url: str = "", content_type: str | None = None) -> ParsedFeed | ParseFailed:
    """A malformed (bozo) feed that still yields entries is used; one that yields nothing is a failure."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(content, response_headers=headers)
    bozo_reason = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not parsed.entries:
        if bozo_reason:
            return ParseFailed(f"not a usable feed: {bozo_reason}")
        if not parsed.get("version"):
            return ParseFailed("not a feed (no RSS or Atom root element)")
    return ParsedFeed(
        title=parsed.feed.get("title"),
        entries=tuple(_entry(e) for e in parsed.entries),
        bozo_reason=bozo_reason,
        ttl_minutes=_ttl_minutes(parsed.feed),
    )
