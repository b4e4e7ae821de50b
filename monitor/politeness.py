"""How often to ask a site for something, and whether to ask at all.

Two concerns of a polite poller live here, as pure functions over values so
the writer, the daemon and the tests share one definition:

* **When to poll next** (:class:`PollPolicy`): the configured interval is the
  floor; server hints (RSS ``<ttl>``, ``sy:updatePeriod``, ``Cache-Control:
  max-age``) and the observed update rate (median gap between the feed's
  entries, time since we last saw something new) may only *lengthen* it, up to
  ``schedule.max_interval``. Errors back off exponentially up to
  ``schedule.max_backoff``, never sooner than a ``Retry-After``. A feed failing
  for longer than ``schedule.disable_after``, or answering 410 Gone, is
  disabled rather than retried forever.
* **Whether a page may be fetched** (:class:`RobotsCache`): robots.txt, fetched
  once per site through our own fetch stage (same User-Agent, limits and
  timeouts), parsed by :mod:`urllib.robotparser`, cached for a day.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from monitor.fetch import HostLimiter, fetch_url
from monitor.models import Fetched, FetchFailed
from monitor.settings import ScheduleSettings

# A quiet feed is polled at most this fraction of the time it has been quiet...
QUIET_FACTOR = 0.25
# ... and at most this fraction of the usual gap between its entries.
GAP_FACTOR = 0.5
GONE = 410
MAX_CRAWL_DELAY = 60.0  # a Crawl-delay of hours would stall a worker; beyond a minute we just go slowly

_PERIOD_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400,
                   "yearly": 365 * 86400}
_SY_PERIOD = re.compile(rb"<(?:[\w-]+:)?updatePeriod\s*>\s*(\w+)\s*<", re.IGNORECASE)
_SY_FREQUENCY = re.compile(rb"<(?:[\w-]+:)?updateFrequency\s*>\s*(\d+)\s*<", re.IGNORECASE)
_MAX_AGE = re.compile(r"(?:^|[,\s])(max-age|s-maxage)\s*=\s*\"?(\d+)", re.IGNORECASE)


# -- hints from a response ----------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_max_age(cache_control: str | None) -> float | None:
    """``max-age`` or ``s-maxage`` (shared caches' max-age) of a Cache-Control header; ``no-cache`` etc. give no hint.

    If both are present the longer wins: either is the server saying how long its answer stays
    fresh, and we never poll sooner than the server asks.
    """
    ages = [float(match.group(2)) for match in _MAX_AGE.finditer(cache_control or "")]
    return max(ages) if ages else None


def syndication_period(content: bytes | None) -> float | None:
    """Seconds between updates announced by the RSS syndication module (``sy:updatePeriod``/``Frequency``).

    Read with a regex on the raw bytes: the parse stage does not keep these
    elements, and they are simple text nodes near the top of the channel.
    """
    if not content:
        return None
    head = content[:20_000]
    period = _SY_PERIOD.search(head)
    if not period:
        return None
    seconds = _PERIOD_SECONDS.get(period.group(1).decode("ascii", "replace").lower())
    if seconds is None:
        return None
    frequency = _SY_FREQUENCY.search(head)
    times = int(frequency.group(1)) if frequency else 1
    return seconds / max(times, 1)


def median_gap(times: Sequence[datetime | None], *, newest: int = 20) -> float | None:
    """Median seconds between consecutive entries (the newest ``newest`` with a date), or None if < 3."""
    known = sorted((t for t in times if t is not None), reverse=True)[:newest]
    if len(known) < 3:
        return None
    gaps = [(a - b).total_seconds() for a, b in pairwise(known)]
    return max(0.0, statistics.median(gaps))


@dataclass(frozen=True)
class PollHints:
    """What one poll told us about how often the feed changes and how often the server wants us back."""

    ttl: float | None = None
    update_period: float | None = None
    max_age: float | None = None
    retry_after: float | None = None
    entry_gap: float | None = None

    @property
    def server_interval(self) -> float | None:
        """The longest interval the server asked for, if any (we never poll sooner than it asks)."""
        values = [v for v in (self.ttl, self.update_period, self.max_age) if v]
        return max(values) if values else None


def hints_from_response(
    headers: Mapping[str, str], *, content: bytes | None = None, ttl_minutes: int | None = None,
    published: Sequence[datetime | None] = (), now: datetime | None = None,
) -> PollHints:
    return PollHints(
        ttl=ttl_minutes * 60.0 if ttl_minutes else None,
        update_period=syndication_period(content),
        max_age=parse_max_age(headers.get("cache-control")),
        retry_after=parse_retry_after(headers.get("retry-after"), now),
        entry_gap=median_gap(published),
    )


# -- when to poll next --------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPlan:
    """The writer's decision after a poll: the interval used, when to come back, and whether to stop."""

    interval: float
    next_due: datetime
    disable_reason: str | None = None


@dataclass(frozen=True)
class PollPolicy:
    max_interval: float = 6 * 3600
    max_backoff: float = 86400
    disable_after: float | None = 7 * 86400

    @classmethod
    def from_settings(cls, schedule: ScheduleSettings) -> PollPolicy:
        return cls(max_interval=schedule.max_interval, max_backoff=schedule.max_backoff,
                   disable_after=schedule.disable_after)

    def interval(self, configured: float, hints: PollHints | None = None, *, quiet_for: float | None = None) -> float:
        """The configured interval, lengthened by server hints and by how rarely the feed changes.

        Never shorter than ``configured`` (the user's choice), never longer than
        ``max_interval`` unless the configured interval itself is longer.
        """
        hints = hints or PollHints()
        candidates = [configured]
        if hints.server_interval:
            candidates.append(hints.server_interval)
        if hints.entry_gap:
            candidates.append(hints.entry_gap * GAP_FACTOR)
        if quiet_for:
            candidates.append(quiet_for * QUIET_FACTOR)
        return min(max(candidates), max(configured, self.max_interval))

    def error_delay(self, configured: float, consecutive_errors: int, retry_after: float | None = None) -> float:
        """Exponential backoff, capped; a server's Retry-After is honoured (up to the same cap)."""
        delay = configured if consecutive_errors <= 0 else configured * 2 ** min(consecutive_errors, 32)
        delay = min(delay, max(self.max_backoff, configured))
        if retry_after:
            delay = max(delay, min(retry_after, max(self.max_backoff, configured)))
        return delay

    def success(self, configured: float, hints: PollHints | None, *, quiet_for: float | None,
                now: datetime, adaptive: bool = True) -> PollPlan:
        """``adaptive`` false (:func:`monitor.intervals.adaptive`): the configured interval, only Retry-After waits."""
        interval = self.interval(configured, hints, quiet_for=quiet_for) if adaptive else configured
        retry_after = hints.retry_after if hints else None
        wait = max(interval, min(retry_after or 0.0, self.max_backoff))
        return PollPlan(interval, now + timedelta(seconds=wait))

    def failure(self, configured: float, consecutive_errors: int, *, status: int | None, reason: str,
                retry_after: float | None, failing_since: datetime | None, now: datetime) -> PollPlan:
        """Back off; disable on 410 Gone or once the feed has failed for ``disable_after``."""
        delay = self.error_delay(configured, consecutive_errors, retry_after)
        due = now + timedelta(seconds=delay)
        if status == GONE:
            return PollPlan(configured, due, f"{reason}: the feed was removed")
        if self.disable_after and failing_since and (now - failing_since).total_seconds() >= self.disable_after:
            since = failing_since.isoformat(timespec="seconds")
            return PollPlan(configured, due, f"failing since {since} ({consecutive_errors} errors): {reason}")
        return PollPlan(configured, due)


# -- robots.txt ---------------------------------------------------------------------------------


@dataclass
class _Rules:
    parser: RobotFileParser | None  # None: no rules, everything allowed
    expires: float


class RobotsCache:
    """robots.txt per site (scheme, host, port), fetched once and kept for ``ttl`` seconds.

    A ``Crawl-delay`` for our agent raises the shared :class:`HostLimiter`'s
    delay for that host (capped at a minute), so feeds and pages both slow down.

    A 4xx means no rules (everything allowed), as RFC 9309 says. A 5xx or an
    unreachable robots.txt is also taken as "no rules", but only for an hour:
    RFC 9309 would assume "disallow all", which here would silently degrade
    every article of that site to the feed's summary, while we request at most
    one page per *new* entry, through the same per-host limits. Shared by
    worker threads; a per-site lock makes concurrent first look-ups fetch once.
    """

    def __init__(self, client: httpx.Client, *, user_agent: str, max_bytes: int = 500_000,
                 limiter: HostLimiter | None = None, ttl: float = 86400, failure_ttl: float = 3600) -> None:
        self._client = client
        self._agent = user_agent
        self._max_bytes = max_bytes
        self._limiter = limiter
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._rules: dict[str, _Rules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return True
        site = f"{parts.scheme}://{parts.netloc}"
        rules = self._site_rules(site)
        return rules.parser is None or rules.parser.can_fetch(self._agent, url)

    def crawl_delay(self, url: str) -> float | None:
        """The site's ``Crawl-delay`` for our agent, if it sets one."""
        parts = urlsplit(url)
        rules = self._site_rules(f"{parts.scheme}://{parts.netloc}")
        delay = rules.parser.crawl_delay(self._agent) if rules.parser else None
        return float(delay) if delay is not None else None

    def _site_rules(self, site: str) -> _Rules:
        with self._guard:
            lock = self._locks.setdefault(site, threading.Lock())
        with lock:
            rules = self._rules.get(site)
            if rules is None or rules.expires < time.monotonic():
                rules = self._fetch(site)
                self._rules[site] = rules
            return rules

    def _fetch(self, site: str) -> _Rules:
        self.fetches += 1
        outcome = fetch_url(self._client, f"{site}/robots.txt", max_bytes=self._max_bytes, limiter=self._limiter)
        now = time.monotonic()
        if isinstance(outcome, Fetched):
            parser = RobotFileParser()
            parser.parse(outcome.content.decode("utf-8", "replace").splitlines())
            delay = parser.crawl_delay(self._agent)
            if delay is not None and self._limiter is not None:
                self._limiter.slow_down(site, min(float(delay), MAX_CRAWL_DELAY))
            return _Rules(parser, now + self._ttl)
        if isinstance(outcome, FetchFailed) and outcome.status is not None and 400 <= outcome.status < 500:
            return _Rules(None, now + self._ttl)
        return _Rules(None, now + self._failure_ttl)  # 5xx or unreachable: no rules, asked again sooner
