"""How often a feed is polled, and why: the one rule the poller and the reports share.

A feed is polled at its configured ``interval``. Only a feed that opts into adaptive
polling (its own ``adaptive: true``, or ``schedule.adaptive: true`` for feeds that say
nothing) lets server hints (RSS ``<ttl>``, ``sy:updatePeriod``, ``Cache-Control``) and
quiet spells lengthen it, up to ``schedule.max_interval``
(:meth:`monitor.politeness.PollPolicy.interval`). Failures back off and a server's
``Retry-After`` is honoured either way: those are not intervals but waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.settings import FeedConfig, ScheduleSettings, format_duration


def adaptive(feed: FeedConfig, schedule: ScheduleSettings) -> tuple[bool, str]:
    """Whether the feed's interval may be lengthened, and the setting that decides it."""
    if feed.adaptive is not None:
        return feed.adaptive, f"the feed's adaptive: {str(feed.adaptive).lower()}"
    return schedule.adaptive, f"schedule.adaptive: {str(schedule.adaptive).lower()}"


def short_duration(seconds: float) -> str:
    """'15m', '2h', '22m', '1.5h': exact where it can be, else rounded for reading."""
    exact = format_duration(seconds)
    if isinstance(exact, str):
        return exact
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 120:
        return f"{round(seconds / 60)}m"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class PollInterval:
    """The interval a feed is polled at now (``seconds``), and why, for ``feeds list`` and ``status``."""

    seconds: float
    adaptive: bool
    why: str

    @property
    def text(self) -> str:
        return f"every {short_duration(self.seconds)} ({self.why})"

    def as_dict(self) -> dict[str, Any]:
        return {"effective_interval": self.seconds, "adaptive": self.adaptive, "interval_reason": self.why,
                "every_text": self.text}


def poll_interval(feed: FeedConfig, schedule: ScheduleSettings, stored: float | None) -> PollInterval:
    """``stored`` is the interval the last poll decided (``feeds.poll_interval``), None before the first."""
    adapts, setting = adaptive(feed, schedule)
    configured = short_duration(feed.interval)
    if not adapts:
        return PollInterval(feed.interval, False, f"as configured; fixed by {setting}")
    ceiling = short_duration(max(schedule.max_interval, feed.interval))
    if stored and stored > feed.interval:
        return PollInterval(stored, True, f"configured {configured}, lengthened by server hints or a quiet feed, "
                                          f"at most {ceiling}; adaptive by {setting}")
    return PollInterval(feed.interval, True, f"as configured, may lengthen up to {ceiling}; adaptive by {setting}")
