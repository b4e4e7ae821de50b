"""What the clusterer is given and what it decides: plain frozen records, no numerics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.cluster.features import TextReading


@dataclass(frozen=True)
class Doc:
    """What the clusterer sees of an article."""

    id: int
    title: str
    text: str
    published: datetime | None
    source: str
    # Its text as read beside the article by the extraction processes (``features.read_text``), if it was.
    reading: TextReading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reason:
    """Why a doc belongs to the cluster it was moved to: its score against the cluster's
    other docs, and the terms it shares with them (as ``Assignment`` gives for a join)."""

    doc_id: int
    score: float
    shared_terms: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    """A cluster found to hold two events: ``moved`` docs leave ``cluster_id`` for ``new_cluster_id``."""

    cluster_id: int
    new_cluster_id: int
    moved: tuple[int, ...]
    ratio: float  # mean cross-part similarity / the lower mean within-part similarity
    reasons: tuple[Reason, ...] = ()  # each moved doc re-scored against its new cluster


@dataclass(frozen=True)
class Merge:
    """The article matched two clusters that read as one story: ``absorbed`` goes into the
    cluster the article joins.  ``moved`` lists its docs still in the clusterer's window;
    the store moves every article of it, older ones included."""

    absorbed: int
    moved: tuple[int, ...]
    cross: float  # mean similarity between the two clusters' reports
    reasons: tuple[Reason, ...] = ()  # each of ``moved`` re-scored against the merged cluster


@dataclass(frozen=True)
class Assignment:
    """Where a doc goes: the cluster it joins (or starts), the copy it duplicates, the score
    and shared terms that explain the join, and any revision it triggers.

    Built by the named constructors, which say which kind of decision it is: ``new``,
    ``join`` (with an optional split or merge) and ``duplicate``."""

    cluster_id: int
    is_new_cluster: bool
    duplicate_of: int | None
    duplicate_similarity: float | None
    score: float | None
    shared_terms: tuple[str, ...]
    split: Split | None = None
    merge: Merge | None = None

    @classmethod
    def new(cls, doc_id: int) -> Assignment:
        """The doc starts a cluster of its own, named after it."""
        return cls(doc_id, True, None, None, None, ())

    @classmethod
    def join(
        cls, cluster_id: int, score: float | None, shared_terms: tuple[str, ...],
        split: Split | None = None, merge: Merge | None = None,
    ) -> Assignment:
        """The doc joins ``cluster_id``, which a split may then cut or a merge extend."""
        return cls(cluster_id, False, None, None, score, shared_terms, split, merge)

    @classmethod
    def duplicate(
        cls, cluster_id: int, of: int, similarity: float, score: float, shared_terms: tuple[str, ...]
    ) -> Assignment:
        """The doc is a near-duplicate of ``of`` and joins its cluster."""
        return cls(cluster_id, False, of, similarity, score, shared_terms)

    def final_cluster_of(self, doc_id: int) -> int:
        """Where ``doc_id`` ends up once the split (if any) is applied."""
        if self.split is not None and doc_id in self.split.moved:
            return self.split.new_cluster_id
        return self.cluster_id
