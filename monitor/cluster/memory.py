"""The store as the clusterer's memory: what it gives back at start-up, what it finds for a
late report, and what the clusterer hands it to write after each article.

The clusterer keeps a bounded neighbourhood of the stream in memory (``state.Window``);
everything it decided is also in the store, written in the article's own transaction
(``Changes``).  So:

- start-up reads the kept state of the docs that would be in memory now (``Recall``),
  instead of reading their texts again: no features, no IDF, no centroid sums;
- a report dated near a story that has left memory (a backfill of weeks, a feed that
  was down, a wrong clock) finds it through a stored index of (key, day, cluster) rows,
  and the story's centroid is read back to score it;
- nothing needs saving at exit, and a crash at any moment loses nothing the store has:
  the clusterer is rebuilt from the store the next time it is needed.

The store's side of the protocol is ``monitor.store_memory.StoredMemory``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from monitor.cluster.decisions import Doc
from monitor.cluster.persist import decode_cluster, decode_doc
from monitor.cluster.state import DAY, ClusterState, DocState, Window
from monitor.cluster.vocabulary import Vocabulary
from monitor.cluster_params import ClusterParams
from monitor.dedup import NearDuplicateIndex


@dataclass(frozen=True)
class RecalledDoc:
    """A stored article the clusterer should hold now: its kept state, or (stored before
    states were kept) what is needed to read it again."""

    doc: Doc
    cluster_id: int
    duplicate_of: int | None
    state: bytes | None


@dataclass(frozen=True)
class Recall:
    """What start-up reads: the docs in arrival (id) order, their clusters' states, and
    whether older clusters are stored beyond them (then late reports look there)."""

    docs: list[RecalledDoc]
    clusters: dict[int, bytes]
    older_stored: bool

    @property
    def complete(self) -> bool:
        """Every doc has its kept state: else the clusterer reads every doc again from its text
        (``Clusterer._replay``), and the store must give the texts of all. A story without its kept
        state is assembled from its docs' (``restore_kept``)."""
        return all(d.state is not None for d in self.docs)


@dataclass
class Changes:
    """What one ``add`` changed, for the store to write in the article's transaction."""

    doc: tuple[int, float, bytes] | None = None  # article id, date, kept state
    clusters: list[tuple[int, float, float, bytes]] = field(default_factory=list)  # id, first, last, state
    removed: list[int] = field(default_factory=list)  # clusters merged away
    keys: list[tuple[str, int, int]] = field(default_factory=list)  # (index key, day, cluster)
    # Docs that left memory: start-up never reads their kept state again (it reads what memory
    # would hold), so the store drops it and keeps only what memory can come back to.
    evicted: list[int] = field(default_factory=list)


class Memory(Protocol):
    """The store's side (``monitor.store_memory.StoredMemory``)."""

    def recall(self, hot_docs: int, window_days: float) -> Recall: ...

    def cold_matches(self, keys: Sequence[str], days: tuple[int, int], exclude: Collection[int]) -> list[
        tuple[str, int]]: ...

    def cluster_states(self, ids: Sequence[int]) -> dict[int, bytes]: ...

    def clusters_in_use(self, ids: Sequence[int]) -> set[int]: ...


def day_of(ts: float) -> int:
    return math.floor(ts / DAY)


def cold_candidates(
    memory: Memory, window: Window, vocabulary: Vocabulary, params: ClusterParams,
    salient: list[tuple[str, float]], ts: float,
) -> dict[int, ClusterState]:
    """Stored clusters that left memory and share index keys with a doc dated ``ts``,
    within ``window_days`` of it: the best ``max_candidates`` by the same weighted votes
    as the in-memory index, read back with norms under today's IDF."""
    span = params.window_days * DAY
    weight = dict(salient)
    votes: dict[int, float] = {}
    days = (day_of(ts - span), day_of(ts + span))
    for key, cid in memory.cold_matches(list(weight), days, window.clusters.keys()):
        votes[cid] = votes.get(cid, 0.0) + weight[key]
    best = sorted(votes, key=lambda cid: (-votes[cid], cid))[: params.max_candidates]
    out = {}
    for cid, blob in memory.cluster_states(best).items():
        c = decode_cluster(cid, blob)
        if c.first_ts - span <= ts <= c.last_ts + span:
            c.norm_sq = {sig: vocabulary.exact_norm_sq(sig, cen) for sig, cen in c.centroid.items()}
            out[cid] = c
    return out


def restore_kept(recall: Recall, window: Window, vocabulary: Vocabulary, duplicates: NearDuplicateIndex) -> bool:
    """Put back what the store kept of the docs and stories of ``recall``, as they were written; False,
    changing nothing, if some doc's kept state is missing (stored by an earlier version): the clusterer
    then reads those texts instead (``Clusterer._replay``). A story whose kept state was dropped
    (``monitor.recluster`` from a date) is assembled from its docs' here, as a replay would build it from
    their texts, at a small part of the cost."""
    if not recall.complete:
        return False
    decoded = [(r.doc.id, *decode_doc(r.state, r.cluster_id)) for r in recall.docs]  # type: ignore[arg-type]
    for _, state, _ in decoded:
        vocabulary.count(state.terms)
    for cid, blob in recall.clusters.items():  # in the order they were last changed
        window.adopt(decode_cluster(cid, blob))
    for c in _assembled(window, [state for _, state, _ in decoded if state.cluster_id not in recall.clusters]):
        window.adopt(c)
    for doc_id, state, values in decoded:
        window.restore(doc_id, state)
        if values is not None:
            duplicates.insert(doc_id, duplicates.from_values(values))
    window.take_changes()
    return True


def _assembled(window: Window, states: list[DocState]) -> list[ClusterState]:
    """The stories of ``states`` built from them (centroid, span, index keys), in the order their last doc came."""
    members: dict[int, list[DocState]] = {}
    for state in states:
        members.setdefault(state.cluster_id, []).append(state)
        members[state.cluster_id] = members.pop(state.cluster_id)  # the last doc's story last
    out = []
    for cid, group in members.items():
        c = window.assemble(cid, group)
        c.keys = {key for state in group for key in state.keys}
        out.append(c)
    return out
