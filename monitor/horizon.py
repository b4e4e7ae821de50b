"""How far the writer may place articles while polls are still in flight.

A batch is placed in an order of the articles' own: by the date the clusterer
places them at, then URL (:meth:`monitor.store.Store.unplaced_articles`), so the
clusters do not depend on which page came first. Waiting for the batch's last
poll before placing anything leaves the writer idle while pages are extracted,
and then busy alone at the end. Placing an article early gives the same clusters
if no article still to come can sort before it: each poll lists, once its feed
is parsed, the earliest date each of its entries can be placed at
(:func:`monitor.ingest.earliest_placing`), and the writer places what sorts before
all of them (:meth:`Horizon.cutoff`). A poll started but not yet listed may
bring anything, and so may an undated entry, whose page may give any date.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

# Cut-offs: nothing may be placed yet / everything stored may be placed.
NOTHING = datetime.min.replace(tzinfo=UTC)
EVERYTHING = datetime.max.replace(tzinfo=UTC)


class Horizon:
    """The earliest placing dates the polls in flight may still bring, as the writer has seen them.

    ``expect`` is called where a poll is started (before any of its messages can reach the
    writer); the rest by the writer as it applies each poll's messages, so an entry's bound
    is dropped only once its article is stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unlisted: set[int] = set()
        self._bounds: dict[int, Counter[datetime | None]] = {}

    def expect(self, poll: int) -> None:
        """A poll is starting: until it lists its entries, it may bring an article of any date."""
        with self._lock:
            self._unlisted.add(poll)

    def listed(self, poll: int, bounds: Iterable[datetime | None]) -> None:
        """The poll's entries to come, each as the earliest date it can be placed at (None: any date)."""
        with self._lock:
            self._unlisted.discard(poll)
            self._bounds[poll] = Counter(bounds)

    def made(self, poll: int, bound: datetime | None) -> None:
        """One entry of the poll reached the writer (stored, a copy, or skipped)."""
        with self._lock:
            counter = self._bounds.get(poll)
            if counter is not None and counter[bound] > 0:
                counter[bound] -= 1
                if counter[bound] == 0:
                    del counter[bound]

    def finished(self, poll: int) -> None:
        """The poll is over: whatever it did not hand over will not come."""
        with self._lock:
            self._unlisted.discard(poll)
            self._bounds.pop(poll, None)

    def cutoff(self) -> datetime:
        """Articles placed at a date strictly before this sort before every article still to come."""
        with self._lock:
            if self._unlisted:
                return NOTHING
            bounds = [b for counter in self._bounds.values() for b in counter]
        if None in bounds:
            return NOTHING
        return min(bounds, default=EVERYTHING)
